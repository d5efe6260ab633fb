/*
 * Per-thread state of shared arenas (src/theap.h): memory freed by other
 * threads comes back to its owner, spans of exited threads are adopted,
 * thread churn stays flat, reset and destroy drop other threads' state.
 * Threads are sequenced with barriers and joins; no sleeps, no timing.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "regal.h"

#define BLOCKS 20000
#define SIZE   48

static void **alloc_all(regal_arena *a, size_t n, size_t size)
{
    void **v = malloc(n * sizeof *v);
    cr_assert_not_null(v);
    for (size_t i = 0; i < n; i++) {
        v[i] = regal_alloc(a, size);
        cr_assert_not_null(v[i]);
        memset(v[i], (int)(i & 0xff), size);
    }
    return v;
}

static void free_all(void **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        regal_free(v[i]);
}

/* ---- run a function on a new thread and wait for it ------------------------- */

typedef struct job {
    regal_arena *a;
    void **blocks;
    size_t n;
} job;

static void on_thread(void *(*fn)(void *), job *j)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fn, j), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
}

static void *free_job(void *arg)
{
    job *j = arg;
    free_all(j->blocks, j->n);
    return NULL;
}

static void *alloc_job(void *arg)
{
    job *j = arg;
    j->blocks = alloc_all(j->a, j->n, SIZE);
    return NULL;
}

Test(theap, blocks_freed_by_another_thread_are_reused_by_their_owner)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void **v = alloc_all(a, BLOCKS, SIZE);
    size_t mapped = stats_of(a).mapped;

    for (int round = 0; round < 5; round++) {
        job j = {.a = a, .blocks = v, .n = BLOCKS};
        on_thread(free_job, &j); /* every free is a remote one */
        regal_stats s = stats_of(a);
        cr_assert_eq(s.blocks_in_use, 0, "round %d: %zu blocks in use", round, s.blocks_in_use);
        cr_assert_eq(s.in_use, 0);
        free(v);
        v = alloc_all(a, BLOCKS, SIZE);
        cr_assert_eq(stats_of(a).mapped, mapped, "round %d: the arena grew instead of reusing",
                     round);
    }
    free_all(v, BLOCKS);
    free(v);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(theap, spans_of_an_exited_thread_are_adopted)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    size_t mapped = 0;
    for (int round = 0; round < 10; round++) {
        job j = {.a = a, .n = BLOCKS};
        on_thread(alloc_job, &j); /* allocates, then exits */
        for (size_t i = 0; i < BLOCKS; i++)
            cr_assert_eq(first_byte_not(j.blocks[i], SIZE, (unsigned char)(i & 0xff)), SIZE);
        free_all(j.blocks, BLOCKS); /* frees into the spans it left behind */
        free(j.blocks);
        regal_stats s = stats_of(a);
        cr_assert_eq(s.blocks_in_use, 0);
        if (round == 0)
            mapped = s.mapped;
        cr_assert_eq(s.mapped, mapped, "round %d: mapped %zu, %zu after the first", round, s.mapped,
                     mapped);
    }
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- thread churn -------------------------------------------------------------- */

static void *churn_job(void *arg)
{
    job *j = arg;
    void *keep[8];
    for (int i = 0; i < 8; i++)
        keep[i] = regal_alloc(j->a, 16 + 40 * (size_t)i);
    for (int i = 0; i < 8; i += 2)
        regal_free(keep[i]);
    j->blocks[0] = keep[1]; /* outlives the thread: freed by the next one */
    for (int i = 3; i < 8; i += 2)
        regal_free(keep[i]);
    return NULL;
}

Test(theap, a_hundred_thousand_threads_stay_flat, .timeout = 120)
{
    regal_arena *d = regal_default_arena();
    void *left = NULL;
    job j = {.a = d, .blocks = &left};
    size_t mapped = 0, rss = 0;
    for (int i = 0; i < 100000; i++) {
        void *prev = left;
        on_thread(churn_job, &j);
        regal_free(prev); /* NULL the first time */
        if (i == 1000) {
            mapped = stats_of(d).mapped;
            rss = process_rss();
        }
    }
    regal_free(left);
    size_t mapped_end = stats_of(d).mapped, rss_end = process_rss();
    cr_assert_leq(mapped_end, mapped + 256 * KiB, "mapped %zu after 100000 threads, %zu after 1000",
                  mapped_end, mapped);
#if !TEST_ASAN /* ASan keeps per-thread state of its own */
    cr_assert_leq(rss_end, rss + 4 * MiB, "RSS %zu after 100000 threads, %zu after 1000", rss_end,
                  rss);
#else
    (void)rss;
    (void)rss_end;
#endif
    cr_assert_eq(regal_arena_check(d), 0);
}

/* ---- reset and destroy while other threads hold state ------------------------- */

typedef struct parked {
    regal_arena *volatile a;
    pthread_barrier_t *bar;
    size_t served;
} parked;

static void *parked_job(void *arg)
{
    parked *p = arg;
    for (int phase = 0; phase < 3; phase++) {
        void **v = alloc_all(p->a, 500, SIZE); /* leaves state for the arena */
        free_all(v, 250);
        free(v);
        p->served += 500;
        pthread_barrier_wait(p->bar); /* main resets or replaces the arena now */
        pthread_barrier_wait(p->bar);
    }
    return NULL;
}

