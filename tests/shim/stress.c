/*
 * Load on the malloc shim: threads and fork.  Run with
 * LD_PRELOAD=libregal-malloc.so; prints TAP; exit status 0 iff all ok.
 *
 *  1. regal is the process's malloc (dlsym(RTLD_DEFAULT) finds the default
 *     arena and it owns our blocks): without it the rest proves nothing.
 *  2. 10,000 short threads each malloc and free a few blocks (and free one
 *     block of the main thread; the main thread frees one of theirs after
 *     the join): RSS from /proc/self/statm grows by less than 64 MiB, so a
 *     thread's state is reclaimed when it exits.
 *  3. Producer/consumer: 2 producer and 2 consumer threads pass 200,000
 *     blocks of 1..64 KiB through a queue; the consumer checks every byte and
 *     frees the block (a cross-thread free).
 *  4. fork() 50 times while 3 threads hammer malloc/free/realloc: each child
 *     mallocs, callocs, frees (and starts a thread) and exits 0; the parent
 *     waits at most 20 s per child.  A hang is reported, not waited for.
 *     Then 200 times while the threads churn 8-64 KiB blocks only, which
 *     their thread caches take and shed all the time: a fork just after a
 *     shed gave the child a cache listing blocks the heap had already, and
 *     the child freed them twice (a child in 30 to 70 died).
 *  5. malloc/free from pthread-key destructors, over every destructor round
 *     (after regal's own per-thread teardown), and from an atexit handler
 *     (a failure there turns the exit status non-zero).
 *
 * Fixed seeds; the only timing is the fork watchdog.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KiB          ((size_t)1 << 10)
#define MiB          ((size_t)1 << 20)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- TAP ------------------------------------------------------------------ */

static int tap_count, tap_failed;

static void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

static void tap(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap_count++;
    tap_failed += !ok;
    printf("%s %d - ", ok ? "ok" : "not ok", tap_count);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

/* ---- Helpers ----------------------------------------------------------------- */

/* xorshift64*: per-thread state, fixed seeds. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* The content of a block: word i of the block made from (seed, i); cheap
 * enough to write and check every byte of gigabytes. */
static uint64_t word_of(uint64_t seed, size_t i)
{
    uint64_t x = (seed + i) * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

static void fill_block(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t w = word_of(seed, i);
        memcpy(b + 8 * i, &w, 8);
    }
    uint64_t last = word_of(seed, words);
    memcpy(b + 8 * words, &last, n % 8);
}

static bool block_intact(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i++) {
        uint64_t w = word_of(seed, i);
        if (memcmp(b + 8 * i, &w, 8) != 0)
            return false;
    }
    uint64_t last = word_of(seed, words);
    return memcmp(b + 8 * words, &last, n % 8) == 0;
}

/* For big blocks, filling every byte dominates the run time: the first and
 * last 4 KiB only (which still touches the block's first and last pages). */
static void mark_block(void *p, size_t n, uint64_t seed)
{
    if (n <= 64 * KiB) {
        fill_block(p, n, seed);
        return;
    }
    fill_block(p, 4 * KiB, seed);
    fill_block((char *)p + n - 4 * KiB, 4 * KiB, ~seed);
}

static bool block_marked(const void *p, size_t n, uint64_t seed)
{
    if (n <= 64 * KiB)
        return block_intact(p, n, seed);
    return block_intact(p, 4 * KiB, seed) &&
           block_intact((const char *)p + n - 4 * KiB, 4 * KiB, ~seed);
}

static bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- 1. Are we under regal? ------------------------------------------------- */

typedef void *(*default_arena_fn)(void);
typedef void *(*arena_of_fn)(const void *);
typedef int (*arena_check_fn)(void *);

static default_arena_fn regal_default_arena_p;
static arena_of_fn regal_arena_of_p;
static arena_check_fn regal_arena_check_p;

