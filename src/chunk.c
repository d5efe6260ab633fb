/*
 * Chunks: RG_CHUNK_SIZE-aligned mappings, and the chunk map.
 *
 * Owns: the chunk map (one byte per chunk of the user address space,
 * 32 MiB of zero-filled .bss on x86-64 that the OS only backs where tags
 * are set: a page of it covers 16 GiB) and the process-wide cache of free
 * chunks.
 * The map's whole pages are read-only zero pages from the first tag
 * written on, each made writable before its first tag (map_claim):
 * Linux charges writable private memory to the commit limit (Committed_AS,
 * what strict overcommit refuses past its limit; VmData): a small process
 * under the shim was charged 66 MiB in all, most of it the map, and is
 * charged 0.7 MiB now (mimalloc 0.7, glibc 0.4).  The loader still maps
 * all of .bss writable, so the map is charged from exec to the first
 * malloc.
 *
 * Invariants:
 *  1. tag(c) != 0  <=>  c is the header address of a mapping made here
 *     (an arena's chunk, a cached free chunk or a large block).
 *  2. tag(c) == RG_MAP_TAG(kind, tracked) of c's header (kind
 *     RG_CHUNK_FREE, untracked, for a chunk no arena owns).
 *  3. Every cached chunk was given back to the OS whole: it reads as zero
 *     (kind RG_CHUNK_FREE, magic 0) except for map_size.
 *  4. Every address whose tag is written was mapped by rg_chunk_map,
 *     which made the map's page for it writable (map_claim) first; later
 *     writes of that tag (kinds, moves, unmaps) need no check.
 *
 * Tags are written with release stores and read with relaxed loads: a
 * chunk's tag is set before its address is handed to any other thread.
 * The cache is guarded by cache_lock.  Nothing here calls malloc.
 */
#include "chunk.h"

#include <pthread.h>
#include <string.h>

#include "os.h"

#define CACHE_MAX 16 /* 64 MiB of address space, none of it resident */

/* In GCC's x86-64 large-data section (.lbss), which linkers place after
 * .bss: the map would otherwise sit in the middle of .bss, and the small
 * variables of the modules on either side of it would take two OS pages,
 * 64 MiB apart (measured with the 8 MiB map of bits before it: a small
 * process under the shim, 69.2 -> 67.2 page faults).
 * Clang before 17 makes .lbss a section of file data, so only GCC.
 * Page-aligned, so that no page of it is shared with other .bss: every
 * page is read-only until a tag needs it (unaligned, its first and last
 * pages, the tags of the lowest 13 GiB and the highest 3 GiB of the
 * address space in the shim, were ordinary .bss). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((section(".lbss")))
#endif
__attribute__((aligned(4096))) uint8_t rg_chunk_map_tags[RG_MAP_CHUNKS];

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rg_chunk *cache[CACHE_MAX];
static unsigned cache_count;

/* Which whole pages of the map are writable (OS pages of 4 KiB or more),
 * set under map_lock once they are; with pages bigger than the map's
 * alignment, the partial ones at either end stay ordinary .bss. */
static uint64_t map_writable[RG_MAP_CHUNKS / 4096 / 64];
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
/* MAP_BSS until the first tag: still writable .bss.  MAP_WRITABLE: the
 * remap failed and is never tried again, for it would wipe the tags
 * written since. */
static enum { MAP_BSS, MAP_READ_ONLY, MAP_WRITABLE } map_state;

static uint8_t *map_byte(const void *c)
{
    return &rg_chunk_map_tags[(uintptr_t)c >> RG_CHUNK_SHIFT];
}

/* Whether the map byte of chunk c may be written, its page made writable
 * first if need be; false if the OS would not commit it.  rg_chunk_map
 * asks for every mapping it makes, before its first tag (invariant 4).
 * The first call makes the map's whole pages read-only zero pages: no tag
 * has been written in them yet, and none is until its page is writable. */
static bool map_claim(const void *c)
{
    const uint8_t *t = map_byte(c);
    size_t page = rg_os_page_size();
    uintptr_t lo = rg_align_up((uintptr_t)rg_chunk_map_tags, page);
    uintptr_t hi = ((uintptr_t)rg_chunk_map_tags + RG_MAP_CHUNKS) & ~(uintptr_t)(page - 1);
    if ((uintptr_t)t < lo || (uintptr_t)t >= hi)
        return true;
    size_t k = ((uintptr_t)t - lo) / page;
    uint64_t bit = 1ull << (k % 64);
    if (__atomic_load_n(&map_writable[k / 64], __ATOMIC_ACQUIRE) & bit)
        return true;
    pthread_mutex_lock(&map_lock);
    bool ok = true;
    /* Without the read-only pages (a failed mmap leaves the .bss as it was
     * on Linux 6.x), every page stays writable, as before. */
    if (map_state == MAP_BSS)
        map_state = rg_os_read_only_zero((void *)lo, hi - lo) ? MAP_READ_ONLY : MAP_WRITABLE;
    if (map_state == MAP_READ_ONLY && !(map_writable[k / 64] & bit))
        ok = rg_os_make_writable((void *)(lo + k * page), page);
    if (ok)
        __atomic_or_fetch(&map_writable[k / 64], bit, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&map_lock);
    return ok;
}

