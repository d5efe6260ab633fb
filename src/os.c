/*
 * OS memory and the clock.  Everything comes from anonymous private
 * mappings; no call here allocates or takes a lock, so the file is safe from
 * the first malloc of a process on.
 */
#include "os.h"

#include <errno.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

size_t rg_os_page;

size_t rg_os_page_size_init(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    __atomic_store_n(&rg_os_page, page, __ATOMIC_RELAXED); /* the same value from any thread */
    return page;
}

static void *map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Where the next aligned mapping is tried first: just below the lowest
 * address of the last one, for the size and alignment of the request.
 * The kernel hands out mappings top-down, next to each other, so that
 * range is usually free, and a mapping made there is aligned with one
 * mmap, where over-mapping and trimming costs three system calls and two
 * splits (bench/small_rss: its heap chunk).  Only a hint: when the range
 * is taken the mapping lands elsewhere, unaligned, and is given back.
 * The hint is computed per request: one computed for the last request's
 * size overlaps the last mapping when the next one is bigger, and large
 * blocks come in all sizes (bench/large_churn: 171 of 280 hints missed,
 * each costing two more system calls than it saved). */
static uintptr_t last_low;

/* The highest q + size <= p with q + offset a multiple of align; 0 if none. */
static uintptr_t below(uintptr_t top, size_t size, size_t align, size_t offset)
{
    if (top < size + offset + align)
        return 0;
    return ((top - size + offset) & ~(uintptr_t)(align - 1)) - offset;
}

static void *map_at_hint(size_t size, size_t align, size_t offset)
{
    uintptr_t hint = below(__atomic_load_n(&last_low, __ATOMIC_RELAXED), size, align, offset);
    if (hint == 0)
        return NULL;
    uint8_t *p = mmap((void *)hint, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (((uintptr_t)p + offset) % align != 0) {
        munmap(p, size);
        return NULL;
    }
    return p;
}

/* Over-maps by the alignment and cuts the ends off: two munmaps at most. */
static void *map_trimmed(size_t size, size_t align, size_t offset)
{
    size_t total = size + align;
    if (total < size)
        return NULL;
    uint8_t *raw = map(total);
    if (raw == NULL)
        return NULL;
    uint8_t *p = (uint8_t *)rg_align_up((uintptr_t)raw + offset, align) - offset;
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    size_t tail = (size_t)(raw + total - (p + size));
    if (tail > 0)
        munmap(p + size, tail);
    return p;
}

void *rg_os_map_aligned(size_t size, size_t align, size_t offset)
{
    if (align <= rg_os_page_size() && offset % align == 0)
        return map(size); /* every mapping is page-aligned */
    uint8_t *p = map_at_hint(size, align, offset);
    if (p == NULL)
        p = map_trimmed(size, align, offset);
    if (p != NULL)
        __atomic_store_n(&last_low, (uintptr_t)p, __ATOMIC_RELAXED);
    return p;
}

void rg_os_unmap(void *p, size_t size)
{
    munmap(p, size);
}

void rg_os_decommit(void *p, size_t size)
{
    madvise(p, size, MADV_DONTNEED);
}

bool rg_os_read_only_zero(void *p, size_t size)
{
    return mmap(p, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
                0) != MAP_FAILED;
}

bool rg_os_make_writable(void *p, size_t size)
{
    return mprotect(p, size, PROT_READ | PROT_WRITE) == 0;
}

bool rg_os_grow(void *p, size_t old_size, size_t new_size)
{
    return mremap(p, old_size, new_size, 0) != MAP_FAILED;
}

bool rg_os_move_grow(void *from, size_t old_size, size_t new_size, void *to)
{
    return mremap(from, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to) != MAP_FAILED;
}

uint64_t rg_os_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return 1;
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 1;
}

uint64_t rg_os_secret(void)
{
    static uint64_t secret;
    if (RG_UNLIKELY(secret == 0)) {
        uint64_t s = 0x9e3779b97f4a7c15ull;
        const uint8_t *r = (const uint8_t *)getauxval(AT_RANDOM);
        if (r != NULL)
            memcpy(&s, r, sizeof s);
        secret = s | 1;
    }
    return secret;
}

enum rg_move rg_os_move(void *from, size_t size, void *to)
{
    if (mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to) != MAP_FAILED)
        return RG_MOVED;
    if (errno == EFAULT || errno == EINVAL)
        return RG_MOVE_NONE;
    munmap(from, size); /* whatever is left of it: its owner cannot know what moved */
    return RG_MOVE_LOST;
}
