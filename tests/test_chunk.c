/*
 * Unit tests of src/chunk.c's chunk map: one byte per chunk, which the free
 * fast paths read instead of the chunk's header, so it must say what the
 * header says for every kind of chunk and through every change of one.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>

#include "arena.h"
#include "chunk.h"

static unsigned tag_of(const void *p)
{
    return rg_chunk_map_tag(p);
}

/* The map byte that holds the tag of block p's chunk. */
static uint8_t *tag_byte(const void *p)
{
    return &rg_chunk_map_tags[((uintptr_t)p - 1) >> RG_CHUNK_SHIFT];
}

/* An address where nothing is mapped (64 TiB): its page of the map, which
 * covers 16 GiB, holds no tag. */
#define FAR ((const uint8_t *)((uintptr_t)1 << 46) + 1)

Test(chunk, each_kind_of_chunk_has_its_header_tag_in_the_map)
{
    regal_arena *a = regal_arena_create(NULL);
    regal_arena_config dcfg = {.flags = REGAL_ARENA_DEBUG};
    regal_arena *d = regal_arena_create(&dcfg);
    cr_assert(a != NULL && d != NULL);
    void *small = regal_alloc(a, 64), *medium = regal_alloc(a, 20000);
    void *large = regal_alloc(a, (size_t)3 << 20);
    void *tracked = regal_alloc(d, 64);
    regal_handle h = regal_handle_alloc(a, 100);
    cr_assert(small != NULL && medium != NULL && large != NULL && tracked != NULL);
    cr_assert_eq(tag_of(small), RG_MAP_TAG(RG_CHUNK_PAGES, false));
    cr_assert_eq(tag_of(medium), RG_MAP_TAG(RG_CHUNK_HEAP, false));
    cr_assert_eq(tag_of(large), RG_MAP_TAG(RG_CHUNK_LARGE, false));
    cr_assert_eq(tag_of(tracked), RG_MAP_TAG(RG_CHUNK_PAGES, true));
    regal_free(tracked);
    void *moving = regal_handle_ptr(a, h);
    cr_assert_not_null(moving);
    cr_assert_eq(tag_of(moving), RG_MAP_TAG(RG_CHUNK_HANDLE, false));
    regal_handle_free(a, h);
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_arena_check(d), 0);
    regal_arena_destroy(a);
    regal_arena_destroy(d);
}

Test(chunk, addresses_regal_never_mapped_read_zero)
{
    int local;
    cr_assert_eq(tag_of(NULL), 0);
    cr_assert_eq(tag_of(&local), 0);
    cr_assert_eq(tag_of((void *)(uintptr_t)-1), 0);
    cr_assert_eq(tag_of((void *)(((uintptr_t)1 << RG_ADDRESS_BITS) + 64)), 0);
}

Test(chunk, a_cached_chunk_reads_free_and_an_unmapped_one_zero)
{
    struct rg_chunk *c = rg_chunk_alloc(NULL, RG_CHUNK_HEAP, true);
    cr_assert_not_null(c);
    cr_assert_eq(tag_of((uint8_t *)c + 1), RG_MAP_TAG(RG_CHUNK_HEAP, true));
    cr_assert(rg_chunk_map_matches(c));
    rg_chunk_free(c); /* into the process-wide cache, or unmapped if full */
    unsigned after = tag_of((uint8_t *)c + 1);
    cr_assert(after == RG_MAP_TAG(RG_CHUNK_FREE, false) || after == 0, "tag %#x", after);
    struct rg_chunk *l = rg_chunk_map(RG_CHUNK_SIZE, RG_CHUNK_SIZE, 0);
    cr_assert_not_null(l);
    cr_assert_eq(tag_of((uint8_t *)l + 1), RG_MAP_TAG(RG_CHUNK_FREE, false));
    rg_chunk_unmap(l);
    cr_assert_eq(tag_of((uint8_t *)l + 1), 0);
}

Test(chunk, a_mapping_that_moves_takes_its_tag_along)
{
    struct rg_chunk *from = rg_chunk_map(RG_CHUNK_SIZE, RG_CHUNK_SIZE, 0);
    struct rg_chunk *to = rg_chunk_map(2 * RG_CHUNK_SIZE, RG_CHUNK_SIZE, 0);
    cr_assert(from != NULL && to != NULL);
    rg_chunk_set_kind(from, RG_CHUNK_LARGE, false);
    cr_assert(rg_chunk_move_grow(from, to, 2 * RG_CHUNK_SIZE)); /* one OS mapping: moves */
    cr_assert_eq(tag_of((uint8_t *)from + 1), 0);
    cr_assert_eq(tag_of((uint8_t *)to + 1), RG_MAP_TAG(RG_CHUNK_LARGE, false));
    cr_assert(rg_chunk_map_matches(to));
    rg_chunk_unmap(to);
}

