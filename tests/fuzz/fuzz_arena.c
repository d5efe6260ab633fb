/*
 * libFuzzer harness for the arena API.
 *
 * Each input is a program: every operation takes an opcode byte and a few
 * argument bytes (missing bytes read as zero, the program ends with the
 * input).  It runs on up to four arenas (created lazily with flags, a name
 * and sometimes a small limit taken from the input) plus, now and then, the
 * default arena, and covers alloc / calloc / aligned_alloc / realloc (same
 * arena and across arenas) / free, pools (create, alloc, free, reset,
 * destroy), handles (alloc, free, compaction, stale handles), arena reset,
 * destroy and re-create, trim, check and stats.
 *
 * The harness keeps a table of the live blocks it owns (pointer, size,
 * usable size, alignment, fill byte, arena, pool) and verifies, for every
 * block, at every step that touches it:
 *  - alignment, regal_arena_of() == its arena, regal_usable_size() stable
 *    and >= its size, no overlap with any other live block;
 *  - its contents (every usable byte holds its fill byte) before it is
 *    freed, reallocated, reset or destroyed, and after a trim;
 *  - realloc keeps min(old usable size, new size) bytes, and a failed
 *    realloc leaves the old block as it was;
 *  - calloc blocks are zero;
 *  - a handle's block keeps its contents (its size in fill bytes) across
 *    compactions, trims and other operations; a second compaction moves
 *    nothing; a freed handle, or one from before a reset, gives NULL and its
 *    free is reported once as REGAL_ERR_INVALID_FREE (the only report the
 *    harness expects);
 * and for every arena: regal_arena_check() == 0, stats.in_use == the sum of
 * regal_usable_size() over its live blocks and of its handles' sizes
 * rounded up to 16, stats.blocks_in_use == their count, mapped <= limit.
 * Sizes beyond PTRDIFF_MAX (or beyond a limit) must fail with ENOMEM, bad
 * alignments with EINVAL; an arena without a limit must serve everything
 * else.  Any other regal error report is a bug too (the sequences are
 * correct by construction).  A violation aborts.
 *
 * Every input ends by destroying its arenas (and freeing what it left in
 * the default arena), so nothing carries over from one input to the next.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regal.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#define ARENAS        4 /* own arenas; slot ARENAS is the default arena */
#define DEFAULT_SLOT  ARENAS
#define MAX_BLOCKS    256
#define MAX_POOLS     8
#define MAX_HANDLES   64
#define MAX_STALE     16
#define LIVE_BYTE_CAP (96 * MiB) /* keeps RSS bounded: bigger requests are skipped */

struct arena_slot {
    regal_arena *a; /* NULL: not created yet */
    size_t limit;
    unsigned flags;
};

struct block {
    unsigned char *p;
    size_t size;   /* requested */
    size_t usable; /* regal_usable_size() when it was made */
    size_t align;
    int arena; /* slot */
    int pool;  /* pool slot, -1 for a block of the alloc family */
    unsigned char fill;
};

struct pool_slot {
    regal_pool *p; /* NULL: free slot */
    int arena;
    size_t size, align;
};

/* A live handle the harness owns, or (in stale[]) one freed or reset. */
struct handle {
    regal_handle h;
    size_t size;
    int arena; /* slot */
    unsigned char fill;
};

static struct arena_slot arenas[ARENAS + 1];
static struct handle handles[MAX_HANDLES], stale[MAX_STALE];
static size_t nhandles, nstale;
/* The kind of report an operation expects (-1: none), and how many came. */
static int expected_report = -1;
static unsigned reports;
static struct block blocks[MAX_BLOCKS];
static size_t nblocks;
static struct pool_slot pools[MAX_POOLS];
static size_t live_bytes;
static unsigned op_index;
/* FUZZ_ARENA_TRACE=1 prints each operation and block (to read a crash). */
static bool trace;

/* ---- failing ------------------------------------------------------------- */

