/*
 * Shared by every file of src/: attributes, assertions, alignment arithmetic
 * and the engine's geometry (chunk, page and granule sizes).
 */
#ifndef RG_COMMON_H
#define RG_COMMON_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "regal_config.h"

#define RG_LIKELY(x)   __builtin_expect(!!(x), 1)
#define RG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define RG_INLINE      static inline __attribute__((always_inline))
#define RG_NOINLINE    __attribute__((noinline))
#define RG_COLD        __attribute__((cold, noinline))

/* A failed assertion writes one "regal:" line with write(2) and aborts: no
 * stdio, no allocation, no locks.  Disabled assertions still type-check. */
void rg_assert_fail(const char *file, int line, const char *expr) __attribute__((noreturn));
#ifdef NDEBUG
#define RG_ASSERT(e) ((void)sizeof(!(e)))
#else
#define RG_ASSERT(e) (RG_LIKELY(e) ? (void)0 : rg_assert_fail(__FILE__, __LINE__, #e))
#endif
/* -DRG_MEASURE_NO_CHECKS compiles the fast paths' slot, live-bit and
 * free-list checks out, only so that bench/run-callgrind can state what
 * they cost (the chunk map's byte stays: it is also how a fast path learns
 * a chunk's kind).  Such a build is never shipped or tested: it trusts
 * every pointer into a chunk. */
#ifdef RG_MEASURE_NO_CHECKS
#define RG_CHECKS 0
#else
#define RG_CHECKS 1
#endif

#define RG_UNREACHABLE() rg_assert_fail(__FILE__, __LINE__, "unreachable")

/* Geometry.  Chunks are aligned to their size, so the chunk of an address is
 * found by masking; a chunk is split into pages (size classes and pools) or
 * holds one heap region, and its committed memory is tracked in granules of
 * 4 KiB (a bitmap in the chunk header). */
#define RG_CHUNK_SHIFT     22 /* 4 MiB */
#define RG_CHUNK_SIZE      ((size_t)1 << RG_CHUNK_SHIFT)
#define RG_PAGE_SHIFT      16 /* 64 KiB */
#define RG_PAGE_SIZE       ((size_t)1 << RG_PAGE_SHIFT)
#define RG_PAGES_PER_CHUNK (RG_CHUNK_SIZE / RG_PAGE_SIZE) /* 64 */
#define RG_ALIGN           16                             /* alignof(max_align_t) */
#define RG_GRANULE         ((size_t)4096)                 /* unit of committed-memory accounting */
#define RG_GRANULES        (RG_CHUNK_SIZE / RG_GRANULE)

/* Called for each live block by the visitors of page.c, heap.c, large.c. */
typedef void (*rg_visit_fn)(void *block, size_t usable, void *ctx);

RG_INLINE size_t rg_align_up(size_t n, size_t align)
{
    return (n + align - 1) & ~(align - 1);
}

RG_INLINE bool rg_is_pow2(size_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

RG_INLINE unsigned rg_log2(size_t n)
{
    return (unsigned)(63 - __builtin_clzll(n));
}

#endif
