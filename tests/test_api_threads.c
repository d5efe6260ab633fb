/*
 * Threads through the public API: a shared arena with cross-thread frees,
 * one single-thread arena per thread, the default arena, and arenas created
 * and destroyed concurrently.  Fixed seeds; no sleeps, no timing.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

#define THREADS 4

/* ---- A mutex-protected queue of blocks handed to the next thread ---------- */

#define QUEUE_CAP 1024

typedef struct handoff {
    void *ptr;
    size_t size;
    uint64_t seed;
} handoff;

typedef struct queue {
    pthread_mutex_t lock;
    size_t head, count;
    handoff item[QUEUE_CAP];
} queue;

static int queue_push(queue *q, handoff h)
{
    pthread_mutex_lock(&q->lock);
    int ok = q->count < QUEUE_CAP;
    if (ok) {
        q->item[(q->head + q->count) % QUEUE_CAP] = h;
        q->count++;
    }
    pthread_mutex_unlock(&q->lock);
    return ok;
}

static int queue_pop(queue *q, handoff *h)
{
    pthread_mutex_lock(&q->lock);
    int ok = q->count > 0;
    if (ok) {
        *h = q->item[q->head];
        q->head = (q->head + 1) % QUEUE_CAP;
        q->count--;
    }
    pthread_mutex_unlock(&q->lock);
    return ok;
}

/* ---- Shared state of one run ------------------------------------------------ */

typedef struct shared {
    regal_arena *arena;
    queue inbox[THREADS];
    atomic_int done[THREADS];  /* thread i stopped producing */
    atomic_size_t bad;         /* blocks found overwritten */
    atomic_size_t failed;      /* allocations that returned NULL */
    atomic_size_t cross_frees; /* blocks freed by a thread that did not allocate them */
    size_t iterations;
} shared;

typedef struct worker {
    shared *sh;
    int id;
    pthread_t thread;
} worker;

static uint64_t block_seed(const void *p, int id)
{
    return seed_of(p, (uint64_t)id * 0x100000001b3u);
}

static size_t random_size(rng *r, size_t i)
{
    if (i % 997 == 996)
        return 1 * MiB;
    if (rng_next(r) % 8 == 0)
        return rng_range(r, 1024, 64 * KiB);
    return rng_range(r, 16, 1024);
}

/* Checks a block (possibly of another thread), sometimes resizes it here,
 * and frees it. */
static void verify_and_free(shared *sh, const handoff *h)
{
    void *p = h->ptr;
    if (!pattern_intact(p, h->size, h->seed) || regal_usable_size(p) < h->size ||
        regal_arena_of(p) != sh->arena)
        atomic_fetch_add(&sh->bad, 1);
    if (h->size % 4 == 1) {
        size_t n = h->size % 8 == 1 ? h->size * 2 : h->size / 2;
        p = regal_realloc(sh->arena, p, n);
        if (!p) {
            atomic_fetch_add(&sh->failed, 1);
            regal_free(h->ptr);
            return;
        }
        if (!pattern_intact(p, n < h->size ? n : h->size, h->seed))
            atomic_fetch_add(&sh->bad, 1);
    }
    regal_free(p);
}

static int drain(shared *sh, int id)
{
    handoff h;
    int n = 0;
    while (queue_pop(&sh->inbox[id], &h)) {
        verify_and_free(sh, &h);
        atomic_fetch_add(&sh->cross_frees, 1);
        n++;
    }
    return n;
}

static void *shared_arena_worker(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    int next = (w->id + 1) % THREADS, prev = (w->id + THREADS - 1) % THREADS;
    rng r = rng_seeded(1000 + (uint64_t)w->id);
    enum { LOCAL = 64 };
    handoff local[LOCAL];
    size_t nlocal = 0;

    for (size_t i = 0; i < sh->iterations; i++) {
        size_t size = random_size(&r, i);
        void *p = regal_alloc(sh->arena, size);
        if (!p) {
            atomic_fetch_add(&sh->failed, 1);
            continue;
        }
        handoff h = {p, size, block_seed(p, w->id)};
        fill_pattern(p, size, h.seed);

        /* Half go to the next thread, which checks and frees them. */
        if (i % 2 != 0 || !queue_push(&sh->inbox[next], h)) {
            if (nlocal == LOCAL) {
                size_t k = rng_range(&r, 0, LOCAL - 1);
                verify_and_free(sh, &local[k]);
                local[k] = local[--nlocal];
            }
            local[nlocal++] = h;
        }
        if (i % 16 == 0)
            drain(sh, w->id);
    }
    for (size_t k = 0; k < nlocal; k++)
        verify_and_free(sh, &local[k]);
    atomic_store(&sh->done[w->id], 1);

    /* Take what the previous thread still sends, until it stops. */
    for (;;) {
        int prev_done = atomic_load(&sh->done[prev]);
        if (drain(sh, w->id) == 0 && prev_done)
            break;
        sched_yield();
    }
    drain(sh, w->id);
    return NULL;
}