static void map_set(const void *c, unsigned tag)
{
    __atomic_store_n(map_byte(c), (uint8_t)tag, __ATOMIC_RELEASE);
}

static unsigned map_tag(const struct rg_chunk *c)
{
    return rg_chunk_map_tag((const uint8_t *)c + 1);
}

void rg_chunk_set_kind(struct rg_chunk *c, enum rg_chunk_kind kind, bool tracked)
{
    c->magic = RG_CHUNK_MAGIC;
    c->kind = (uint16_t)kind;
    c->tracked = tracked;
    map_set(c, RG_MAP_TAG(kind, tracked));
}

bool rg_chunk_map_matches(const struct rg_chunk *c)
{
    return map_tag(c) == RG_MAP_TAG(c->kind, c->tracked);
}

struct rg_chunk *rg_chunk_map(size_t map_size, size_t align, size_t offset)
{
    struct rg_chunk *c = rg_os_map_aligned(map_size, align, offset);
    if (c == NULL)
        return NULL;
    RG_ASSERT(((uintptr_t)c & (RG_CHUNK_SIZE - 1)) == 0);
    /* Beyond the map, or its map page not committed: not usable. */
    if (RG_UNLIKELY((uintptr_t)c >> RG_ADDRESS_BITS) || !map_claim(c)) {
        rg_os_unmap(c, map_size);
        return NULL;
    }
    c->map_size = map_size;
    map_set(c, RG_MAP_TAG(RG_CHUNK_FREE, false));
    return c;
}

enum rg_move rg_chunk_move_tail(struct rg_chunk *from, size_t size, struct rg_chunk *to,
                                size_t to_off)
{
    size_t keep = from->map_size - size;
    unsigned tag = map_tag(from);
    /* Whole: its header goes with the pages, and its map byte must go
     * first.  The moment the pages leave, another thread may map a chunk
     * at the same address and set the same byte, which a clear after the
     * move would take from it: that chunk's blocks then read as "not a
     * block regal returned" (tests/tsan/threads.c, about 1 run in 100). */
    if (keep == 0)
        map_set(from, 0);
    enum rg_move moved = rg_os_move((uint8_t *)from + keep, size, (uint8_t *)to + to_off);
    if (moved == RG_MOVE_NONE) {
        if (keep == 0)
            map_set(from, tag);
        return moved;
    }
    if (keep != 0)
        from->map_size = keep;
    return moved;
}

bool rg_chunk_move_grow(struct rg_chunk *from, struct rg_chunk *to, size_t size)
{
    unsigned tag = map_tag(from);
    map_set(from, 0); /* before the pages leave: see rg_chunk_move_tail */
    if (!rg_os_move_grow(from, from->map_size, size, to)) {
        map_set(from, tag);
        return false;
    }
    to->map_size = size;
    map_set(to, tag); /* its header is from's now */
    return true;
}

void rg_chunk_unmap(struct rg_chunk *c)
{
    map_set(c, 0);
    rg_os_unmap(c, c->map_size);
}

struct rg_chunk *rg_chunk_alloc(struct regal_arena *a, enum rg_chunk_kind kind, bool tracked)
{
    struct rg_chunk *c = NULL;
    pthread_mutex_lock(&cache_lock);
    if (cache_count > 0)
        c = cache[--cache_count];
    pthread_mutex_unlock(&cache_lock);
    if (c == NULL)
        c = rg_chunk_map(RG_CHUNK_SIZE, RG_CHUNK_SIZE, 0);
    if (c == NULL)
        return NULL;
    rg_chunk_set_kind(c, kind, tracked);
    c->arena = a;
    c->next = c->prev = NULL;
    c->map_size = RG_CHUNK_SIZE;
    memset(c->committed, 0, sizeof c->committed);
    rg_chunk_set_committed(c, 0, sizeof *c);
    return c;
}

static size_t granule_first(size_t off)
{
    return off / RG_GRANULE;
}