static void *lookup(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

static bool runs_under_regal(void)
{
    void *s;
    s = lookup("regal_default_arena");
    memcpy(&regal_default_arena_p, &s, sizeof s);
    s = lookup("regal_arena_of");
    memcpy(&regal_arena_of_p, &s, sizeof s);
    s = lookup("regal_arena_check");
    memcpy(&regal_arena_check_p, &s, sizeof s);
    if (!regal_default_arena_p || !regal_arena_of_p) {
        diag("regal_default_arena/regal_arena_of not found: malloc is not regal's "
             "(is LD_PRELOAD set to libregal-malloc.so?)");
        return false;
    }
    void *p = malloc(100);
    bool ok = p && regal_arena_of_p(p) == regal_default_arena_p();
    if (!ok)
        diag("malloc(100) = %p is not a block of the default arena", p);
    free(p);
    return ok;
}

/* ---- 2. Many short threads ---------------------------------------------------- */

enum { SHORT_THREADS = 10000, SHORT_BATCH = 8 };

typedef struct short_job {
    void *from_main; /* a block of the main thread, freed by this thread */
    size_t main_size;
    void *to_main; /* a block of this thread, freed by the main thread */
    uint64_t seed;
    int errors;
} short_job;

static void *short_thread(void *arg)
{
    short_job *job = arg;
    static const size_t sizes[] = {1, 24, 100, 512, 4000, 30000, 200000, 3 * MiB};
    void *p[ARRAY_LEN(sizes)];
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        p[i] = malloc(sizes[i]);
        if (!p[i] || !aligned16(p[i])) {
            job->errors++;
            continue;
        }
        mark_block(p[i], sizes[i], job->seed + i);
    }
    void *z = calloc(10, 100);
    if (!z)
        job->errors++;
    else
        for (int i = 0; i < 1000; i++)
            job->errors += ((unsigned char *)z)[i] != 0;
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        if (p[i] && !block_marked(p[i], sizes[i], job->seed + i))
            job->errors++;
        free(p[i]);
    }
    free(z);
    if (job->from_main && !block_intact(job->from_main, job->main_size, job->seed))
        job->errors++;
    free(job->from_main);
    job->to_main = malloc(777);
    if (job->to_main)
        fill_block(job->to_main, 777, ~job->seed);
    return NULL;
}

/* Runs count threads, SHORT_BATCH at a time; returns the errors seen. */
static int run_short_threads(int count, uint64_t seed0)
{
    int errors = 0;
    for (int done = 0; done < count; done += SHORT_BATCH) {
        short_job job[SHORT_BATCH];
        pthread_t tid[SHORT_BATCH];
        bool started[SHORT_BATCH];
        int n = count - done < SHORT_BATCH ? count - done : SHORT_BATCH;
        for (int i = 0; i < n; i++) {
            job[i] = (short_job){.seed = seed0 + (uint64_t)(done + i) * 64};
            job[i].main_size = 64 + (size_t)(done + i) % 2000;
            job[i].from_main = malloc(job[i].main_size);
            if (job[i].from_main)
                fill_block(job[i].from_main, job[i].main_size, job[i].seed);
            started[i] = pthread_create(&tid[i], NULL, short_thread, &job[i]) == 0;
            if (!started[i]) {
                errors++;
                free(job[i].from_main);
            }
        }
        for (int i = 0; i < n; i++) {
            if (!started[i])
                continue;
            pthread_join(tid[i], NULL);
            errors += job[i].errors;
            if (!job[i].to_main || !block_intact(job[i].to_main, 777, ~job[i].seed))
                errors++;
            free(job[i].to_main); /* the thread is gone: a free into its former state */
        }
    }
    return errors;
}

static void short_threads_test(void)
{
    run_short_threads(64, 1); /* warm up: stack cache, first-use state */
    size_t before = rss_bytes();
    int errors = run_short_threads(SHORT_THREADS, 1000);
    size_t after = rss_bytes();
    double grew = ((double)after - (double)before) / (double)MiB;
    diag("RSS before %.1f MiB, after %d threads %.1f MiB (%+.1f MiB)", (double)before / (double)MiB,
         SHORT_THREADS, (double)after / (double)MiB, grew);
    tap(errors == 0,
        "%d short threads: blocks aligned, intact, freeable across threads (%d errors)",
        SHORT_THREADS, errors);
    tap(before > 0 && after < before + 64 * MiB,
        "%d short threads: RSS grew by less than 64 MiB (%+.1f MiB)", SHORT_THREADS, grew);
}

