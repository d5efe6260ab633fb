/*
 * libregal-malloc: the malloc family on regal's default arena.
 *
 * Preloaded (LD_PRELOAD) or linked before libc, these definitions interpose
 * glibc's.  glibc's own reallocarray, strdup and friends call them, so they
 * are not replaced here (glibc documents replacing them as unsupported).
 * The __libc_* names are aliases because glibc routes some internal
 * allocations through them.
 *
 * Rules that differ between the arena API and glibc, and which glibc's
 * callers rely on, live here: realloc(p, 0) frees p and returns NULL;
 * free keeps errno; posix_memalign returns its error instead of setting
 * errno and accepts only multiples of sizeof(void *).  Everything is safe
 * before constructors run: the default arena is created on first use, with
 * no allocation and no lock held across calls that could allocate.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "fast.h"
#include "large.h"
#include "os.h"
#include "track.h"

#define SHIM __attribute__((visibility("default")))

static regal_arena *arena(void)
{
    return regal_default_arena();
}

/* Whether the default arena's blocks are tracked (under memcheck, or
 * REGAL_OPTIONS=debug). */
RG_INLINE bool is_tracked(void)
{
    return rg_arena_tracked(arena());
}

/* A tracked block for the caller at site, announced here, inlined into the
 * caller, so memcheck's allocation stacks start at malloc, calloc... as
 * with glibc (malloc's through malloc_slow). */
RG_INLINE void *tracked_at(size_t size, size_t align, bool zero, const void *site)
{
    void *p = rg_track_alloc(arena(), size, align, zero, site);
    rg_vg_block_alloc(p, size, zero);
    return p;
}

#define tracked(size, align, zero) tracked_at((size), (align), (zero), __builtin_return_address(0))

/* The fast path of malloc for a small block whose class is aligned
 * enough; the rest through regal_aligned_alloc (memalign(64, 64) and free
 * cost 247 instructions that way, mimalloc 100, tcmalloc 108). */
RG_INLINE void *aligned(size_t alignment, size_t size)
{
    void *p = rg_is_pow2(alignment) ? rg_aligned_fast_default(size, alignment) : NULL;
    if (RG_LIKELY(p != NULL))
        return p;
    if (rg_is_pow2(alignment) && is_tracked())
        return tracked(size, alignment < RG_ALIGN ? RG_ALIGN : alignment, false);
    return regal_aligned_alloc(arena(), alignment, size);
}

/* What malloc's fast path does not serve, out of line so that malloc is a
 * leaf with no frame; a tracked block for malloc's caller (site). */
static RG_NOINLINE void *malloc_slow(size_t size, const void *site)
{
    regal_arena *a = arena();
    if (RG_UNLIKELY(rg_arena_tracked(a)))
        return tracked_at(size, RG_ALIGN, false, site);
    return rg_alloc_rest(a, size); /* malloc ran rg_alloc_fast_default already */
}

SHIM void *malloc(size_t size)
{
    void *p = rg_alloc_fast_default(size);
    if (RG_LIKELY(p != NULL))
        return p;
    /* Called, not jumped to: memcheck's allocation stacks keep malloc. */
    p = malloc_slow(size, __builtin_return_address(0));
    __asm__("" : "+r"(p));
    return p;
}

/* The frees that may make a system call (free keeps errno). */
static RG_NOINLINE void free_keeping_errno(void *p, struct rg_page *pg)
{
    int saved = errno;
    rg_free_rest(p, pg);
    errno = saved;
}

/* pg: the class span free's rg_free_fast_default found.  A free from another
 * thread needs no frame here: the rest is a tail call. */
static RG_NOINLINE void free_slow(void *p, struct rg_page *pg)
{
    if (p == NULL || (pg != NULL && rg_free_remote(p, pg)))
        return;
    free_keeping_errno(p, pg);
}

SHIM void free(void *p)
{
    struct rg_page *pg;
    if (RG_LIKELY(rg_free_fast_default(p, &pg)))
        return;
    free_slow(p, pg);
}

/* What calloc's fast path does not serve: an overflow, a tracked block
 * for calloc's caller (site), or the rest of regal_calloc. */
static RG_NOINLINE void *calloc_slow(size_t count, size_t size, const void *site)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (is_tracked())
        return tracked_at(total, RG_ALIGN, true, site);
    return rg_calloc_rest(arena(), total); /* calloc ran rg_calloc_from already */
}

/* malloc's fast path and a clear of the slot (rg_calloc_from): through
 * regal_calloc, with its arena lookups, live and tracking tests, calloc(1,
 * 64) and free cost 264 instructions against malloc's 122 (mimalloc 139,
 * glibc 259). */