Test(chunk, the_check_reports_a_map_byte_that_disagrees_with_its_header)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *p = regal_alloc(a, 64);
    cr_assert_not_null(p);
    uint8_t *byte = tag_byte(p);
    uint8_t saved = *byte;
    *byte = (uint8_t)RG_MAP_TAG(RG_CHUNK_HEAP, false);
    int bad = regal_arena_check(a);
    *byte = saved;
    cr_assert_neq(bad, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_free(p);
    regal_arena_destroy(a);
}

/* The permissions ("rw-p", "r--p") of the mapping that holds address p,
 * from /proc/self/maps; "" if none does. */
static void perms_at(const void *p, char out[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    cr_assert_not_null(f);
    out[0] = '\0';
    unsigned long lo, hi;
    char perms[5];
    char line[512];
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && (uintptr_t)p >= lo &&
            (uintptr_t)p < hi)
            memcpy(out, perms, 5);
    fclose(f);
}

/* The map is 32 MiB of .bss on x86-64; only its pages that hold tags are
 * writable, so only they count against strict overcommit (and in VmData).
 * The page for FAR stays read-only and reads zero. */
Test(chunk, only_the_map_pages_that_hold_tags_are_writable)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *p = regal_alloc(a, 64);
    cr_assert_not_null(p);
    char perms[5];
    perms_at(tag_byte(p), perms);
    cr_assert_eq(perms[1], 'w', "the page with p's tag: %s", perms);
    perms_at(tag_byte(FAR), perms);
    cr_assert_str_eq(perms, "r--p", "the page for 64 TiB: %s", perms);
    cr_assert_eq(tag_of(FAR), 0);
    regal_free(p);
    regal_arena_destroy(a);
}

/* ---- the map's system calls failing ----------------------------------------- */

static volatile sig_atomic_t refused;

/* SIGSYS from the filter below: the call fails with ENOMEM, counted. */
static void refuse_call(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)info;
    refused++;
    ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RAX] = -ENOMEM;
}

/* From now on every call nr of this process with protection prot and,
 * unless flags is 0, one of flags set traps into refuse_call.  The map's
 * remap is mmap(PROT_READ, MAP_FIXED) (rg_os_read_only_zero), a page made
 * writable mprotect(PROT_READ | PROT_WRITE) (rg_os_make_writable). */
static void refuse(long nr, unsigned prot, unsigned flags)
{
    struct sigaction sa = {.sa_sigaction = refuse_call, .sa_flags = SA_SIGINFO};
    cr_assert_eq(sigaction(SIGSYS, &sa, NULL), 0);
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, prot, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, flags, 0, flags ? 1 : 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

/* A page of the map that the OS will not commit (strict overcommit at its
 * limit): the chunk that needed it is not used, and the arena that needed
 * that chunk is not created (ENOMEM), with nothing else touched. */
Test(chunk, a_map_page_the_os_will_not_commit_fails_the_mapping)
{
    refuse(SYS_mprotect, PROT_READ | PROT_WRITE, 0);
    errno = 0;
    cr_assert_null(regal_arena_create(NULL));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_geq(refused, 1);
    cr_assert_null(regal_arena_create(NULL), "and again");
    cr_assert_eq(errno, ENOMEM);
}

/* When the map cannot be made read-only (the first tag of the process is
 * written in this test's fresh process), it stays writable .bss and
 * everything works as before; the remap is not tried again, for a later
 * success would wipe every tag written in between.  A 20 GiB block
 * (reserved, never touched) puts the next chunk's tag in another page of
 * the map, where the remap used to be tried a second time. */
Test(chunk, a_map_that_cannot_be_made_read_only_stays_writable)
{
    refuse(SYS_mmap, PROT_READ, MAP_FIXED);
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    cr_assert_eq(refused, 1);
    void *huge = regal_alloc(a, (size_t)20 << 30);
    cr_assert_not_null(huge);
    cr_assert_neq((uintptr_t)huge >> 34, (uintptr_t)a >> 34, "in another 16 GiB, another map page");
    void *small = regal_alloc(a, 64), *medium = regal_alloc(a, 20000);
    cr_assert(small != NULL && medium != NULL);
    cr_assert_eq(refused, 1, "the remap was tried %d times", (int)refused);
    cr_assert_eq(tag_of(huge), RG_MAP_TAG(RG_CHUNK_LARGE, false));
    cr_assert_eq(tag_of(small), RG_MAP_TAG(RG_CHUNK_PAGES, false));
    cr_assert_eq(tag_of(medium), RG_MAP_TAG(RG_CHUNK_HEAP, false));
    char perms[5];
    perms_at(tag_byte(FAR), perms);
    cr_assert_eq(perms[1], 'w', "the page for 64 TiB: %s", perms);
    regal_free(huge);
    regal_free(small);
    regal_free(medium);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}