/* ---- 3. Producer/consumer ------------------------------------------------------ */

enum { PC_BLOCKS = 200000, PC_PRODUCERS = 2, PC_CONSUMERS = 2, QUEUE_CAP = 1024 };

typedef struct parcel {
    void *ptr;
    size_t size;
    uint64_t seed;
} parcel;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    parcel item[QUEUE_CAP];
    size_t head, count;
} queue = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {{0}}, 0, 0};

static atomic_long pc_bad_content, pc_bad_alloc, pc_consumed;

static void queue_put(parcel p)
{
    pthread_mutex_lock(&queue.lock);
    while (queue.count == QUEUE_CAP)
        pthread_cond_wait(&queue.not_full, &queue.lock);
    queue.item[(queue.head + queue.count) % QUEUE_CAP] = p;
    queue.count++;
    pthread_cond_signal(&queue.not_empty);
    pthread_mutex_unlock(&queue.lock);
}

static parcel queue_take(void)
{
    pthread_mutex_lock(&queue.lock);
    while (queue.count == 0)
        pthread_cond_wait(&queue.not_empty, &queue.lock);
    parcel p = queue.item[queue.head];
    queue.head = (queue.head + 1) % QUEUE_CAP;
    queue.count--;
    pthread_cond_signal(&queue.not_full);
    pthread_mutex_unlock(&queue.lock);
    return p;
}

