/*
 * Threads for ThreadSanitizer: a standalone program printing TAP (the
 * Criterion runner itself crashes under TSan).  Built in every build; its
 * point is a build configured with -Db_sanitize=thread, where any data race
 * inside regal ends the run with TSan's report.
 *
 *  0. First use: four threads make their first regal calls at once
 *     (process-wide initialisation, the default arena's creation).
 *  1. One thread-safe arena shared by four threads: alloc, realloc and free
 *     of small, medium and large sizes, cross-thread frees through a queue,
 *     two pools shared by all, the default arena used alongside; a fifth
 *     thread calls regal_arena_stats and regal_arena_check meanwhile.  Then
 *     the same with a debug arena (canaries, fill patterns, quarantine).
 *  2. Four single-thread arenas, each used by one thread only (with pools,
 *     resets, and moves to and from the shared arena).
 *  3. Arenas created, used and destroyed concurrently.
 *  4. Short-lived threads: blocks that outlive the thread that made them,
 *     and blocks of the main thread freed by them.
 *  5. Handles of one arena under four threads: blocks written and checked
 *     between compactions, and alloc, free, regal_handle_ptr and
 *     regal_arena_compact from every thread at once.
 * Every block carries a fill byte checked before it is freed or moved; the
 * figures are checked exactly once the threads are joined; an error handler
 * counts any regal report as a failure.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "regal.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#define WORKERS 4
#define ITERS   12000 /* per worker and test; TSan makes each ~10x slower */
#define SLOTS   48

/* ---- failures and TAP ------------------------------------------------------ */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint failures; /* of the current test */
static atomic_uint reports;  /* regal error reports, any test */
static unsigned test_number;
static bool all_ok = true;