static __attribute__((noreturn, format(printf, 3, 4))) void fail(int line, const char *what,
                                                                 const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fuzz_arena: op %u, line %d: check failed: %s: ", op_index, line, what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define CHECK(cond, ...) ((cond) ? (void)0 : fail(__LINE__, #cond, __VA_ARGS__))

static void on_regal_error(regal_error_kind kind, const void *ptr, const char *message, void *ctx)
{
    (void)ctx;
    if ((int)kind == expected_report) {
        reports++;
        return;
    }
    fprintf(stderr, "fuzz_arena: op %u: regal reported error %d on %p: %s\n", op_index, (int)kind,
            ptr, message);
    abort();
}

/* ---- reading the input --------------------------------------------------- */

struct input {
    const uint8_t *p;
    size_t n;
};

static unsigned take8(struct input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static size_t take16(struct input *in)
{
    size_t lo = take8(in);
    return lo | (size_t)take8(in) << 8;
}

static size_t take32(struct input *in)
{
    size_t lo = take16(in);
    return lo | take16(in) << 16;
}

/* ---- block table ---------------------------------------------------------- */

/* Whether all n bytes at p equal v (memcmp against a buffer of v). */
static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    static unsigned char ref[4096];
    static int ref_value = -1;
    if (ref_value != v) {
        memset(ref, v, sizeof ref);
        ref_value = v;
    }
    while (n > 0) {
        size_t k = n < sizeof ref ? n : sizeof ref;
        if (memcmp(p, ref, k) != 0)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

static unsigned char fill_byte(void)
{
    unsigned char v = (unsigned char)(op_index * 37u + 11u);
    return v != 0 ? v : 0xa5;
}

static regal_arena *arena_at(int slot)
{
    return arenas[slot].a;
}

/* Everything the harness knows about block b still holds. */
static void verify_block(const struct block *b)
{
    CHECK(regal_arena_of(b->p) == arena_at(b->arena), "block %p of slot %d: regal_arena_of %p",
          (void *)b->p, b->arena, (void *)regal_arena_of(b->p));
    size_t usable = regal_usable_size(b->p);
    CHECK(usable == b->usable, "block %p: usable size went from %zu to %zu", (void *)b->p,
          b->usable, usable);
    CHECK(all_bytes(b->p, b->usable, b->fill), "block %p (%zu bytes, usable %zu): contents changed",
          (void *)b->p, b->size, b->usable);
}

static void remove_block(size_t i)
{
    live_bytes -= blocks[i].usable;
    blocks[i] = blocks[--nblocks];
}

/* Checks a block regal just returned and adds it to the table, filled. */
static void add_block(void *ptr, size_t size, size_t align, int slot, int pool, bool zeroed)
{
    unsigned char *p = ptr;
    CHECK(p != NULL, "null block");
    CHECK((uintptr_t)p % align == 0, "block %p of %zu bytes not aligned to %zu", ptr, size, align);
    CHECK(regal_arena_of(p) == arena_at(slot), "block %p: regal_arena_of %p, arena %p", ptr,
          (void *)regal_arena_of(p), (void *)arena_at(slot));
    size_t usable = regal_usable_size(p);
    CHECK(usable >= size, "block %p: usable %zu below size %zu", ptr, usable, size);
    for (size_t i = 0; i < nblocks; i++) {
        const struct block *o = &blocks[i];
        CHECK(p != o->p && (p + usable <= o->p || o->p + o->usable <= p),
              "block %p (+%zu) overlaps live block %p (+%zu)", ptr, usable, (void *)o->p,
              o->usable);
    }
    if (zeroed)
        CHECK(all_bytes(p, size, 0), "calloc block %p of %zu bytes not zeroed", ptr, size);
    CHECK(nblocks < MAX_BLOCKS, "table full");
    struct block *b = &blocks[nblocks++];
    *b = (struct block){.p = p,
                        .size = size,
                        .usable = usable,
                        .align = align,
                        .arena = slot,
                        .pool = pool,
                        .fill = fill_byte()};
    memset(p, b->fill, usable);
    live_bytes += usable;
    if (trace)
        fprintf(stderr, "  + %p size %zu usable %zu align %zu slot %d pool %d\n", ptr, size, usable,
                align, slot, pool);
}

/* Index of a block chosen by the input, or -1 when there is none.  With
 * pool_only, only pool objects qualify. */
static long pick_block(struct input *in, bool pool_only)
{
    size_t start = take16(in); /* read even without blocks: op lengths do not vary */
    if (nblocks == 0)
        return -1;
    start %= nblocks;
    for (size_t k = 0; k < nblocks; k++) {
        size_t i = (start + k) % nblocks;
        if (!pool_only || blocks[i].pool >= 0)
            return (long)i;
    }
    return -1;
}

/* ---- handles ------------------------------------------------------------- */

/* What a handle block counts for in in_use: its size rounded up to 16 (a
 * minimal block for 0). */
static size_t handle_usable(size_t size)
{
    return ((size ? size : 1) + 15) & ~(size_t)15;
}

static unsigned char *handle_block(const struct handle *h)
{
    return regal_handle_ptr(arena_at(h->arena), h->h);
}

static void verify_handle(const struct handle *h)
{
    unsigned char *p = handle_block(h);
    CHECK(p != NULL, "handle %#llx of slot %d: no block", (unsigned long long)h->h, h->arena);
    CHECK((uintptr_t)p % 16 == 0, "handle block %p not 16-aligned", (void *)p);
    CHECK(all_bytes(p, h->size, h->fill), "handle %#llx (%zu bytes at %p): contents changed",
          (unsigned long long)h->h, h->size, (void *)p);
}

static void verify_handles(int slot)
{
    for (size_t i = 0; i < nhandles; i++)
        if (handles[i].arena == slot)
            verify_handle(&handles[i]);
}

/* Handle i leaves the table for the stale list (the oldest stale one
 * makes room). */
static void retire_handle(size_t i)
{
    live_bytes -= handle_usable(handles[i].size);
    if (nstale == MAX_STALE)
        memmove(stale, stale + 1, --nstale * sizeof stale[0]);
    stale[nstale++] = handles[i];
    handles[i] = handles[--nhandles];
}

/* ---- arenas -------------------------------------------------------------- */

static void check_stats(int slot)
{
    regal_arena *a = arena_at(slot);
    size_t sum = 0, count = 0;
    for (size_t i = 0; i < nblocks; i++) {
        if (blocks[i].arena != slot)
            continue;
        sum += regal_usable_size(blocks[i].p);
        count++;
    }
    for (size_t i = 0; i < nhandles; i++) {
        if (handles[i].arena != slot)
            continue;
        sum += handle_usable(handles[i].size);
        count++;
    }
    regal_stats s;
    regal_arena_stats(a, &s);
    CHECK(s.in_use == sum, "slot %d: in_use %zu, live blocks' usable sizes sum to %zu", slot,
          s.in_use, sum);
    CHECK(s.blocks_in_use == count, "slot %d: blocks_in_use %zu, %zu live", slot, s.blocks_in_use,
          count);
    CHECK(s.peak_in_use >= s.in_use, "slot %d: peak %zu below in_use %zu", slot, s.peak_in_use,
          s.in_use);
    CHECK(s.mapped >= s.in_use, "slot %d: mapped %zu below in_use %zu", slot, s.mapped, s.in_use);
    CHECK(s.alloc_count - s.free_count == s.blocks_in_use,
          "slot %d: %zu allocs - %zu frees != %zu blocks", slot, s.alloc_count, s.free_count,
          s.blocks_in_use);
    size_t limit = arenas[slot].limit;
    CHECK(limit == 0 || s.mapped <= limit, "slot %d: mapped %zu over limit %zu", slot, s.mapped,
          limit);
}

static void check_arena(int slot)
{
    CHECK(regal_arena_check(arena_at(slot)) == 0, "slot %d: regal_arena_check", slot);
    check_stats(slot);
}

/* Verifies and forgets every block (and pool) of the slot: before a reset
 * or destroy. */
static void forget_arena(int slot)
{
    for (size_t i = nblocks; i-- > 0;) {
        if (blocks[i].arena != slot)
            continue;
        verify_block(&blocks[i]);
        remove_block(i);
    }
    for (int k = 0; k < MAX_POOLS; k++)
        if (pools[k].p != NULL && pools[k].arena == slot)
            pools[k].p = NULL;
    for (size_t i = nhandles; i-- > 0;) {
        if (handles[i].arena != slot)
            continue;
        verify_handle(&handles[i]);
        retire_handle(i);
    }
}

static const char long_name[] = "a-name-longer-than-the-thirty-one-bytes-kept-by-regal";

static void create_arena(int slot, struct input *in)
{
    unsigned b = take8(in);
    regal_arena_config cfg = {.flags = b & (REGAL_ARENA_SINGLE_THREAD | REGAL_ARENA_DEBUG)};
    static const char *const names[] = {NULL, "fz", "", long_name};
    cfg.name = names[(b >> 2) & 3];
    if ((b >> 4) % 6 == 0) { /* a small limit, one time in six */
        size_t l = take16(in);
        cfg.limit = (l & 0x8000) ? (l & 0x7fff) + 1 : (l % 512 + 1) * 16 * KiB;
    }
    errno = 0;
    regal_arena *a = regal_arena_create(&cfg);
    if (trace)
        fprintf(stderr, "  arena %p in slot %d: flags %u, limit %zu\n", (void *)a, slot, cfg.flags,
                cfg.limit);
    if (a == NULL) {
        /* Only a limit too small for the arena itself may refuse. */
        CHECK(cfg.limit != 0 && errno == ENOMEM, "create (flags %u, limit %zu): errno %d",
              cfg.flags, cfg.limit, errno);
        return;
    }
    arenas[slot] = (struct arena_slot){.a = a, .limit = cfg.limit, .flags = cfg.flags};
    regal_stats s;
    regal_arena_stats(a, &s);
    CHECK(s.in_use == 0 && s.blocks_in_use == 0, "slot %d: new arena not empty", slot);
    check_arena(slot);
}

static void destroy_arena(int slot)
{
    if (slot == DEFAULT_SLOT || arena_at(slot) == NULL)
        return;
    forget_arena(slot);
    regal_arena_destroy(arena_at(slot));
    arenas[slot].a = NULL;
}

static void reset_arena(int slot)
{
    if (slot == DEFAULT_SLOT || arena_at(slot) == NULL)
        return;
    forget_arena(slot);
    regal_arena_reset(arena_at(slot));
    regal_stats s;
    regal_arena_stats(arena_at(slot), &s);
    CHECK(s.in_use == 0 && s.blocks_in_use == 0, "slot %d after reset: in_use %zu, %zu blocks",
          slot, s.in_use, s.blocks_in_use);
    check_arena(slot);
}

/* An arena slot chosen by the input, created if needed; -1 if creation
 * was refused (a limit below the arena's own metadata). */
static int pick_arena(struct input *in)
{
    unsigned b = take8(in);
    int slot = b >= 240 ? DEFAULT_SLOT : (int)(b % ARENAS);
    if (slot == DEFAULT_SLOT)
        arenas[slot] = (struct arena_slot){.a = regal_default_arena()};
    else if (arena_at(slot) == NULL)
        create_arena(slot, in);
    return arena_at(slot) != NULL ? slot : -1;
}

/* ---- sizes and outcomes --------------------------------------------------- */

static const size_t absurd_sizes[] = {
    SIZE_MAX,
    SIZE_MAX - 1,
    SIZE_MAX - 15,
    SIZE_MAX - 16,
    SIZE_MAX - 4095,
    SIZE_MAX - 65535,
    SIZE_MAX - ((size_t)4 << 20) + 1,
    SIZE_MAX / 2 + 1, /* PTRDIFF_MAX + 1 */
    SIZE_MAX / 2 + 4096,
    (SIZE_MAX / 2 + 1) | 16,
};

/* A request size: mostly small, sometimes medium (up to 2 MiB, spread
 * evenly over the powers of two), rarely large (up to 8 MiB) or absurd. */
static size_t pick_size(struct input *in, int slot)
{
    unsigned k = take8(in);
    if (k < 144)
        return take8(in);
    if (k < 192)
        return take16(in) % (8 * KiB + 1);
    if (k < 232) {
        unsigned bits = 13 + take8(in) % 9; /* 8 KiB .. 2 MiB */
        return take32(in) % (((size_t)1 << bits) + 1);
    }
    if (k < 240)
        return 2 * MiB + take32(in) % (6 * MiB + 1);
    size_t v = take16(in);
    if (k < 250 && arenas[slot].limit != 0)
        return arenas[slot].limit + 1 + v; /* more than the limit allows */
    return absurd_sizes[v % (sizeof absurd_sizes / sizeof absurd_sizes[0])];
}

/* How an allocation of size bytes (+ alignment slack) in slot may end. */
enum outcome { MUST_SUCCEED, MAY_FAIL, MUST_FAIL };

static enum outcome expected_outcome(int slot, size_t size)
{
    size_t limit = arenas[slot].limit;
    if (size > PTRDIFF_MAX || (limit != 0 && size > limit))
        return MUST_FAIL;
    return limit != 0 ? MAY_FAIL : MUST_SUCCEED;
}

/* Checks a NULL result against the expectation (errno must be ENOMEM). */
static void check_failure(const char *op, int slot, size_t size, int err)
{
    CHECK(expected_outcome(slot, size) != MUST_SUCCEED, "%s of %zu in slot %d failed (errno %d)",
          op, size, slot, err);
    CHECK(err == ENOMEM, "%s of %zu in slot %d: errno %d, want ENOMEM", op, size, slot, err);
}

/* Requests that would push the live total past the cap are skipped, unless
 * they must fail anyway. */
static bool too_big_to_keep(int slot, size_t size)
{
    return expected_outcome(slot, size) != MUST_FAIL && live_bytes + size > LIVE_BYTE_CAP;
}

/* ---- operations ---------------------------------------------------------- */

static void op_alloc(struct input *in)
{
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    size_t size = pick_size(in, slot);
    if (too_big_to_keep(slot, size) || nblocks == MAX_BLOCKS)
        return;
    errno = 0;
    void *p = regal_alloc(arena_at(slot), size);
    int err = errno;
    if (p == NULL) {
        check_failure("alloc", slot, size, err);
        return;
    }
    CHECK(expected_outcome(slot, size) != MUST_FAIL, "alloc of %zu in slot %d succeeded", size,
          slot);
    add_block(p, size, 16, slot, -1, false);
}

static void op_calloc(struct input *in)
{
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    size_t count, size;
    unsigned k = take8(in);
    if (k < 200) { /* a real array */
        count = take8(in) % 64;
        size = pick_size(in, slot);
        if (count > 1)
            size /= count;
    } else { /* count * size overflows or is absurd */
        count = (size_t)1 << (take8(in) % 64);
        size = absurd_sizes[take8(in) % (sizeof absurd_sizes / sizeof absurd_sizes[0])] / 2 + 1;
    }
    size_t total;
    bool overflow = __builtin_mul_overflow(count, size, &total);
    if (!overflow && (too_big_to_keep(slot, total) || nblocks == MAX_BLOCKS))
        return;
    errno = 0;
    void *p = regal_calloc(arena_at(slot), count, size);
    int err = errno;
    if (overflow) {
        CHECK(p == NULL && err == ENOMEM, "calloc(%zu, %zu) overflows: %p, errno %d", count, size,
              p, err);
        return;
    }
    if (p == NULL) {
        check_failure("calloc", slot, total, err);
        return;
    }
    CHECK(expected_outcome(slot, total) != MUST_FAIL, "calloc of %zu in slot %d succeeded", total,
          slot);
    add_block(p, total, 16, slot, -1, true);
}

static void op_aligned_alloc(struct input *in)
{
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    unsigned k = take8(in);
    size_t align;
    bool valid = true;
    if (k < 232) {
        align = (size_t)1 << (k % 21); /* 1 .. 1 MiB */
    } else {
        static const size_t bad[] = {0, 3, 24, 48, 100, 4097, (size_t)3 << 20, SIZE_MAX};
        align = bad[k % (sizeof bad / sizeof bad[0])];
        valid = false;
    }
    size_t size = pick_size(in, slot);
    if (too_big_to_keep(slot, size) || nblocks == MAX_BLOCKS)
        return;
    errno = 0;
    void *p = regal_aligned_alloc(arena_at(slot), align, size);
    int err = errno;
    if (!valid) {
        CHECK(p == NULL && err == EINVAL, "aligned_alloc(%zu, %zu): %p, errno %d", align, size, p,
              err);
        return;
    }
    if (p == NULL) {
        check_failure("aligned_alloc", slot, size, err);
        return;
    }
    CHECK(expected_outcome(slot, size) != MUST_FAIL, "aligned_alloc of %zu in slot %d succeeded",
          size, slot);
    add_block(p, size, align < 16 ? 16 : align, slot, -1, false);
}

/* realloc of a live block into its own arena or (across) into another. */
static void op_realloc(struct input *in, bool across)
{
    long i = pick_block(in, false);
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    if (i >= 0 && !across && arena_at(blocks[i].arena) != NULL)
        slot = blocks[i].arena;
    size_t size = pick_size(in, slot);
    if (too_big_to_keep(slot, size))
        return;
    if (i < 0) { /* realloc(NULL, n) is alloc */
        if (nblocks == MAX_BLOCKS)
            return;
        errno = 0;
        void *p = regal_realloc(arena_at(slot), NULL, size);
        if (p == NULL)
            check_failure("realloc(NULL)", slot, size, errno);
        else
            add_block(p, size, 16, slot, -1, false);
        return;
    }
    struct block old = blocks[i];
    verify_block(&old);
    if (trace)
        fprintf(stderr, "  realloc %p (slot %d, pool %d, usable %zu) to %zu in slot %d\n",
                (void *)old.p, old.arena, old.pool, old.usable, size, slot);
    errno = 0;
    unsigned char *p = regal_realloc(arena_at(slot), old.p, size);
    int err = errno;
    if (p == NULL) {
        check_failure(across ? "realloc across" : "realloc", slot, size, err);
        verify_block(&old); /* untouched */
        return;
    }
    CHECK(expected_outcome(slot, size) != MUST_FAIL, "realloc to %zu in slot %d succeeded", size,
          slot);
    size_t kept = old.usable < size ? old.usable : size;
    CHECK(all_bytes(p, kept, old.fill), "realloc %p (usable %zu) -> %p (%zu): contents lost",
          (void *)old.p, old.usable, (void *)p, size);
    remove_block((size_t)i);
    /* Resized in place, a pool object stays its pool's. */
    int pool = p == old.p && slot == old.arena ? old.pool : -1;
    size_t align = pool >= 0 ? old.align : 16;
    add_block(p, size, align, slot, pool, false);
}

static void op_free(struct input *in)
{
    long i = pick_block(in, false);
    bool via_pool = take8(in) & 1;
    if (i < 0)
        return;
    struct block b = blocks[i];
    verify_block(&b);
    remove_block((size_t)i);
    if (trace)
        fprintf(stderr, "  - %p (slot %d, pool %d)\n", (void *)b.p, b.arena, b.pool);
    if (b.pool >= 0 && via_pool)
        regal_pool_free(pools[b.pool].p, b.p);
    else
        regal_free(b.p);
}

static void op_pool_create(struct input *in)
{
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    int k = 0;
    while (k < MAX_POOLS && pools[k].p != NULL)
        k++;
    if (k == MAX_POOLS)
        return;
    unsigned s = take8(in), al = take8(in);
    size_t size;
    bool valid = true;
    if (s < 160)
        size = take8(in) % 64 + 1;
    else if (s < 236)
        size = take16(in) % (8 * KiB) + 1;
    else if (s < 248)
        size = take32(in) % REGAL_POOL_MAX_OBJECT + 1;
    else {
        static const size_t bad[] = {0, REGAL_POOL_MAX_OBJECT + 1, SIZE_MAX, SIZE_MAX / 2 + 1};
        size = bad[s % 4];
        valid = false;
    }
    size_t align;
    if (al < 32)
        align = 0;
    else if (al < 240)
        align = (size_t)1 << (al % 17); /* 1 .. 64 KiB */
    else {
        static const size_t bad[] = {3, 12, 96, (size_t)1 << 17, (size_t)1 << 20, SIZE_MAX};
        align = bad[al % 6];
        valid = false;
    }
    errno = 0;
    regal_pool *p = regal_pool_create(arena_at(slot), size, align);
    int err = errno;
    if (!valid) {
        CHECK(p == NULL && err == EINVAL, "pool_create(%zu, %zu): %p, errno %d", size, align,
              (void *)p, err);
        return;
    }
    if (p == NULL) {
        CHECK(arenas[slot].limit != 0 && err == ENOMEM, "pool_create(%zu, %zu) failed: errno %d",
              size, align, err);
        return;
    }
    pools[k] = (struct pool_slot){.p = p, .arena = slot, .size = size, .align = align ? align : 16};
}

static int pick_pool(struct input *in)
{
    unsigned start = take8(in);
    for (unsigned j = 0; j < MAX_POOLS; j++) {
        int k = (int)((start + j) % MAX_POOLS);
        if (pools[k].p != NULL)
            return k;
    }
    return -1;
}

static void op_pool_alloc(struct input *in)
{
    int k = pick_pool(in);
    unsigned n = take8(in) % 8 + 1; /* a few at once */
    if (k < 0 || nblocks == MAX_BLOCKS || too_big_to_keep(pools[k].arena, pools[k].size))
        return;
    for (unsigned j = 0; j < n && nblocks < MAX_BLOCKS; j++) {
        errno = 0;
        void *obj = regal_pool_alloc(pools[k].p);
        int err = errno;
        if (obj == NULL) {
            CHECK(arenas[pools[k].arena].limit != 0 && err == ENOMEM,
                  "pool_alloc (size %zu, align %zu) failed: errno %d", pools[k].size,
                  pools[k].align, err);
            return;
        }
        add_block(obj, pools[k].size, pools[k].align, pools[k].arena, k, false);
    }
}

/* Verifies and forgets the objects of pool k. */
static void forget_pool(int k)
{
    for (size_t i = nblocks; i-- > 0;) {
        if (blocks[i].pool != k)
            continue;
        verify_block(&blocks[i]);
        remove_block(i);
    }
}

static void op_pool_reset(struct input *in, bool destroy)
{
    int k = pick_pool(in);
    if (k < 0)
        return;
    forget_pool(k);
    if (destroy) {
        regal_pool_destroy(pools[k].p);
        pools[k].p = NULL;
    } else {
        regal_pool_reset(pools[k].p);
    }
    check_stats(pools[k].arena);
}

static void op_trim(struct input *in)
{
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    regal_arena_trim(arena_at(slot));
    for (size_t i = 0; i < nblocks; i++)
        if (blocks[i].arena == slot)
            verify_block(&blocks[i]);
    verify_handles(slot);
    check_arena(slot);
}

static void op_handle_alloc(struct input *in)
{
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    size_t size = pick_size(in, slot);
    if (too_big_to_keep(slot, size) || nhandles == MAX_HANDLES)
        return;
    errno = 0;
    regal_handle h = regal_handle_alloc(arena_at(slot), size);
    int err = errno;
    if (h == 0) {
        check_failure("handle alloc", slot, size, err);
        return;
    }
    CHECK(expected_outcome(slot, size) != MUST_FAIL, "handle alloc of %zu in slot %d succeeded",
          size, slot);
    struct handle *n = &handles[nhandles++];
    *n = (struct handle){.h = h, .size = size, .arena = slot, .fill = fill_byte()};
    unsigned char *p = handle_block(n);
    CHECK(p != NULL && (uintptr_t)p % 16 == 0, "new handle %#llx: block %p", (unsigned long long)h,
          (void *)p);
    CHECK(regal_arena_of(p) == NULL, "handle block %p passes for an alloc block", (void *)p);
    for (size_t i = 0; i < nblocks; i++)
        CHECK(p + size <= blocks[i].p || blocks[i].p + blocks[i].usable <= p,
              "handle block %p (+%zu) overlaps block %p", (void *)p, size, (void *)blocks[i].p);
    memset(p, n->fill, size);
    live_bytes += handle_usable(size);
    if (trace)
        fprintf(stderr, "  + handle %#llx at %p size %zu slot %d\n", (unsigned long long)h,
                (void *)p, size, slot);
}

static void op_handle_free(struct input *in)
{
    size_t k = take16(in);
    if (nhandles == 0)
        return;
    size_t i = k % nhandles;
    struct handle h = handles[i];
    verify_handle(&h);
    retire_handle(i);
    regal_handle_free(arena_at(h.arena), h.h);
    CHECK(regal_handle_ptr(arena_at(h.arena), h.h) == NULL, "freed handle %#llx still has a block",
          (unsigned long long)h.h);
}

/* A freed or reset handle, given to its arena slot's current arena (the
 * same arena, or a re-created one): NULL, and one report when freed. */
static void op_handle_stale(struct input *in)
{
    size_t k = take16(in);
    if (nstale == 0)
        return;
    const struct handle *h = &stale[k % nstale];
    regal_arena *a = arena_at(h->arena);
    if (a == NULL)
        return;
    CHECK(regal_handle_ptr(a, h->h) == NULL, "stale handle %#llx has a block",
          (unsigned long long)h->h);
    expected_report = REGAL_ERR_INVALID_FREE;
    reports = 0;
    regal_handle_free(a, h->h);
    expected_report = -1;
    CHECK(reports == 1, "free of stale handle %#llx: %u reports", (unsigned long long)h->h,
          reports);
    verify_handles(h->arena);
}

static void op_compact(struct input *in)
{
    int slot = pick_arena(in);
    if (slot < 0)
        return;
    regal_arena_compact(arena_at(slot));
    verify_handles(slot);
    if (arenas[slot].limit == 0)
        CHECK(regal_arena_compact(arena_at(slot)) == 0, "slot %d: a second compaction gave back",
              slot);
    verify_handles(slot);
    check_arena(slot);
}

/* Out of 256: alloc 128, free 64, stale 32, compact 32. */
static void op_handle(struct input *in)
{
    unsigned k = take8(in);
    if (k < 128)
        op_handle_alloc(in);
    else if (k < 192)
        op_handle_free(in);
    else if (k < 224)
        op_handle_stale(in);
    else
        op_compact(in);
}

/* regal_arena_of never reports and says NULL for what is not a live block. */
static void op_probe(struct input *in)
{
    int local = 0;
    CHECK(regal_arena_of(NULL) == NULL, "arena_of(NULL)");
    CHECK(regal_arena_of(&local) == NULL, "arena_of(stack)");
    CHECK(regal_arena_of(blocks) == NULL, "arena_of(global)");
    long i = pick_block(in, false);
    size_t off = take16(in);
    if (i < 0 || blocks[i].usable < 2)
        return;
    off = 1 + off % (blocks[i].usable - 1);
    CHECK(regal_arena_of(blocks[i].p + off) == NULL, "arena_of(%p + %zu) of a %zu-byte block",
          (void *)blocks[i].p, off, blocks[i].usable);
}

enum op {
    OP_ALLOC,
    OP_CALLOC,
    OP_ALIGNED,
    OP_REALLOC,
    OP_REALLOC_ACROSS,
    OP_FREE,
    OP_POOL_CREATE,
    OP_POOL_ALLOC,
    OP_POOL_FREE,
    OP_POOL_RESET,
    OP_POOL_DESTROY,
    OP_CREATE,
    OP_DESTROY,
    OP_RESET,
    OP_CHECK,
    OP_STATS,
    OP_TRIM,
    OP_PROBE,
    OP_HANDLE, /* a second byte picks the handle operation */
    OP_COUNT
};

/* Out of 256: the share of each operation. */
static const unsigned char op_weight[OP_COUNT] = {
    [OP_ALLOC] = 50,
    [OP_CALLOC] = 20,
    [OP_ALIGNED] = 25,
    [OP_REALLOC] = 25,
    [OP_REALLOC_ACROSS] = 12,
    [OP_FREE] = 48,
    [OP_POOL_CREATE] = 8,
    [OP_POOL_ALLOC] = 25,
    [OP_POOL_FREE] = 12,
    [OP_POOL_RESET] = 3,
    [OP_POOL_DESTROY] = 3,
    [OP_CREATE] = 3,
    [OP_DESTROY] = 3,
    [OP_RESET] = 3,
    [OP_CHECK] = 6,
    [OP_STATS] = 6,
    [OP_TRIM] = 2,
    [OP_PROBE] = 1,
    [OP_HANDLE] = 1, /* last, so that the older operations kept their bytes */
};

static const char *const op_name[OP_COUNT] = {
    "alloc",          "calloc",      "aligned_alloc", "realloc",
    "realloc across", "free",        "pool create",   "pool alloc",
    "pool free",      "pool reset",  "pool destroy",  "arena re-create",
    "arena destroy",  "arena reset", "check",         "stats",
    "trim",           "probe",       "handle",
};

static enum op decode_op(unsigned byte)
{
    for (int k = 0; k < OP_COUNT; k++) {
        if (byte < op_weight[k])
            return (enum op)k;
        byte -= op_weight[k];
    }
    return OP_PROBE;
}

static void run_op(struct input *in)
{
    int slot;
    enum op op = decode_op(take8(in));
    if (trace)
        fprintf(stderr, "op %u: %s (%zu blocks)\n", op_index, op_name[op], nblocks);
    switch (op) {
    case OP_ALLOC:
        op_alloc(in);
        break;
    case OP_CALLOC:
        op_calloc(in);
        break;
    case OP_ALIGNED:
        op_aligned_alloc(in);
        break;
    case OP_REALLOC:
        op_realloc(in, false);
        break;
    case OP_REALLOC_ACROSS:
        op_realloc(in, true);
        break;
    case OP_FREE:
        op_free(in);
        break;
    case OP_POOL_CREATE:
        op_pool_create(in);
        break;
    case OP_POOL_ALLOC:
        op_pool_alloc(in);
        break;
    case OP_POOL_FREE: {
        long i = pick_block(in, true);
        if (i >= 0) {
            struct block b = blocks[i];
            verify_block(&b);
            remove_block((size_t)i);
            regal_pool_free(pools[b.pool].p, b.p);
        }
        break;
    }
    case OP_POOL_RESET:
        op_pool_reset(in, false);
        break;
    case OP_POOL_DESTROY:
        op_pool_reset(in, true);
        break;
    case OP_CREATE: /* destroy and re-create */
        slot = (int)(take8(in) % ARENAS);
        destroy_arena(slot);
        create_arena(slot, in);
        break;
    case OP_DESTROY:
        destroy_arena((int)(take8(in) % ARENAS));
        break;
    case OP_RESET:
        reset_arena((int)(take8(in) % ARENAS));
        break;
    case OP_CHECK:
        for (slot = 0; slot <= ARENAS; slot++)
            if (arena_at(slot) != NULL)
                check_arena(slot);
        break;
    case OP_STATS:
        slot = pick_arena(in);
        if (slot >= 0)
            check_stats(slot);
        break;
    case OP_TRIM:
        op_trim(in);
        break;
    case OP_HANDLE:
        op_handle(in);
        break;
    case OP_PROBE:
    case OP_COUNT:
        op_probe(in);
        break;
    }
}

/* Ends the input: checks everything, then frees the default arena's blocks
 * and pools and destroys the other arenas (some after freeing each block,
 * some with their blocks still live). */
static void finish(bool free_first)
{
    for (int slot = 0; slot <= ARENAS; slot++)
        if (arena_at(slot) != NULL)
            check_arena(slot);
    for (size_t i = nblocks; i-- > 0;) {
        struct block b = blocks[i];
        if (b.arena != DEFAULT_SLOT && !free_first)
            continue;
        verify_block(&b);
        remove_block(i);
        regal_free(b.p);
    }
    for (size_t i = nhandles; i-- > 0;) {
        struct handle h = handles[i];
        if (h.arena != DEFAULT_SLOT && !free_first)
            continue;
        verify_handle(&h);
        retire_handle(i);
        regal_handle_free(arena_at(h.arena), h.h);
    }
    for (int k = 0; k < MAX_POOLS; k++)
        if (pools[k].p != NULL && pools[k].arena == DEFAULT_SLOT)
            regal_pool_destroy(pools[k].p);
    if (arena_at(DEFAULT_SLOT) != NULL)
        check_arena(DEFAULT_SLOT);
    for (int slot = 0; slot < ARENAS; slot++) {
        if (arena_at(slot) == NULL)
            continue;
        if (free_first)
            check_arena(slot);
        destroy_arena(slot);
    }
    memset(pools, 0, sizeof pools);
    memset(arenas, 0, sizeof arenas);
    nstale = 0;
    CHECK(nblocks == 0 && nhandles == 0 && live_bytes == 0,
          "%zu blocks, %zu handles, %zu bytes left", nblocks, nhandles, live_bytes);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    unsigned total = 0;
    for (int k = 0; k < OP_COUNT; k++)
        total += op_weight[k];
    CHECK(total == 256, "the operation weights add up to %u, not 256", total);
    regal_set_error_handler(on_regal_error, NULL);
    const char *t = getenv("FUZZ_ARENA_TRACE");
    trace = t != NULL && *t != '\0' && *t != '0';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    bool free_first = size > 0 && (data[0] & 1);
    for (op_index = 0; in.n > 0; op_index++)
        run_op(&in);
    finish(free_first);
    return 0;
}