static void run_shared(shared *sh, regal_arena *a, size_t iterations)
{
    memset(sh, 0, sizeof *sh);
    sh->arena = a;
    sh->iterations = iterations;
    for (int i = 0; i < THREADS; i++) {
        pthread_mutex_init(&sh->inbox[i].lock, NULL);
        atomic_init(&sh->done[i], 0);
    }
    atomic_init(&sh->bad, 0);
    atomic_init(&sh->failed, 0);
    atomic_init(&sh->cross_frees, 0);

    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i].sh = sh;
        w[i].id = i;
        cr_assert_eq(pthread_create(&w[i].thread, NULL, shared_arena_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_join(w[i].thread, NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(sh->inbox[i].count, 0, "inbox %d not drained", i);
        pthread_mutex_destroy(&sh->inbox[i].lock);
    }

    cr_assert_eq(atomic_load(&sh->failed), 0, "%zu allocations failed",
                 (size_t)atomic_load(&sh->failed));
    cr_assert_eq(atomic_load(&sh->bad), 0, "%zu blocks were overwritten",
                 (size_t)atomic_load(&sh->bad));
    cr_assert_gt(atomic_load(&sh->cross_frees), iterations, "too few cross-thread frees: %zu",
                 (size_t)atomic_load(&sh->cross_frees));
}

Test(threads, share_one_arena_with_cross_thread_frees)
{
    static shared sh;
    regal_arena_config cfg = {.name = "shared"};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);

    run_shared(&sh, a, 30000);

    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0, "in_use %zu after every block was freed", s.in_use);
    cr_assert_eq(s.blocks_in_use, 0, "blocks_in_use %zu after every block was freed",
                 s.blocks_in_use);
    cr_assert_eq(s.alloc_count, s.free_count);
    cr_assert_geq(s.alloc_count, (size_t)THREADS * 30000);
    cr_assert_eq(regal_arena_check(a), 0);

    /* The arena still serves after all those threads are gone. */
    void *p = regal_alloc(a, 100);
    cr_assert_not_null(p);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(threads, share_the_default_arena)
{
    static shared sh;
    regal_arena *d = regal_default_arena();
    cr_assert_not_null(d);
    regal_stats before = stats_of(d);

    run_shared(&sh, d, 20000);

    regal_stats after = stats_of(d);
    cr_assert_eq(after.in_use, before.in_use, "in_use %zu, %zu before the threads", after.in_use,
                 before.in_use);
    cr_assert_eq(after.blocks_in_use, before.blocks_in_use);
    cr_assert_eq(regal_arena_check(d), 0);
}

