/*
 * xmalloc: producer/consumer across threads, after Lever and Boreham's
 * xmalloc-test ("malloc() performance in a multithreaded Linux
 * environment", USENIX 2000), as in the mimalloc-bench suite.
 *
 *   xmalloc [--pairs N] [--blocks N] [--batch N] [--min BYTES] [--max BYTES]
 *           [--seed N] [--scale X]
 *
 * PAIRS (default 2) producer threads each allocate BLOCKS blocks (default
 * 6M) of log-uniform sizes in [MIN, MAX] (default [8, 512]), fill them and
 * hand them, BATCH at a time (default 256), through a bounded queue to
 * their consumer thread, which checks and frees them.  Every block is
 * allocated by one thread and freed by another, so an allocator with
 * per-thread caches must send it home or keep it; the batch records
 * themselves are malloc'd by the producer and freed by the consumer too.
 *
 * The time covers all threads from start to join; --scale multiplies BLOCKS.
 */
#include <pthread.h>
#include <stdlib.h>

#include "workload.h"

#define QUEUE_CAP 16 /* batches in flight per pair */

struct batch {
    size_t n;
    struct {
        void *p;
        size_t size;
        uint64_t tag;
    } block[]; /* [cap] */
};

struct queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct batch *ring[QUEUE_CAP];
    size_t head, count; /* a NULL entry ends the stream */
};

struct pair {
    struct queue q;
    size_t blocks, batch, min, max;
    uint64_t seed, id;
};

static void queue_push(struct queue *q, struct batch *b)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == QUEUE_CAP)
        pthread_cond_wait(&q->not_full, &q->lock);
    q->ring[(q->head + q->count) % QUEUE_CAP] = b;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static struct batch *queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    struct batch *b = q->ring[q->head];
    q->head = (q->head + 1) % QUEUE_CAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void *produce(void *arg)
{
    struct pair *pr = arg;
    struct wl_rng rng;
    wl_rng_init(&rng, pr->seed, pr->id);
    for (size_t done = 0; done < pr->blocks;) {
        size_t n = pr->blocks - done < pr->batch ? pr->blocks - done : pr->batch;
        struct batch *b = wl_malloc(sizeof *b + n * sizeof b->block[0]);
        b->n = n;
        for (size_t i = 0; i < n; i++, done++) {
            b->block[i].size = wl_rng_log_size(&rng, pr->min, pr->max);
            b->block[i].tag = pr->id << 40 | done;
            b->block[i].p = wl_malloc(b->block[i].size);
            wl_fill(b->block[i].p, b->block[i].size, b->block[i].tag);
        }
        queue_push(&pr->q, b);
    }
    queue_push(&pr->q, NULL);
    return NULL;
}

static void *consume(void *arg)
{
    struct pair *pr = arg;
    for (struct batch *b; (b = queue_pop(&pr->q)) != NULL;) {
        for (size_t i = 0; i < b->n; i++) {
            wl_check(b->block[i].p, b->block[i].size, b->block[i].tag, "in the consumer");
            free(b->block[i].p);
        }
        free(b);
    }
    return NULL;
}

/* Threads 2k and 2k + 1 are the producer and the consumer of pair k. */
struct role {
    struct pair *pair;
    bool producer;
};

static void *run_role(void *arg)
{
    struct role *r = arg;
    return r->producer ? produce(r->pair) : consume(r->pair);
}

int main(int argc, char **argv)
{
    size_t npairs = 2, blocks = 6000000, batch = 256, min = 8, max = 512;
    size_t seed = 0x786d616c6c6f63;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--pairs", WL_COUNT, &npairs, "producer/consumer pairs (2)"},
        {"--blocks", WL_COUNT, &blocks, "blocks per producer (6000000)"},
        {"--batch", WL_COUNT, &batch, "blocks per hand-over (256)"},
        {"--min", WL_BYTES, &min, "smallest block (8)"},
        {"--max", WL_BYTES, &max, "largest block (512)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --blocks (1)"},
    };
    WL_PARSE(argc, argv, opts, "xmalloc-test: producers allocate, consumers free.");
    if (min > max)
        max = min;
    blocks = wl_scaled(blocks, scale);

    struct pair *pairs = wl_malloc(npairs * sizeof *pairs);
    struct role *roles = wl_malloc(2 * npairs * sizeof *roles);
    for (size_t k = 0; k < npairs; k++) {
        pairs[k] = (struct pair){
            .q = {.lock = PTHREAD_MUTEX_INITIALIZER,
                  .not_empty = PTHREAD_COND_INITIALIZER,
                  .not_full = PTHREAD_COND_INITIALIZER},
            .blocks = blocks,
            .batch = batch,
            .min = min,
            .max = max,
            .seed = seed,
            .id = k + 1,
        };
        roles[2 * k] = (struct role){&pairs[k], true};
        roles[2 * k + 1] = (struct role){&pairs[k], false};
    }

    double t0 = wl_now();
    wl_run_threads(2 * npairs, run_role, roles, sizeof *roles);
    double t1 = wl_now();

    free(roles);
    free(pairs);
    return wl_finish(t1 - t0, NULL);
}