static __attribute__((format(printf, 3, 4))) void failf(int line, const char *what, const char *fmt,
                                                        ...)
{
    unsigned n = atomic_fetch_add(&failures, 1);
    if (n >= 10)
        return; /* the first few say enough */
    va_list ap;
    pthread_mutex_lock(&out_lock);
    printf("# line %d: %s: ", line, what);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

#define EXPECT(cond, ...) ((cond) ? (void)0 : failf(__LINE__, #cond, __VA_ARGS__))

static void on_regal_error(regal_error_kind kind, const void *ptr, const char *message, void *ctx)
{
    (void)ctx;
    atomic_fetch_add(&reports, 1);
    failf(__LINE__, "regal error report", "kind %d on %p: %s", (int)kind, ptr, message);
}

static void run_test(const char *name, void (*fn)(void))
{
    atomic_store(&failures, 0);
    unsigned before = atomic_load(&reports);
    fn();
    bool ok = atomic_load(&failures) == 0 && atomic_load(&reports) == before;
    printf("%s %u - %s\n", ok ? "ok" : "not ok", ++test_number, name);
    fflush(stdout);
    all_ok = all_ok && ok;
}

/* ---- random numbers, sizes and fill bytes -------------------------------- */

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Mostly small, some medium (heap), a few large (own mappings). */
static size_t random_size(uint64_t *s)
{
    unsigned r = (unsigned)(next(s) % 1000);
    if (r < 850)
        return next(s) % 600;
    if (r < 970)
        return 600 + next(s) % (8 * KiB);
    if (r < 995)
        return 8 * KiB + next(s) % (512 * KiB);
    return MiB + next(s) % (3 * MiB);
}

static unsigned char fill_of(uint64_t *s)
{
    return (unsigned char)(next(s) % 255 + 1);
}

/* Whether the n bytes at p all equal v (p[i] == p[i+1] for every i). */
static bool filled(const unsigned char *p, size_t n, unsigned char v)
{
    return n == 0 || (p[0] == v && memcmp(p, p + 1, n - 1) == 0);
}

struct block {
    unsigned char *p;
    size_t size;
    unsigned char fill;
    regal_pool *pool; /* NULL: a block of the alloc family */
};

static void fill_block(struct block *b, uint64_t *s)
{
    b->fill = fill_of(s);
    memset(b->p, b->fill, b->size);
}

static void check_block(const struct block *b, const char *where)
{
    EXPECT(filled(b->p, b->size, b->fill), "%s: block %p of %zu bytes changed", where, (void *)b->p,
           b->size);
}

static void release(struct block *b)
{
    check_block(b, "before free");
    if (b->pool != NULL)
        regal_pool_free(b->pool, b->p);
    else
        regal_free(b->p);
    b->p = NULL;
}

/* ---- a queue of blocks handed to other threads --------------------------- */

#define QUEUE_CAP 1024

static struct {
    pthread_mutex_t lock;
    struct block item[QUEUE_CAP];
    size_t head, count;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool queue_push(const struct block *b)
{
    pthread_mutex_lock(&queue.lock);
    bool ok = queue.count < QUEUE_CAP;
    if (ok) {
        queue.item[(queue.head + queue.count) % QUEUE_CAP] = *b;
        queue.count++;
    }
    pthread_mutex_unlock(&queue.lock);
    return ok;
}

static bool queue_pop(struct block *b)
{
    pthread_mutex_lock(&queue.lock);
    bool ok = queue.count > 0;
    if (ok) {
        *b = queue.item[queue.head];
        queue.head = (queue.head + 1) % QUEUE_CAP;
        queue.count--;
    }
    pthread_mutex_unlock(&queue.lock);
    return ok;
}

static void queue_drain(void)
{
    struct block b;
    while (queue_pop(&b))
        release(&b);
}

/* ---- helpers ---------------------------------------------------------------- */

static regal_stats stats_of(regal_arena *a)
{
    regal_stats s;
    regal_arena_stats(a, &s);
    return s;
}

static void expect_empty(regal_arena *a, const char *what)
{
    regal_stats s = stats_of(a);
    EXPECT(s.in_use == 0 && s.blocks_in_use == 0, "%s: %zu bytes in %zu blocks still in use", what,
           s.in_use, s.blocks_in_use);
    EXPECT(regal_arena_check(a) == 0, "%s: regal_arena_check", what);
}

static void start_all(pthread_t *t, int n, void *(*fn)(void *), void *args, size_t arg_size)
{
    for (int i = 0; i < n; i++) {
        void *arg = args != NULL ? (char *)args + (size_t)i * arg_size : NULL;
        int e = pthread_create(&t[i], NULL, fn, arg);
        if (e != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(e));
            exit(2);
        }
    }
}

static void join_all(pthread_t *t, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

/* ---- 0. first use ------------------------------------------------------------ */

static pthread_barrier_t first_barrier;

static void *first_worker(void *arg)
{
    struct worker_id {
        int id;
    } *w = arg;
    uint64_t s = 0x8c4f1a2b3d5e6f71u * (uint64_t)(w->id + 5);
    pthread_barrier_wait(&first_barrier);
    regal_arena_config cfg = {.name = "first", .flags = w->id % 2 ? REGAL_ARENA_SINGLE_THREAD : 0};
    regal_arena *mine = w->id < 2 ? regal_arena_create(&cfg) : NULL;
    regal_arena *dflt = regal_default_arena();
    regal_arena *a = mine != NULL ? mine : dflt;
    EXPECT(a != NULL, "thread %d: no arena", w->id);
    if (a == NULL)
        return NULL;
    struct block b[64];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 64; i++) {
            b[i].size = random_size(&s);
            b[i].pool = NULL;
            b[i].p = regal_alloc(i % 3 ? a : dflt, b[i].size);
            EXPECT(b[i].p != NULL, "alloc of %zu", b[i].size);
            if (b[i].p != NULL)
                fill_block(&b[i], &s);
        }
        for (int i = 0; i < 64; i++)
            if (b[i].p != NULL)
                release(&b[i]);
    }
    if (mine != NULL) {
        expect_empty(mine, "first arena");
        regal_arena_destroy(mine);
    }
    return NULL;
}

static void test_first_use(void)
{
    pthread_t t[WORKERS];
    struct {
        int id;
    } w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        w[i].id = i;
    pthread_barrier_init(&first_barrier, NULL, WORKERS);
    start_all(t, WORKERS, first_worker, w, sizeof w[0]);
    join_all(t, WORKERS);
    pthread_barrier_destroy(&first_barrier);
    expect_empty(regal_default_arena(), "default arena");
}

/* ---- 1. one shared arena -------------------------------------------------- */

static regal_arena *shared; /* test 1's arena, used by the later tests */
static regal_arena *hot;    /* the arena the workers of test 1 share */
static regal_pool *shared_pool[2];
static atomic_int workers_running;