Test(threads, reuse_a_shared_arena_round_after_round)
{
    static shared sh;
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    size_t mapped_after_first = 0;

    /* Fresh threads each round: their per-thread state must be reclaimed
     * or reused, not piled up. */
    for (int round = 0; round < 20; round++) {
        run_shared(&sh, a, 2000);
        regal_stats s = stats_of(a);
        cr_assert_eq(s.in_use, 0, "round %d", round);
        cr_assert_eq(s.blocks_in_use, 0, "round %d", round);
        if (round == 2)
            mapped_after_first = s.mapped;
        else if (round > 2)
            cr_assert_leq(s.mapped, 2 * mapped_after_first + 16 * MiB,
                          "round %d: mapped %zu, %zu after round 2", round, s.mapped,
                          mapped_after_first);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- One single-thread arena per thread, freed by main ----------------------- */

#define OWN_BLOCKS 4000

typedef struct own {
    int id;
    pthread_t thread;
    regal_arena *arena;
    void *ptr[OWN_BLOCKS];
    size_t size[OWN_BLOCKS];
    size_t failed;
} own;

static void *own_arena_worker(void *arg)
{
    own *o = arg;
    rng r = rng_seeded(77 + (uint64_t)o->id);
    for (size_t i = 0; i < OWN_BLOCKS; i++) {
        o->size[i] = random_size(&r, i);
        o->ptr[i] = regal_alloc(o->arena, o->size[i]);
        if (!o->ptr[i]) {
            o->failed++;
            continue;
        }
        fill_pattern(o->ptr[i], o->size[i], block_seed(o->ptr[i], o->id));
        /* Free a few along the way, from the owning thread. */
        if (i % 5 == 4) {
            size_t k = rng_range(&r, 0, i);
            regal_free(o->ptr[k]);
            o->ptr[k] = NULL;
        }
    }
    return NULL;
}

Test(threads, each_use_a_single_thread_arena_freed_later_by_main)
{
    static own o[THREADS];
    for (int i = 0; i < THREADS; i++) {
        regal_arena_config cfg = {.name = "own", .flags = REGAL_ARENA_SINGLE_THREAD};
        o[i].id = i;
        o[i].arena = regal_arena_create(&cfg);
        cr_assert_not_null(o[i].arena);
    }
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&o[i].thread, NULL, own_arena_worker, &o[i]), 0);
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_join(o[i].thread, NULL), 0);

    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(o[i].failed, 0, "thread %d: %zu allocations failed", i, o[i].failed);
        size_t live = 0;
        for (size_t k = 0; k < OWN_BLOCKS; k++) {
            if (!o[i].ptr[k])
                continue;
            live++;
            cr_assert_eq(regal_arena_of(o[i].ptr[k]), o[i].arena);
            cr_assert(pattern_intact(o[i].ptr[k], o[i].size[k], block_seed(o[i].ptr[k], i)),
                      "thread %d, block %zu overwritten", i, k);
        }
        cr_assert_eq(stats_of(o[i].arena).blocks_in_use, live, "thread %d", i);
    }
    for (int i = 0; i < THREADS; i++) {
        for (size_t k = 0; k < OWN_BLOCKS; k++)
            regal_free(o[i].ptr[k]);
        regal_stats s = stats_of(o[i].arena);
        cr_assert_eq(s.in_use, 0, "thread %d: in_use %zu", i, s.in_use);
        cr_assert_eq(s.blocks_in_use, 0, "thread %d", i);
        cr_assert_eq(regal_arena_check(o[i].arena), 0);
        regal_arena_destroy(o[i].arena);
    }
}

/* ---- Blocks that outlive their thread ---------------------------------------- */

typedef struct leaver {
    regal_arena *arena;
    uint64_t seed;
    pthread_t thread;
    void *ptr[500];
    size_t size[500];
} leaver;

static void *leaver_worker(void *arg)
{
    leaver *l = arg;
    rng r = rng_seeded(l->seed);
    for (size_t i = 0; i < ARRAY_LEN(l->ptr); i++) {
        l->size[i] = random_size(&r, i);
        l->ptr[i] = regal_alloc(l->arena, l->size[i]);
        if (l->ptr[i])
            fill_pattern(l->ptr[i], l->size[i], l->seed + i);
    }
    return NULL;
}