static void *producer(void *arg)
{
    uint64_t rng = 0x5eed0000u + (uint64_t)(uintptr_t)arg;
    for (int i = 0; i < PC_BLOCKS / PC_PRODUCERS; i++) {
        uint64_t r = rng_next(&rng);
        parcel p = {NULL, 1 + (size_t)(r % (64 * KiB)), r};
        p.ptr = malloc(p.size);
        if (!p.ptr || !aligned16(p.ptr)) {
            atomic_fetch_add(&pc_bad_alloc, 1);
            free(p.ptr);
            continue;
        }
        fill_block(p.ptr, p.size, p.seed);
        queue_put(p);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    for (;;) {
        parcel p = queue_take();
        if (!p.ptr)
            return NULL; /* the end marker */
        if (!block_intact(p.ptr, p.size, p.seed))
            atomic_fetch_add(&pc_bad_content, 1);
        free(p.ptr);
        atomic_fetch_add(&pc_consumed, 1);
    }
}

static void producer_consumer_test(void)
{
    pthread_t prod[PC_PRODUCERS], cons[PC_CONSUMERS];
    int started = 0;
    for (int i = 0; i < PC_CONSUMERS; i++)
        started += pthread_create(&cons[i], NULL, consumer, NULL) == 0;
    for (int i = 0; i < PC_PRODUCERS; i++)
        started += pthread_create(&prod[i], NULL, producer, (void *)(uintptr_t)i) == 0;
    if (started != PC_PRODUCERS + PC_CONSUMERS) {
        tap(false, "producer/consumer: could not start the threads");
        exit(1); /* cannot unwind a half-started pipeline safely */
    }
    for (int i = 0; i < PC_PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    for (int i = 0; i < PC_CONSUMERS; i++)
        queue_put((parcel){NULL, 0, 0});
    for (int i = 0; i < PC_CONSUMERS; i++)
        pthread_join(cons[i], NULL);
    long consumed = atomic_load(&pc_consumed), bad = atomic_load(&pc_bad_content),
         failed = atomic_load(&pc_bad_alloc);
    if (bad || failed || consumed != PC_BLOCKS)
        diag("consumed %ld of %d blocks; %ld failed or misaligned allocations; %ld with wrong "
             "content",
             consumed, PC_BLOCKS, failed, bad);
    tap(consumed == PC_BLOCKS && bad == 0 && failed == 0,
        "producer/consumer: %d blocks of 1..64 KiB passed between 4 threads, content verified",
        PC_BLOCKS);
}

/* ---- 4. fork while other threads hammer malloc ----------------------------------- */

enum { FORKS = 50, SHED_FORKS = 200, HAMMERS = 3, HAMMER_SLOTS = 256, FORK_TIMEOUT_S = 20 };

static atomic_bool hammer_stop;
static atomic_long hammer_errors, hammer_ops;

static size_t hammer_size(uint64_t r)
{
    switch (r % 20) {
    case 0:
        return 256 * KiB + (r >> 8) % (4 * MiB); /* large */
    case 1:
    case 2:
    case 3:
        return KiB + (r >> 8) % (64 * KiB); /* medium */
    default:
        return 1 + (r >> 8) % 512; /* small */
    }
}

static void *hammer(void *arg)
{
    uint64_t rng = 0xabcdef00u + (uint64_t)(uintptr_t)arg;
    struct {
        unsigned char *p;
        size_t n;
        unsigned char tag;
    } slot[HAMMER_SLOTS] = {{0}};
    long ops = 0;
    while (!atomic_load_explicit(&hammer_stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        size_t i = r % HAMMER_SLOTS;
        if (slot[i].p) {
            if (slot[i].p[0] != slot[i].tag || slot[i].p[slot[i].n - 1] != slot[i].tag)
                atomic_fetch_add(&hammer_errors, 1);
            if ((r >> 40) % 4 == 0) { /* resize instead of free */
                size_t n = hammer_size(r >> 13);
                unsigned char *q = realloc(slot[i].p, n);
                if (!q) {
                    atomic_fetch_add(&hammer_errors, 1);
                    continue;
                }
                if (q[0] != slot[i].tag)
                    atomic_fetch_add(&hammer_errors, 1);
                slot[i].p = q;
                slot[i].n = n;
                q[0] = q[n - 1] = slot[i].tag;
            } else {
                free(slot[i].p);
                slot[i].p = NULL;
            }
        } else {
            size_t n = hammer_size(r >> 7);
            unsigned char *p = NULL;
            switch ((r >> 50) % 4) {
            case 0:
                p = calloc(1, n);
                break;
            case 1: {
                void *al = NULL;
                if (posix_memalign(&al, (size_t)64 << ((r >> 52) % 6), n) == 0)
                    p = al;
                break;
            }
            default:
                p = malloc(n);
                break;
            }
            if (!p) {
                atomic_fetch_add(&hammer_errors, 1);
                continue;
            }
            slot[i].p = p;
            slot[i].n = n;
            slot[i].tag = (unsigned char)(r >> 32);
            p[0] = p[n - 1] = slot[i].tag;
        }
        ops++;
    }
    for (size_t i = 0; i < HAMMER_SLOTS; i++)
        free(slot[i].p);
    atomic_fetch_add(&hammer_ops, ops);
    return NULL;
}

/* Frees and allocates 8-64 KiB blocks, the range of the thread caches
 * (src/mcache.h), over few slots and with nothing else in the loop, so
 * that the cache sheds blocks to the heap all the time. */
static void *shedder(void *arg)
{
    uint64_t rng = 0x5eed0000u + (uint64_t)(uintptr_t)arg;
    void *slot[64] = {0};
    long ops = 0;
    while (!atomic_load_explicit(&hammer_stop, memory_order_relaxed)) {
        uint64_t r = rng_next(&rng);
        size_t i = r % ARRAY_LEN(slot);
        free(slot[i]);
        slot[i] = malloc(8 * KiB + (r >> 20) % (56 * KiB));
        if (!slot[i])
            atomic_fetch_add(&hammer_errors, 1);
        ops++;
    }
    for (size_t i = 0; i < ARRAY_LEN(slot); i++)
        free(slot[i]);
    atomic_fetch_add(&hammer_ops, ops);
    return NULL;
}

static void *child_thread(void *arg)
{
    (void)arg;
    void *p = malloc(1000);
    void *ret = p ? NULL : (void *)1;
    if (p)
        memset(p, 1, 1000);
    free(p);
    return ret;
}

/* The child of a fork: the allocator must work, in every size range. */
static int child_main(void)
{
    for (int round = 0; round < 20; round++) {
        static const size_t sizes[] = {1, 48, 500, 3000, 40000, 300000, 5 * MiB};
        void *p[ARRAY_LEN(sizes)];
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            p[i] = malloc(sizes[i]);
            if (!p[i])
                return 2;
            memset(p[i], (int)i, sizes[i]);
        }
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            unsigned char *z = calloc(sizes[i], 1);
            if (!z)
                return 3;
            for (size_t k = 0; k < sizes[i]; k += 61)
                if (z[k])
                    return 4;
            free(z);
            free(p[i]);
        }
        void *q = realloc(NULL, 100);
        q = q ? realloc(q, 100000) : NULL;
        if (!q)
            return 5;
        free(q);
    }
    /* Medium blocks, live together, then freed in a mixed order: a heap
     * the fork left inconsistent hands out overlapping blocks or trips
     * its assertions here. */
    for (int round = 0; round < 4; round++) {
        unsigned char *m[64];
        for (size_t i = 0; i < ARRAY_LEN(m); i++) {
            m[i] = malloc(8 * KiB + i * 900);
            if (!m[i])
                return 2;
            memset(m[i], (int)i, 8 * KiB + i * 900);
        }
        for (size_t i = 0; i < ARRAY_LEN(m); i++)
            if (m[i][0] != i || m[i][8 * KiB + i * 900 - 1] != i)
                return 7;
        for (size_t i = 0; i < ARRAY_LEN(m); i += 2)
            free(m[i]);
        for (size_t i = 1; i < ARRAY_LEN(m); i += 2)
            free(m[i]);
    }
    pthread_t t;
    void *ret = (void *)1;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, &ret) != 0 || ret)
        return 6;
    return 0;
}