SHIM void *calloc(size_t count, size_t size)
{
    size_t total;
    void *p = NULL;
    if (RG_LIKELY(!__builtin_mul_overflow(count, size, &total)))
        p = rg_calloc_from(rg_default_theap(), total);
    if (RG_LIKELY(p != NULL))
        return p;
    /* Called, not jumped to: memcheck's allocation stacks keep calloc. */
    p = calloc_slow(count, size, __builtin_return_address(0));
    __asm__("" : "+r"(p));
    return p;
}

SHIM void *realloc(void *p, size_t size)
{
    if (p != NULL && size == 0) { /* glibc: free and return NULL */
        free(p);
        return NULL;
    }
    /* A block stays in the arena that owns it. */
    uint32_t s;
    struct rg_page *pg = rg_live_slot(p, RG_PAGE_CLASS, &s);
    if (pg != NULL)
        return rg_realloc_class(pg, s, p, size);
    struct rg_chunk *c;
    rg_vg_quiet_begin();
    regal_arena *owner = p != NULL ? rg_owner(p, &c) : NULL;
    rg_vg_quiet_end();
    return regal_realloc(owner != NULL ? owner : arena(), p, size);
}

SHIM int posix_memalign(void **memptr, size_t alignment, size_t size)
{
    if (!rg_is_pow2(alignment) || alignment % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno;
    void *p = aligned(alignment, size);
    if (p == NULL) {
        int err = errno;
        errno = saved;
        return err;
    }
    *memptr = p;
    return 0;
}

SHIM void *aligned_alloc(size_t alignment, size_t size)
{
    return aligned(alignment, size);
}

SHIM void *memalign(size_t alignment, size_t size)
{
    return aligned(alignment, size);
}

SHIM void *valloc(size_t size)
{
    return aligned(rg_os_page_size(), size);
}

SHIM void *pvalloc(size_t size)
{
    size_t page = rg_os_page_size();
    size_t rounded = size == 0 ? page : rg_align_up(size, page);
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned(page, rounded);
}

/* regal_usable_size inlined: some programs (redis) ask for the size of
 * every block they allocate or free. */
SHIM size_t malloc_usable_size(void *p)
{
    struct rg_page *pg = rg_class_block(p);
    if (RG_LIKELY(pg != NULL))
        return pg->slot_size;
    return rg_usable_size_slow(p);
}

SHIM int malloc_trim(size_t pad)
{
    (void)pad; /* every free page goes back; there is no top to pad */
    return regal_arena_trim(arena()) > 0;
}

static size_t count_list(const struct rg_chunk *c, size_t *bytes)
{
    size_t n = 0;
    for (; c != NULL; c = c->next, n++)
        *bytes += c->map_size;
    return n;
}

SHIM struct mallinfo2 mallinfo2(void)
{
    regal_arena *a = arena();
    regal_stats s;
    regal_arena_stats(a, &s);
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    size_t large_bytes = 0;
    rg_arena_lock(a);
    mi.hblks = count_list(a->large, &large_bytes);
    rg_arena_unlock(a);
    mi.arena = s.mapped - large_bytes; /* committed outside large mappings */
    mi.hblkhd = large_bytes;
    mi.uordblks = s.in_use;
    mi.fordblks = s.mapped > s.in_use ? s.mapped - s.in_use : 0;
    mi.usmblks = s.peak_in_use;
    mi.keepcost = s.largest_free_run;
    mi.ordblks = s.blocks_in_use;
    return mi;
}

static int clamp(size_t v)
{
    return v > (size_t)INT32_MAX ? INT32_MAX : (int)v;
}

SHIM struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo mi = {
        .arena = clamp(m2.arena),
        .ordblks = clamp(m2.ordblks),
        .hblks = clamp(m2.hblks),
        .hblkhd = clamp(m2.hblkhd),
        .usmblks = clamp(m2.usmblks),
        .uordblks = clamp(m2.uordblks),
        .fordblks = clamp(m2.fordblks),
        .keepcost = clamp(m2.keepcost),
    };
    return mi;
}

SHIM void malloc_stats(void)
{
    regal_arena_print_stats(arena(), stderr);
}

/* Accepted and ignored: regal has no tunable that glibc's parameters map
 * onto (the default arena is one, purging is regal's own policy). */
SHIM int mallopt(int param, int value)
{
    (void)param;
    (void)value;
    return 1;
}

/* glibc's internal entry points.  GCC wants libc's attributes (leaf,
 * nothrow) copied onto aliases; they hold, and clang has no such check. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#endif
#define ALIAS(name, target) SHIM __typeof__(target) name __attribute__((alias(#target)))
ALIAS(__libc_malloc, malloc);
ALIAS(__libc_free, free);
ALIAS(__libc_calloc, calloc);
ALIAS(__libc_realloc, realloc);
ALIAS(__libc_memalign, memalign);
ALIAS(__libc_valloc, valloc);
ALIAS(__libc_pvalloc, pvalloc);
ALIAS(__posix_memalign, posix_memalign);