struct worker {
    int id;
    regal_arena *own; /* test 2: the thread's single-thread arena */
};

/* Realloc of slot b into arena a, with its contents checked. */
static void move_block(struct block *b, regal_arena *a, size_t size, uint64_t *s)
{
    check_block(b, "before realloc");
    unsigned char *p = regal_realloc(a, b->p, size);
    EXPECT(p != NULL, "realloc to %zu failed (errno %d)", size, errno);
    if (p == NULL)
        return;
    size_t kept = b->size < size ? b->size : size;
    EXPECT(filled(p, kept, b->fill), "realloc %p -> %p (%zu -> %zu) lost contents", (void *)b->p,
           (void *)p, b->size, size);
    EXPECT(regal_arena_of(p) == a, "realloc result %p not in its arena", (void *)p);
    b->p = p;
    b->size = size;
    fill_block(b, s);
}

static void *shared_worker(void *arg)
{
    struct worker *w = arg;
    uint64_t s = 0x9e3779b97f4a7c15u * (uint64_t)(w->id + 1);
    struct block slot[SLOTS] = {{0}};
    regal_arena *dflt = regal_default_arena(); /* first use races with the others */

    for (int it = 0; it < ITERS; it++) {
        struct block *b = &slot[next(&s) % SLOTS];
        unsigned r = (unsigned)(next(&s) % 100);
        if (r < 35) {
            if (b->p != NULL) {
                release(b);
                continue;
            }
            regal_arena *a = next(&s) % 6 == 0 ? dflt : hot;
            b->size = random_size(&s);
            b->pool = NULL;
            b->p = next(&s) % 4 == 0 ? regal_aligned_alloc(a, (size_t)32 << (next(&s) % 8), b->size)
                                     : regal_alloc(a, b->size);
            EXPECT(b->p != NULL, "alloc of %zu failed", b->size);
            if (b->p == NULL)
                continue;
            EXPECT(regal_arena_of(b->p) == a, "block %p not in its arena", (void *)b->p);
            EXPECT(regal_usable_size(b->p) >= b->size, "usable size of %p", (void *)b->p);
            fill_block(b, &s);
        } else if (r < 50) {
            if (b->p != NULL && b->pool == NULL)
                move_block(b, next(&s) % 8 == 0 ? dflt : hot, random_size(&s), &s);
        } else if (r < 65) {
            struct block o = {.pool = shared_pool[next(&s) % 2]};
            o.p = regal_pool_alloc(o.pool);
            EXPECT(o.p != NULL, "pool alloc failed");
            if (o.p == NULL)
                continue;
            o.size = o.pool == shared_pool[0] ? 24 : 200;
            fill_block(&o, &s);
            if (b->p == NULL)
                *b = o;
            else if (!queue_push(&o))
                release(&o);
        } else if (r < 80) {
            if (b->p != NULL && queue_push(b))
                b->p = NULL;
        } else {
            struct block o;
            if (queue_pop(&o))
                release(&o);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slot[i].p != NULL)
            release(&slot[i]);
    atomic_fetch_sub(&workers_running, 1);
    return NULL;
}

/* Reads the figures and walks the metadata while the workers run. */
static void *monitor(void *arg)
{
    (void)arg;
    FILE *null = fopen("/dev/null", "w");
    unsigned rounds = 0;
    while (atomic_load(&workers_running) > 0 || rounds < 3) {
        (void)stats_of(hot); /* not exact while others allocate: only read */
        EXPECT(regal_arena_check(hot) == 0, "check of the shared arena (round %u)", rounds);
        EXPECT(regal_arena_check(regal_default_arena()) == 0, "check of the default arena");
        (void)stats_of(regal_default_arena());
        if (null != NULL && rounds % 8 == 0) {
            regal_arena_print_stats(hot, null);
            regal_arena_print_stats_json(regal_default_arena(), null);
        }
        rounds++;
        /* A debug arena's check reads every block: leave the workers room. */
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000}, NULL);
    }
    if (null != NULL)
        fclose(null);
    return NULL;
}