/* forks forks while HAMMERS threads run fn. */
static void fork_test(const char *what, int forks, void *(*fn)(void *))
{
    atomic_store(&hammer_stop, false);
    atomic_store(&hammer_errors, 0);
    atomic_store(&hammer_ops, 0);
    pthread_t tid[HAMMERS];
    int hammers = 0;
    for (int i = 0; i < HAMMERS; i++)
        if (pthread_create(&tid[hammers], NULL, fn, (void *)(uintptr_t)i) == 0)
            hammers++;
    if (hammers != HAMMERS)
        diag("only %d of %d hammer threads started", hammers, HAMMERS);
    sleep_ns(50 * 1000000L); /* let them get going */

    int ok_children = 0, hung = 0, failed = 0;
    for (int round = 0; round < forks && !hung; round++) {
        sleep_ns((1 + round % 5) * 1000000L); /* vary where the others are */
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            diag("fork %d: fork failed: %s", round, strerror(errno));
            failed++;
            continue;
        }
        if (pid == 0)
            exit(child_main()); /* runs atexit handlers too */
        int status = 0;
        pid_t w = 0;
        for (long waited = 0; waited < FORK_TIMEOUT_S * 1000L; waited++) {
            w = waitpid(pid, &status, WNOHANG);
            if (w != 0)
                break;
            sleep_ns(1000000L);
        }
        if (w == 0) {
            diag("fork %d: the child hung for %d s (allocator lock held across fork?); killed",
                 round, FORK_TIMEOUT_S);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            hung++;
        } else if (w < 0) {
            diag("fork %d: waitpid failed: %s", round, strerror(errno));
            failed++;
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (WIFSIGNALED(status))
                diag("fork %d: the child died of signal %d", round, WTERMSIG(status));
            else
                diag("fork %d: the child exited %d (2 malloc, 3 calloc failed, 4 calloc not zero, "
                     "5 realloc, 6 thread, 7 medium blocks overlap)",
                     round, WEXITSTATUS(status));
            failed++;
        } else {
            ok_children++;
        }
    }
    atomic_store(&hammer_stop, true);
    for (int i = 0; i < hammers; i++)
        pthread_join(tid[i], NULL);
    if (hung)
        diag("stopped after the first hang: %d of %d forks done", ok_children + failed + hung,
             forks);
    tap(ok_children == forks,
        "fork x%d while %d threads %s: every child allocates and exits 0 in time "
        "(%d ok, %d failed, %d hung)",
        forks, HAMMERS, what, ok_children, failed, hung);
    long errors = atomic_load(&hammer_errors);
    diag("%s: %ld operations", what, atomic_load(&hammer_ops));
    tap(hammers == HAMMERS && errors == 0,
        "%s: allocations never failed and blocks stayed intact across forks (%ld errors)", what,
        errors);
}