static size_t granule_end(size_t off)
{
    size_t g = (off + RG_GRANULE - 1) / RG_GRANULE;
    return g > RG_GRANULES ? RG_GRANULES : g;
}

static bool bit(const uint64_t *bits, size_t i)
{
    return (bits[i / 64] >> (i % 64)) & 1;
}

/* Bits [lo, hi) of a bitmap word (lo < hi <= 64). */
static uint64_t word_mask(size_t lo, size_t hi)
{
    return (hi == 64 ? ~0ull : (1ull << hi) - 1) & (~0ull << lo);
}

/* Set bits of v under mask, which holds width bits.  All set or all clear
 * are the common cases, and need no popcount (a libgcc call on baseline
 * x86-64): the heap counts the granules of every free block that enters
 * a free list. */
static size_t bits_in(uint64_t v, uint64_t mask, size_t width)
{
    v &= mask;
    if (v == mask)
        return width;
    return v == 0 ? 0 : (size_t)__builtin_popcountll(v);
}

size_t rg_chunk_committed_in(const struct rg_chunk *c, size_t from, size_t to)
{
    size_t g = granule_first(from), end = granule_end(to);
    if (g >= end)
        return 0;
    size_t w = g / 64, last = (end - 1) / 64, lo = g % 64, hi = end - last * 64;
    if (w == last)
        return bits_in(c->committed[w], word_mask(lo, hi), hi - lo) * RG_GRANULE;
    /* First and last words in part, the ones between whole. */
    size_t n = bits_in(c->committed[w], word_mask(lo, 64), 64 - lo) +
               bits_in(c->committed[last], word_mask(0, hi), hi);
    while (++w < last)
        n += bits_in(c->committed[w], ~0ull, 64);
    return n * RG_GRANULE;
}

size_t rg_chunk_uncommitted(const struct rg_chunk *c, size_t from, size_t to)
{
    size_t first = granule_first(from), end = granule_end(to);
    size_t all = end > first ? (end - first) * RG_GRANULE : 0;
    return all - rg_chunk_committed_in(c, from, to);
}

void rg_chunk_set_committed(struct rg_chunk *c, size_t from, size_t to)
{
    size_t end = granule_end(to);
    for (size_t g = granule_first(from); g < end;) {
        size_t w = g / 64, hi = end - w * 64 < 64 ? end - w * 64 : 64;
        c->committed[w] |= word_mask(g % 64, hi);
        g = w * 64 + hi;
    }
}

size_t rg_chunk_committed(const struct rg_chunk *c)
{
    size_t n = 0;
    for (size_t w = 0; w < RG_GRANULES / 64; w++)
        n += (size_t)__builtin_popcountll(c->committed[w]);
    return n * RG_GRANULE;
}

size_t rg_chunk_decommit(struct rg_chunk *c, size_t from, size_t to)
{
    size_t page = rg_os_page_size();
    from = rg_align_up(from, page);
    to &= ~(page - 1);
    size_t released = 0, run = 0;
    for (size_t off = from; off <= to; off += RG_GRANULE) {
        bool committed = off < to && bit(c->committed, off / RG_GRANULE);
        if (committed) {
            run += RG_GRANULE;
            c->committed[off / RG_GRANULE / 64] &= ~(1ull << (off / RG_GRANULE % 64));
        } else if (run > 0) {
            rg_os_decommit((uint8_t *)c + off - run, run);
            released += run;
            run = 0;
        }
    }
    return released;
}

void rg_chunk_free(struct rg_chunk *c)
{
    RG_ASSERT(c->map_size == RG_CHUNK_SIZE);
    /* One madvise for the whole chunk, header included: the header reads as
     * zero afterwards (kind RG_CHUNK_FREE, no magic), which is what a stale
     * pointer into a cached chunk must find. */
    map_set(c, RG_MAP_TAG(RG_CHUNK_FREE, false));
    rg_os_decommit(c, RG_CHUNK_SIZE);
    c->map_size = RG_CHUNK_SIZE;
    pthread_mutex_lock(&cache_lock);
    bool kept = cache_count < CACHE_MAX;
    if (kept)
        cache[cache_count++] = c;
    pthread_mutex_unlock(&cache_lock);
    if (!kept)
        rg_chunk_unmap(c);
}

void rg_chunk_fork_prepare(void)
{
    pthread_mutex_lock(&map_lock);
    pthread_mutex_lock(&cache_lock);
}

void rg_chunk_fork_release(void)
{
    pthread_mutex_unlock(&cache_lock);
    pthread_mutex_unlock(&map_lock);
}