static void run_shared(unsigned flags)
{
    regal_arena_config cfg = {.name = "shared", .flags = flags};
    hot = regal_arena_create(&cfg);
    EXPECT(hot != NULL, "create");
    if (hot == NULL)
        return;
    shared_pool[0] = regal_pool_create(hot, 24, 8);
    shared_pool[1] = regal_pool_create(hot, 200, 64);
    EXPECT(shared_pool[0] != NULL && shared_pool[1] != NULL, "pool create");
    if (shared_pool[0] == NULL || shared_pool[1] == NULL)
        return;

    pthread_t t[WORKERS + 1];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        w[i] = (struct worker){.id = i};
    atomic_store(&workers_running, WORKERS);
    start_all(t, WORKERS, shared_worker, w, sizeof w[0]);
    start_all(&t[WORKERS], 1, monitor, NULL, 0);
    join_all(t, WORKERS + 1);

    queue_drain();
    expect_empty(hot, "shared arena");
    expect_empty(regal_default_arena(), "default arena");
    regal_pool_destroy(shared_pool[0]);
    regal_pool_destroy(shared_pool[1]);
    EXPECT(regal_arena_check(hot) == 0, "check after the pools went");
}

static void test_shared_arena(void)
{
    run_shared(0);
    shared = hot; /* stays for the next tests */
}

static void test_shared_debug_arena(void)
{
    run_shared(REGAL_ARENA_DEBUG);
    regal_arena_destroy(hot);
    hot = NULL;
}

/* ---- 2. one single-thread arena per thread -------------------------------- */

static void *own_worker(void *arg)
{
    struct worker *w = arg;
    uint64_t s = 0x2545f4914f6cdd1du * (uint64_t)(w->id + 7);
    struct block slot[SLOTS] = {{0}};
    regal_pool *pool = regal_pool_create(w->own, 40 + (size_t)w->id, 8);
    EXPECT(pool != NULL, "pool create");

    for (int it = 0; it < ITERS; it++) {
        struct block *b = &slot[next(&s) % SLOTS];
        unsigned r = (unsigned)(next(&s) % 100);
        if (r < 45) {
            if (b->p != NULL) {
                release(b);
                continue;
            }
            bool from_pool = pool != NULL && next(&s) % 4 == 0;
            b->pool = from_pool ? pool : NULL;
            b->size = from_pool ? 40 + (size_t)w->id : random_size(&s);
            if (from_pool)
                b->p = regal_pool_alloc(pool);
            else if (next(&s) % 8 == 0)
                b->p = regal_calloc(w->own, 1, b->size);
            else
                b->p = regal_alloc(w->own, b->size);
            EXPECT(b->p != NULL, "alloc of %zu failed", b->size);
            if (b->p != NULL)
                fill_block(b, &s);
        } else if (r < 75) {
            /* Moves between the own arena and the shared one (which the
             * other threads use at the same time). */
            if (b->p != NULL && b->pool == NULL)
                move_block(b, next(&s) % 3 == 0 ? shared : w->own, random_size(&s), &s);
        } else if (r < 99) {
            /* The figures of an arena nobody else touches are exact. */
            size_t in_use = 0, blocks = 0;
            for (int i = 0; i < SLOTS; i++) {
                if (slot[i].p != NULL && regal_arena_of(slot[i].p) == w->own) {
                    in_use += regal_usable_size(slot[i].p);
                    blocks++;
                }
            }
            regal_stats st = stats_of(w->own);
            EXPECT(st.in_use == in_use && st.blocks_in_use == blocks,
                   "thread %d: in_use %zu in %zu blocks, expected %zu in %zu", w->id, st.in_use,
                   st.blocks_in_use, in_use, blocks);
        } else {
            /* Reset: what was in the own arena goes at once. */
            EXPECT(regal_arena_check(w->own) == 0, "check before reset");
            for (int i = 0; i < SLOTS; i++) {
                if (slot[i].p != NULL && regal_arena_of(slot[i].p) == w->own) {
                    check_block(&slot[i], "before reset");
                    slot[i].p = NULL;
                }
            }
            regal_arena_reset(w->own);
            pool = regal_pool_create(w->own, 40 + (size_t)w->id, 8);
            EXPECT(pool != NULL, "pool create after reset");
            expect_empty(w->own, "own arena after reset");
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slot[i].p != NULL)
            release(&slot[i]);
    regal_pool_destroy(pool);
    expect_empty(w->own, "own arena");
    return NULL;
}

static void test_single_thread_arenas(void)
{
    pthread_t t[WORKERS];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        regal_arena_config cfg = {.name = "own", .flags = REGAL_ARENA_SINGLE_THREAD};
        w[i] = (struct worker){.id = i, .own = regal_arena_create(&cfg)};
        EXPECT(w[i].own != NULL, "create");
        if (w[i].own == NULL)
            return;
    }
    start_all(t, WORKERS, own_worker, w, sizeof w[0]);
    join_all(t, WORKERS);
    for (int i = 0; i < WORKERS; i++)
        regal_arena_destroy(w[i].own);
    expect_empty(shared, "shared arena");
}