/* ---- 5. Allocation after the thread's allocator state is gone ------------------- */

enum { LATE_THREADS = 200 };

static pthread_key_t late_key;
static atomic_long late_errors, late_rounds;

typedef struct late {
    int round;
    void *keep; /* a block allocated in one round, checked and freed in the next */
} late;

static void late_destructor(void *value)
{
    late *l = value;
    l->round++;
    atomic_fetch_add(&late_rounds, 1);
    if (l->keep && !block_intact(l->keep, 5000, (uint64_t)l->round))
        atomic_fetch_add(&late_errors, 1);
    free(l->keep);
    l->keep = NULL;
    static const size_t sizes[] = {16, 300, 5000, 100000, 2 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        unsigned char *p = malloc(sizes[i]);
        if (!p) {
            atomic_fetch_add(&late_errors, 1);
            continue;
        }
        memset(p, 0x5c, sizes[i]);
        p = realloc(p, sizes[i] * 2);
        if (!p || p[sizes[i] - 1] != 0x5c)
            atomic_fetch_add(&late_errors, 1);
        free(p);
    }
    if (l->round < PTHREAD_DESTRUCTOR_ITERATIONS) {
        l->keep = malloc(5000);
        if (l->keep)
            fill_block(l->keep, 5000, (uint64_t)l->round + 1);
        if (pthread_setspecific(late_key, l) != 0) { /* run again next round */
            atomic_fetch_add(&late_errors, 1);
            free(l->keep);
            free(l);
        }
    } else {
        free(l);
    }
}

static void *late_thread(void *arg)
{
    (void)arg;
    void *warm = malloc(100); /* the thread's allocator state exists */
    free(warm);
    late *l = calloc(1, sizeof *l);
    if (!l || pthread_setspecific(late_key, l) != 0) {
        atomic_fetch_add(&late_errors, 1);
        free(l);
    }
    return NULL;
}

static void late_atexit(void)
{
    void *p = malloc(1000), *q = calloc(100, 100);
    if (!p || !q)
        _exit(3);
    memset(p, 1, 1000);
    p = realloc(p, 300000);
    if (!p)
        _exit(3);
    free(p);
    free(q);
}

static void late_allocation_test(void)
{
    if (pthread_key_create(&late_key, late_destructor) != 0) {
        tap(false, "pthread_key_create failed");
        return;
    }
    int errors = 0;
    for (int i = 0; i < LATE_THREADS; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, late_thread, NULL) != 0 || pthread_join(t, NULL) != 0)
            errors++;
    }
    long rounds = atomic_load(&late_rounds), bad = atomic_load(&late_errors);
    if (rounds != (long)LATE_THREADS * PTHREAD_DESTRUCTOR_ITERATIONS)
        diag("destructor rounds: %ld, expected %ld", rounds,
             (long)LATE_THREADS * PTHREAD_DESTRUCTOR_ITERATIONS);
    tap(errors == 0 && bad == 0,
        "malloc/realloc/free in pthread-key destructors, every round, %d "
        "threads (%ld errors)",
        LATE_THREADS, bad + errors);
    atexit(late_atexit);
}

int main(void)
{
    printf("1..10\n");
    fflush(stdout);
    bool regal = runs_under_regal();
    tap(regal, "runs under regal (the default arena owns this program's blocks)");

    double t0 = now_s();
    short_threads_test();
    double t1 = now_s();
    diag("short threads took %.1f s", t1 - t0);
    producer_consumer_test();
    double t2 = now_s();
    diag("producer/consumer took %.1f s", t2 - t1);
    fork_test("hammer malloc/free", FORKS, hammer);
    double t3 = now_s();
    diag("fork test took %.1f s", t3 - t2);
    fork_test("churn and shed 8-64 KiB blocks", SHED_FORKS, shedder);
    diag("fork test with medium blocks took %.1f s", now_s() - t3);
    late_allocation_test();

    bool consistent =
        regal && regal_arena_check_p && regal_arena_check_p(regal_default_arena_p()) == 0;
    tap(consistent, "default arena consistent after the load (regal_arena_check)");
    return tap_failed ? 1 : 0;
}