static void with_parked_threads(int destroy)
{
    enum { N = 3 };
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N + 1);
    parked p[N];
    pthread_t t[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (int i = 0; i < N; i++) {
        p[i] = (parked){.a = a, .bar = &bar};
        cr_assert_eq(pthread_create(&t[i], NULL, parked_job, &p[i]), 0);
    }
    for (int phase = 0; phase < 3; phase++) {
        pthread_barrier_wait(&bar); /* every thread holds state for a */
        if (destroy) {
            regal_arena_destroy(a);
            a = regal_arena_create(NULL); /* often at the same address */
            cr_assert_not_null(a);
            for (int i = 0; i < N; i++)
                p[i].a = a;
        } else {
            regal_arena_reset(a);
        }
        regal_stats s = stats_of(a);
        cr_assert_eq(s.blocks_in_use, 0, "phase %d: %zu blocks in use", phase, s.blocks_in_use);
        cr_assert_eq(regal_arena_check(a), 0);
        pthread_barrier_wait(&bar);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(pthread_join(t[i], NULL), 0);
        cr_assert_eq(p[i].served, 1500u);
    }
    regal_stats s = stats_of(a);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
    pthread_barrier_destroy(&bar);
}

Test(theap, reset_drops_the_state_other_threads_hold)
{
    with_parked_threads(0);
}

Test(theap, destroy_drops_the_state_other_threads_hold)
{
    with_parked_threads(1);
}

/* ---- double free by two other threads ------------------------------------------ */

static void *free_one(void *arg)
{
    regal_free(arg);
    return NULL;
}

Test(theap, double_free_by_two_other_threads_is_reported_when_collected)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *p = regal_alloc(a, SIZE), *q = regal_alloc(a, SIZE);
    cr_assert_not_null(p);
    cr_assert_not_null(q);
    error_log log;
    error_log_install(&log);
    pthread_t t;
    for (int i = 0; i < 2; i++) { /* both see p live: its owner has not collected yet */
        cr_assert_eq(pthread_create(&t, NULL, free_one, p), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
    }
    regal_free(q); /* the owner collects p twice */
    error_log_remove();
    cr_assert_eq(log.count, 1, "%u reports", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE);
    cr_assert_eq(log.ptr, p);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- a write after a free by another thread ---------------------------------- */

/* Another thread frees b[0..3] (its xfree list: b[3] first); the program
 * then overwrites b[1]'s link.  The owner's collection takes b[3], b[2]
 * and b[1] (a sound slot with a bad link), reports the rest of the list and
 * drops it: b[0] is never handed out again, and no address the bad link
 * names is. */
Test(theap, a_write_after_a_remote_free_is_reported_when_collected)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *b[4], *q = regal_alloc(a, SIZE);
    cr_assert_not_null(q);
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(b[i] = regal_alloc(a, SIZE));
    job j = {a, b, 4};
    on_thread(free_job, &j);
    memset(b[1], 0x41, sizeof(void *)); /* a write after free */
    error_log log;
    error_log_install(&log);
    regal_free(q); /* its span has remote frees waiting: collected first */
    cr_assert_eq(log.count, 1, "%u reports", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_CORRUPTION);
    cr_assert_eq(regal_arena_check(a), 0);
    void *again[64];
    for (int i = 0; i < 64; i++) {
        cr_assert_not_null(again[i] = regal_alloc(a, SIZE));
        cr_assert(again[i] != b[0], "the dropped slot was handed out");
        memset(again[i], 0, SIZE);
    }
    cr_assert_eq(regal_arena_check(a), 0);
    error_log_remove();
    cr_assert_eq(log.count, 1, "%u reports", log.count); /* the free list is sound */
    regal_arena_destroy(a);
}

/* ---- fork with another thread's state --------------------------------------- */

typedef struct holder {
    regal_arena *a;
    void **blocks;
    pthread_barrier_t *bar;
} holder;

static void *hold_job(void *arg)
{
    holder *h = arg;
    h->blocks = alloc_all(h->a, BLOCKS, SIZE);
    pthread_barrier_wait(h->bar); /* the blocks are made */
    pthread_barrier_wait(h->bar); /* main has forked */
    free_all(h->blocks, BLOCKS);
    free(h->blocks);
    return NULL;
}

/* The child has only the forking thread: the spans the other thread owned
 * go to the arena, so its blocks can be freed there and the memory reused. */
Test(theap, a_fork_child_takes_over_the_spans_of_threads_it_does_not_have)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    holder h = {.a = a, .bar = &bar};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, hold_job, &h), 0);
    pthread_barrier_wait(&bar);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int bad = 0;
        for (size_t i = 0; i < BLOCKS; i++)
            bad |= first_byte_not(h.blocks[i], SIZE, (unsigned char)(i & 0xff)) != SIZE;
        size_t mapped = stats_of(a).mapped;
        free_all(h.blocks, BLOCKS); /* another thread's spans, in the child */
        void **again = alloc_all(a, BLOCKS, SIZE);
        bad |= stats_of(a).mapped != mapped; /* reused, not grown */
        bad |= stats_of(a).blocks_in_use != BLOCKS;
        free_all(again, BLOCKS);
        bad |= regal_arena_check(a) != 0;
        _exit(bad ? 1 : 0);
    }
    pthread_barrier_wait(&bar);
    cr_assert_eq(pthread_join(t, NULL), 0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
    pthread_barrier_destroy(&bar);
}