/* ---- 3. arenas created and destroyed concurrently ------------------------- */

static void *churn_worker(void *arg)
{
    struct worker *w = arg;
    uint64_t s = 0x5851f42d4c957f2du * (uint64_t)(w->id + 3);
    for (int round = 0; round < 150; round++) {
        regal_arena_config cfg = {
            .name = "churn",
            .flags = (unsigned)(next(&s) % 4), /* SINGLE_THREAD and DEBUG in all combinations */
            .limit = next(&s) % 4 == 0 ? 64 * MiB : 0,
        };
        regal_arena *a = regal_arena_create(&cfg);
        EXPECT(a != NULL, "create (flags %u)", cfg.flags);
        if (a == NULL)
            continue;
        struct block b[8];
        for (int i = 0; i < 8; i++) {
            b[i].size = i == 7 ? MiB + next(&s) % MiB : random_size(&s);
            b[i].pool = NULL;
            b[i].p = regal_alloc(a, b[i].size);
            EXPECT(b[i].p != NULL, "alloc of %zu", b[i].size);
            if (b[i].p != NULL)
                fill_block(&b[i], &s);
        }
        /* Half of the blocks go to the shared arena, which outlives a. */
        for (int i = 0; i < 8; i += 2)
            if (b[i].p != NULL)
                move_block(&b[i], shared, b[i].size + 1, &s);
        EXPECT(regal_arena_check(a) == 0, "check");
        /* The rest dies with a (debug arenas list live blocks on destroy:
         * those are freed to keep the output quiet). */
        for (int i = 0; i < 8; i++) {
            if (b[i].p == NULL)
                continue;
            if (i % 2 == 0 || (cfg.flags & REGAL_ARENA_DEBUG))
                release(&b[i]);
            else
                check_block(&b[i], "before destroy");
        }
        if (round % 2 == 0)
            regal_arena_reset(a);
        regal_arena_destroy(a);
    }
    return NULL;
}

static void test_arena_churn(void)
{
    pthread_t t[WORKERS];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        w[i] = (struct worker){.id = i};
    start_all(t, WORKERS, churn_worker, w, sizeof w[0]);
    join_all(t, WORKERS);
    expect_empty(shared, "shared arena");
}

/* ---- 4. short-lived threads ------------------------------------------------- */

#define HANDOFF 64

struct handoff {
    int id;
    struct block from_main[HANDOFF]; /* freed by the thread */
    struct block to_main[HANDOFF];   /* made by the thread, freed by main */
};

static void *short_worker(void *arg)
{
    struct handoff *h = arg;
    uint64_t s = 0xd1342543de82ef95u * (uint64_t)(h->id + 11);
    for (int i = 0; i < HANDOFF; i++) {
        release(&h->from_main[i]);
        struct block *b = &h->to_main[i];
        b->size = random_size(&s);
        b->pool = NULL;
        b->p = regal_alloc(i % 2 ? shared : regal_default_arena(), b->size);
        EXPECT(b->p != NULL, "alloc of %zu", b->size);
        if (b->p != NULL)
            fill_block(b, &s);
    }
    return NULL;
}