Test(threads, blocks_outlive_the_thread_that_allocated_them)
{
    static leaver l[THREADS];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (int round = 0; round < 25; round++) {
        for (int i = 0; i < THREADS; i++) {
            l[i].arena = a;
            l[i].seed = (uint64_t)round * 100 + (uint64_t)i;
            cr_assert_eq(pthread_create(&l[i].thread, NULL, leaver_worker, &l[i]), 0);
        }
        for (int i = 0; i < THREADS; i++)
            cr_assert_eq(pthread_join(l[i].thread, NULL), 0);
        /* The threads are gone; their blocks are still theirs to free. */
        for (int i = 0; i < THREADS; i++) {
            for (size_t k = 0; k < ARRAY_LEN(l[i].ptr); k++) {
                cr_assert_not_null(l[i].ptr[k], "round %d, thread %d, block %zu", round, i, k);
                cr_assert_eq(regal_arena_of(l[i].ptr[k]), a);
                cr_assert(pattern_intact(l[i].ptr[k], l[i].size[k], l[i].seed + k),
                          "round %d, thread %d, block %zu overwritten", round, i, k);
                regal_free(l[i].ptr[k]);
            }
        }
        regal_stats s = stats_of(a);
        cr_assert_eq(s.in_use, 0, "round %d: in_use %zu", round, s.in_use);
        cr_assert_eq(s.blocks_in_use, 0, "round %d", round);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- Arenas created and destroyed on many threads at once -------------------- */

typedef struct churner {
    pthread_t thread;
    uint64_t seed;
    size_t failures;
} churner;

static void *churn_worker(void *arg)
{
    churner *c = arg;
    rng r = rng_seeded(c->seed);
    for (int cycle = 0; cycle < 200; cycle++) {
        regal_arena_config cfg = {.name = "churn",
                                  .flags = (cycle & 1) ? REGAL_ARENA_SINGLE_THREAD : 0};
        regal_arena *a = regal_arena_create(&cfg);
        if (!a) {
            c->failures++;
            continue;
        }
        void *big = regal_alloc(a, 2 * MiB);
        if (!big)
            c->failures++;
        for (int i = 0; i < 50; i++) {
            size_t n = random_size(&r, (size_t)i);
            void *p = regal_alloc(a, n);
            if (!p) {
                c->failures++;
                continue;
            }
            memset(p, 0x5f, n);
            if (regal_arena_of(p) != a)
                c->failures++;
            if (i % 3 == 0)
                regal_free(p);
        }
        if (cycle % 10 == 0)
            regal_arena_reset(a);
        if (regal_arena_check(a) != 0)
            c->failures++;
        regal_arena_destroy(a);
    }
    return NULL;
}

Test(threads, create_and_destroy_arenas_concurrently)
{
    churner c[THREADS];
    for (int i = 0; i < THREADS; i++) {
        c[i].seed = 500 + (uint64_t)i;
        c[i].failures = 0;
        cr_assert_eq(pthread_create(&c[i].thread, NULL, churn_worker, &c[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_join(c[i].thread, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(c[i].failures, 0, "thread %d: %zu failures", i, c[i].failures);
}

/* ---- The default arena, first touched by racing threads ---------------------- */

typedef struct racer {
    pthread_t thread;
    pthread_barrier_t *start;
    regal_arena *seen;
    void *block;
} racer;

static void *default_arena_racer(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(r->start);
    r->seen = regal_default_arena();
    r->block = regal_alloc(r->seen, 100);
    return NULL;
}

Test(threads, agree_on_the_default_arena_when_racing_to_create_it)
{
    pthread_barrier_t start;
    racer r[THREADS];
    cr_assert_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
    for (int i = 0; i < THREADS; i++) {
        r[i].start = &start;
        cr_assert_eq(pthread_create(&r[i].thread, NULL, default_arena_racer, &r[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_join(r[i].thread, NULL), 0);
    pthread_barrier_destroy(&start);

    regal_arena *d = regal_default_arena();
    cr_assert_not_null(d);
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(r[i].seen, d, "thread %d saw another default arena", i);
        cr_assert_not_null(r[i].block);
        cr_assert_eq(regal_arena_of(r[i].block), d);
        regal_free(r[i].block);
    }
    cr_assert_eq(regal_arena_check(d), 0);
}

/* ---- Double free across threads ---------------------------------------------- */

static void *free_it(void *arg)
{
    regal_free(arg);
    return NULL;
}

Test(threads, double_free_from_another_thread_is_reported)
{
    static const size_t sizes[] = {48, 100 * KiB, 2 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *keep = regal_alloc(a, 48);
    cr_assert_not_null(keep);
    fill_pattern(keep, 48, 12);

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = regal_alloc(a, sizes[i]);
        cr_assert_not_null(p);

        /* Freed by another thread, then again by this one... */
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, free_it, p), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
        error_log log;
        error_log_install(&log);
        regal_free(p);
        cr_assert_eq(log.count, 1, "size %zu: %u reports", sizes[i], log.count);
        cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE, "size %zu: kind %d", sizes[i], (int)log.kind);
        cr_assert_eq(log.ptr, p);

        /* ...and freed here, then again by another thread. */
        void *q = regal_alloc(a, sizes[i]);
        cr_assert_not_null(q);
        regal_free(q);
        error_log_clear(&log);
        cr_assert_eq(pthread_create(&t, NULL, free_it, q), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
        cr_assert_eq(log.count, 1, "size %zu: %u reports", sizes[i], log.count);
        cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE, "size %zu: kind %d", sizes[i], (int)log.kind);
        cr_assert_eq(log.ptr, q);
        error_log_remove();

        regal_stats s = stats_of(a);
        cr_assert_eq(s.blocks_in_use, 1, "size %zu", sizes[i]);
        cr_assert_eq(regal_arena_check(a), 0, "size %zu", sizes[i]);
    }
    cr_assert(pattern_intact(keep, 48, 12));
    regal_free(keep);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- Threads that outlive a reset or a destroy of the arena they used -------- */

#define ROUNDS    20
#define PER_ROUND 300

typedef struct lifecycle {
    pthread_barrier_t step;
    regal_arena *arena; /* set by main between rounds */
    atomic_size_t bad;
} lifecycle;

typedef struct stayer {
    pthread_t thread;
    lifecycle *lc;
    int id;
    void *ptr[PER_ROUND];
    size_t size[PER_ROUND];
} stayer;

static void *stayer_worker(void *arg)
{
    stayer *s = arg;
    lifecycle *lc = s->lc;
    rng r = rng_seeded(300 + (uint64_t)s->id);
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&lc->step); /* main has set up the arena */
        regal_arena *a = lc->arena;
        for (size_t i = 0; i < PER_ROUND; i++) {
            s->size[i] = random_size(&r, i);
            s->ptr[i] = regal_alloc(a, s->size[i]);
            if (!s->ptr[i] || regal_arena_of(s->ptr[i]) != a) {
                atomic_fetch_add(&lc->bad, 1);
                s->ptr[i] = NULL;
                continue;
            }
            fill_pattern(s->ptr[i], s->size[i], block_seed(s->ptr[i], s->id));
        }
        pthread_barrier_wait(&lc->step); /* every thread's blocks are live */
        for (size_t i = 0; i < PER_ROUND; i++) {
            if (!s->ptr[i])
                continue;
            if (!pattern_intact(s->ptr[i], s->size[i], block_seed(s->ptr[i], s->id)))
                atomic_fetch_add(&lc->bad, 1);
            if (i % 2 == 0)
                regal_free(s->ptr[i]);
        }
        pthread_barrier_wait(&lc->step); /* main resets or destroys */
    }
    return NULL;
}

/* Threads keep running (and keep whatever per-thread state regal gives
 * them) while main resets or destroys the arena between rounds; the blocks
 * of a round must never overlap those of another thread. */
static void run_lifecycle(int destroy)
{
    static lifecycle lc;
    static stayer s[THREADS];
    memset(&lc, 0, sizeof lc);
    atomic_init(&lc.bad, 0);
    cr_assert_eq(pthread_barrier_init(&lc.step, NULL, THREADS + 1), 0);

    lc.arena = regal_arena_create(NULL);
    cr_assert_not_null(lc.arena);
    for (int i = 0; i < THREADS; i++) {
        s[i].lc = &lc;
        s[i].id = i;
        cr_assert_eq(pthread_create(&s[i].thread, NULL, stayer_worker, &s[i]), 0);
    }
    for (int round = 0; round < ROUNDS; round++) {
        pthread_barrier_wait(&lc.step); /* threads start allocating */
        pthread_barrier_wait(&lc.step); /* threads check and free half */
        pthread_barrier_wait(&lc.step); /* threads are idle */
        cr_assert_eq(regal_arena_check(lc.arena), 0, "round %d", round);
        if (destroy) {
            regal_arena_destroy(lc.arena);
            lc.arena = regal_arena_create(NULL);
            cr_assert_not_null(lc.arena);
        } else {
            regal_arena_reset(lc.arena);
            regal_stats st = stats_of(lc.arena);
            cr_assert_eq(st.in_use, 0, "round %d", round);
            cr_assert_eq(st.blocks_in_use, 0, "round %d", round);
        }
    }
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_join(s[i].thread, NULL), 0);
    pthread_barrier_destroy(&lc.step);

    cr_assert_eq(atomic_load(&lc.bad), 0, "%zu bad blocks", (size_t)atomic_load(&lc.bad));
    cr_assert_eq(regal_arena_check(lc.arena), 0);
    regal_arena_destroy(lc.arena);
}

Test(threads, keep_working_across_resets_of_a_shared_arena)
{
    run_lifecycle(0);
}

Test(threads, keep_working_across_destroys_and_new_arenas)
{
    run_lifecycle(1);
}
