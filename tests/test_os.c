/*
 * Unit tests of src/os.c: aligned mappings, made just below the previous
 * one when that range is free, and still aligned when it is not.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <sys/mman.h>

#include "helpers.h"
#include "os.h"

static bool aligned(const void *p, size_t align, size_t offset)
{
    return ((uintptr_t)p + offset) % align == 0;
}

Test(os, aligned_mappings_are_aligned_for_every_alignment_and_offset)
{
    const size_t cases[][3] = {
        /* size, align, offset */
        {4 * MiB, 4 * MiB, 0}, {12 * MiB, 4 * MiB, 0},      {64 << 10, 64, 0},
        {64 << 10, 4096, 0},   {8 * MiB, 8 * MiB, 4 * MiB}, {20 * MiB, 16 * MiB, 4 * MiB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int rep = 0; rep < 3; rep++) {
            uint8_t *p = rg_os_map_aligned(cases[i][0], cases[i][1], cases[i][2]);
            cr_assert_not_null(p);
            cr_assert(aligned(p, cases[i][1], cases[i][2]), "case %zu: %p", i, (void *)p);
            p[0] = p[cases[i][0] - 1] = 1; /* the whole size is mapped */
            rg_os_unmap(p, cases[i][0]);
        }
    }
}

/* The kernel hands out mappings top-down: a second chunk lands right below
 * the first, one mmap, where over-mapping and trimming took three. */
Test(os, a_second_chunk_lands_just_below_the_first)
{
    uint8_t *first = rg_os_map_aligned(4 * MiB, 4 * MiB, 0);
    uint8_t *second = rg_os_map_aligned(4 * MiB, 4 * MiB, 0);
    cr_assert_not_null(first);
    cr_assert_not_null(second);
    cr_assert_eq(second, first - 4 * MiB);
    rg_os_unmap(first, 4 * MiB);
    rg_os_unmap(second, 4 * MiB);
}

/* The hint is for the request's size: a mapping bigger than the last one
 * lands just below it too, aligned, with one mmap.  A blocker below leaves
 * exactly room for it there, so a hint made for the last size (which
 * overlaps the last mapping and fails) ends up elsewhere, by the
 * over-mapping fallback, which needs more room than that. */
Test(os, a_bigger_mapping_lands_just_below_the_last)
{
    enum { TRIES = 32 };
    size_t size = 8 * MiB + 4096;
    /* A chunk with 16 MiB free below it: where the range below one is
     * taken (ASLR put it just above another mapping, one run in six), the
     * next chunk goes below it, and so on down past what is in the way. */
    uint8_t *tried[TRIES], *first = NULL, *blocker = MAP_FAILED;
    int n = 0;
    while (blocker == MAP_FAILED && n < TRIES) {
        first = tried[n++] = rg_os_map_aligned(4 * MiB, 4 * MiB, 0);
        cr_assert_not_null(first);
        blocker = mmap(first - 16 * MiB, 4 * MiB, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (blocker != MAP_FAILED && blocker != first - 16 * MiB) {
            munmap(blocker, 4 * MiB); /* a kernel that took the address as a hint */
            blocker = MAP_FAILED;
        }
    }
    cr_assert_neq(blocker, MAP_FAILED, "no chunk of %d had 16 MiB free below it", TRIES);
    uint8_t *second = rg_os_map_aligned(size, 4 * MiB, 0);
    cr_assert_not_null(second);
    cr_assert_eq(second, first - 12 * MiB, "%p, not %p", (void *)second,
                 (void *)(first - 12 * MiB));
    second[0] = second[size - 1] = 1;
    rg_os_unmap(second, size);
    munmap(blocker, 4 * MiB);
    while (n > 0)
        rg_os_unmap(tried[--n], 4 * MiB);
}

/* Something else took the range below the last chunk: the hint fails, and
 * the mapping is still aligned and overlaps nothing. */
Test(os, a_taken_hint_still_gives_an_aligned_mapping)
{
    uint8_t *first = rg_os_map_aligned(4 * MiB, 4 * MiB, 0);
    cr_assert_not_null(first);
    uint8_t *taken = mmap(first - 2 * MiB, 2 * MiB, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (taken == MAP_FAILED)
        cr_skip_test("the range below the chunk was taken already");
    uint8_t *second = rg_os_map_aligned(4 * MiB, 4 * MiB, 0);
    cr_assert_not_null(second);
    cr_assert(aligned(second, 4 * MiB, 0));
    cr_assert(second + 4 * MiB <= taken || second >= first + 4 * MiB);
    munmap(taken, 2 * MiB);
    rg_os_unmap(first, 4 * MiB);
    rg_os_unmap(second, 4 * MiB);
}

/* Pages move with their contents onto a mapped range, and the source is
 * gone; a request the kernel refuses (here a misaligned source) moves
 * nothing. */
Test(os, moves_pages_or_refuses_with_nothing_moved)
{
    size_t page = rg_os_page_size();
    uint8_t *src = rg_os_map_aligned(4 * page, page, 0),
            *dst = rg_os_map_aligned(4 * page, page, 0);
    cr_assert_not_null(src);
    cr_assert_not_null(dst);
    for (size_t i = 0; i < 4; i++)
        src[i * page] = (uint8_t)(i + 1);
    cr_assert_eq(rg_os_move(src + page, 2 * page, dst), RG_MOVED);
    cr_assert_eq(dst[0], 2);
    cr_assert_eq(dst[page], 3);
    unsigned char vec[1];
    cr_assert_neq(mincore(src + page, page, vec), 0, "the source range is unmapped");

    cr_assert_eq(rg_os_move(src + 16, page, dst), RG_MOVE_NONE);
    cr_assert_eq(src[0], 1, "nothing moved");
    cr_assert_eq(src[3 * page], 4);
    cr_assert_eq(dst[0], 2);
    rg_os_unmap(src, 4 * page);
    rg_os_unmap(dst, 4 * page);
}