static void test_short_lived_threads(void)
{
    enum { ROUNDS = 8 };
    static struct handoff h[WORKERS];
    uint64_t s = 42;
    for (int round = 0; round < ROUNDS; round++) {
        for (int t = 0; t < WORKERS; t++) {
            h[t].id = round * WORKERS + t;
            for (int i = 0; i < HANDOFF; i++) {
                struct block *b = &h[t].from_main[i];
                b->size = random_size(&s);
                b->pool = NULL;
                b->p = regal_alloc(i % 2 ? regal_default_arena() : shared, b->size);
                EXPECT(b->p != NULL, "alloc of %zu", b->size);
                if (b->p == NULL)
                    return;
                fill_block(b, &s);
            }
        }
        pthread_t t[WORKERS];
        start_all(t, WORKERS, short_worker, h, sizeof h[0]);
        join_all(t, WORKERS);
        for (int k = 0; k < WORKERS; k++)
            for (int i = 0; i < HANDOFF; i++)
                if (h[k].to_main[i].p != NULL)
                    release(&h[k].to_main[i]);
    }
    expect_empty(shared, "shared arena");
    expect_empty(regal_default_arena(), "default arena");
}

/* ---- 5. handles --------------------------------------------------------------- */

#define HANDLES 200

static regal_arena *handles_arena;
static pthread_barrier_t handles_barrier;

struct held {
    regal_handle h;
    size_t size;
    unsigned char fill;
};

static void *handle_worker(void *arg)
{
    struct worker *w = arg;
    regal_arena *a = handles_arena;
    uint64_t s = 0x9e3779b97f4a7c15u * (uint64_t)(w->id + 5);
    static struct held held[WORKERS][HANDLES];
    struct held *mine = held[w->id];
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < HANDLES; i++) {
            if (mine[i].h != 0)
                continue;
            mine[i].size = next(&s) % 3000;
            mine[i].fill = fill_of(&s);
            mine[i].h = regal_handle_alloc(a, mine[i].size);
            unsigned char *p = regal_handle_ptr(a, mine[i].h);
            EXPECT(p != NULL, "handle of %zu", mine[i].size);
            if (p != NULL)
                memset(p, mine[i].fill, mine[i].size);
        }
        pthread_barrier_wait(&handles_barrier);
        if (w->id == 0)
            regal_arena_compact(a); /* nobody holds an address meanwhile */
        pthread_barrier_wait(&handles_barrier);
        for (int i = 0; i < HANDLES; i++) {
            unsigned char *p = regal_handle_ptr(a, mine[i].h);
            EXPECT(p != NULL && filled(p, mine[i].size, mine[i].fill), "handle %d moved badly", i);
            if (next(&s) % 2) {
                regal_handle_free(a, mine[i].h);
                mine[i].h = 0;
            }
        }
        pthread_barrier_wait(&handles_barrier); /* no block is read from here */
        for (int j = 0; j < 300; j++) {
            regal_handle h = regal_handle_alloc(a, next(&s) % 5000);
            EXPECT(h != 0 && regal_handle_ptr(a, h) != NULL, "handle under churn");
            if (j % 60 == 0)
                regal_arena_compact(a);
            regal_handle_free(a, h);
        }
        pthread_barrier_wait(&handles_barrier);
    }
    for (int i = 0; i < HANDLES; i++)
        if (mine[i].h != 0)
            regal_handle_free(a, mine[i].h);
    return NULL;
}

static void test_handles(void)
{
    handles_arena = regal_arena_create(NULL);
    EXPECT(handles_arena != NULL, "create");
    if (handles_arena == NULL)
        return;
    pthread_barrier_init(&handles_barrier, NULL, WORKERS);
    pthread_t t[WORKERS];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        w[i] = (struct worker){.id = i};
    start_all(t, WORKERS, handle_worker, w, sizeof w[0]);
    join_all(t, WORKERS);
    pthread_barrier_destroy(&handles_barrier);
    expect_empty(handles_arena, "handles arena");
    regal_arena_destroy(handles_arena);
}

int main(void)
{
    regal_set_error_handler(on_regal_error, NULL);
    printf("1..7\n");
    fflush(stdout);
    run_test("first regal calls of the process from four threads at once", test_first_use);
    run_test("a shared arena, its pools and the default arena under four threads, "
             "checked meanwhile",
             test_shared_arena);
    run_test("the same with a debug arena", test_shared_debug_arena);
    run_test("four single-thread arenas, one per thread, moving blocks to the shared one",
             test_single_thread_arenas);
    run_test("arenas created, used and destroyed by four threads at once", test_arena_churn);
    run_test("blocks outliving their threads and freed by other threads", test_short_lived_threads);
    run_test("handles of one arena under four threads, compacted meanwhile", test_handles);
    if (shared != NULL)
        regal_arena_destroy(shared);
    return all_ok ? 0 : 1;
}
