/*
 * request_arena: a server-style program (no network) with one arena per
 * request and one long-lived arena shared by all workers.
 *
 * Four worker threads take request numbers from a shared counter.  Each
 * request gets its own single-thread arena: the path, the parsed headers,
 * the rendered response and every temporary live there, and all of it goes
 * at once with regal_arena_destroy() when the request is answered.  No
 * request frees anything one by one.
 *
 * Rendered responses are kept in a cache that all workers share: a hash map
 * with a least-recently-used list, guarded by one mutex, whose entries live
 * in the thread-safe arena "cache".  The cache holds at most CACHE_CAP
 * entries; inserting into a full cache evicts (regal_free) the least
 * recently used one, so after warm-up the shared arena keeps reusing the
 * same memory and its mapped bytes stay bounded.
 *
 * Paths are skewed (most requests ask for one of HOT_PATHS pages), so the
 * cache gets hits.  Every HIT_VERIFY-th hit renders the page again and
 * compares it with the cached copy.  The program exits non-zero when a
 * request fails, a cached copy differs, the shared arena's mapped grows by
 * more than MAX_GROWTH_PCT after warm-up (not checked under memcheck, whose
 * quarantine delays reuse on purpose), or regal_arena_check() fails.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <regal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS        4
#define REQUESTS       20000
#define PATHS          2000 /* distinct pages */
#define HOT_PATHS      200  /* the pages most requests ask for */
#define HOT_PCT        80   /* share of requests that ask for a hot page */
#define CACHE_CAP      256  /* entries */
#define CACHE_BUCKETS  512  /* hash buckets, a power of two */
#define HIT_VERIFY     16   /* every 16th hit is checked against a fresh render */
#define WARM_REQUESTS  5000 /* mapped is compared against the value here */
#define SAMPLE_EVERY   500  /* requests between samples of the shared arena */
#define MAX_GROWTH_PCT 10.0
#define KIB            1024u

/* Under memcheck, regal holds freed blocks in a quarantine before reusing
 * their memory (README, "Valgrind"), so reuse is not expected there: the
 * figures are printed but not checked.  memcheck preloads its own library. */
static bool under_memcheck(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload != NULL && strstr(preload, "vgpreload_memcheck") != NULL;
}

/* ---- the shared cache: lives in the thread-safe arena "cache" ---------- */

struct entry {
    struct entry *chain;         /* next in the bucket */
    struct entry *older, *newer; /* LRU list */
    uint64_t hash;
    size_t len; /* of body, without the NUL */
    char *body; /* the rendered response */
    char path[];
};

struct cache {
    pthread_mutex_t lock;
    regal_arena *arena;
    struct entry **buckets;
    struct entry *oldest, *newest;
    size_t count, evictions;
};

static struct cache cache;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 0x100000001b3u;
    return h;
}

static void lru_unlink(struct entry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        cache.oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        cache.newest = e->older;
}

static void lru_push(struct entry *e)
{
    e->older = cache.newest;
    e->newer = NULL;
    if (cache.newest)
        cache.newest->newer = e;
    else
        cache.oldest = e;
    cache.newest = e;
}

static struct entry **bucket_of(uint64_t hash)
{
    return &cache.buckets[hash & (CACHE_BUCKETS - 1)];
}

/* Caller holds the lock. */
static struct entry *cache_find(const char *path, uint64_t hash)
{
    for (struct entry *e = *bucket_of(hash); e; e = e->chain)
        if (e->hash == hash && strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

/* Caller holds the lock. */
static void cache_evict_oldest(void)
{
    struct entry *victim = cache.oldest;
    struct entry **link = bucket_of(victim->hash);
    while (*link != victim)
        link = &(*link)->chain;
    *link = victim->chain;
    lru_unlink(victim);
    regal_free(victim->body);
    regal_free(victim);
    cache.count--;
    cache.evictions++;
}

/* A copy of the cached page for path in arena a, or NULL on a miss. */
static char *cache_get(regal_arena *a, const char *path, size_t *len)
{
    uint64_t hash = hash_str(path);
    char *copy = NULL;
    pthread_mutex_lock(&cache.lock);
    struct entry *e = cache_find(path, hash);
    if (e) {
        lru_unlink(e);
        lru_push(e);
        copy = regal_alloc(a, e->len + 1);
        if (copy) {
            memcpy(copy, e->body, e->len + 1);
            *len = e->len;
        }
    }
    pthread_mutex_unlock(&cache.lock);
    return copy;
}

/* Stores a copy of body; another worker may have stored the page first. */
static bool cache_put(const char *path, const char *body, size_t len)
{
    uint64_t hash = hash_str(path);
    size_t plen = strlen(path) + 1;
    bool ok = true;
    pthread_mutex_lock(&cache.lock);
    if (!cache_find(path, hash)) {
        if (cache.count == CACHE_CAP)
            cache_evict_oldest();
        struct entry *e = regal_alloc(cache.arena, sizeof *e + plen);
        char *copy = regal_alloc(cache.arena, len + 1);
        if (e && copy) {
            memcpy(e->path, path, plen);
            memcpy(copy, body, len + 1);
            e->hash = hash;
            e->len = len;
            e->body = copy;
            e->chain = *bucket_of(hash);
            *bucket_of(hash) = e;
            lru_push(e);
            cache.count++;
        } else {
            regal_free(e);
            regal_free(copy);
            ok = false;
        }
    }
    pthread_mutex_unlock(&cache.lock);
    return ok;
}

/* ---- one request: everything in its own arena -------------------------- */

struct header {
    char *name;
    char *value;
};

struct request {
    unsigned id;
    char *path;
    struct header *headers;
    size_t nheaders;
};

struct worker {
    pthread_t thread;
    unsigned served, hits, misses, verified;
    size_t blocks, bytes; /* summed over this worker's request arenas */
    bool failed;
};

static atomic_uint next_request;
static pthread_mutex_t sample_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t mapped_warm, mapped_max;

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* A formatted string in arena a, or NULL. */
__attribute__((format(printf, 2, 3))) static char *arena_printf(regal_arena *a, const char *fmt,
                                                                ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = n < 0 ? NULL : regal_alloc(a, (size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, again);
    va_end(again);
    va_end(ap);
    return s;
}

/* The request as a parser would leave it: a path and a list of headers. */
static bool request_parse(regal_arena *a, struct request *rq)
{
    uint64_t r = splitmix(rq->id);
    unsigned page = (unsigned)(r % 100 < HOT_PCT ? (r >> 8) % HOT_PATHS : (r >> 8) % PATHS);
    rq->path = arena_printf(a, "/catalog/%u/page-%u.html", page % 17, page);
    rq->nheaders = 4 + (size_t)((r >> 24) % 12);
    rq->headers = regal_calloc(a, rq->nheaders, sizeof *rq->headers);
    if (!rq->path || !rq->headers)
        return false;
    for (size_t i = 0; i < rq->nheaders; i++) {
        rq->headers[i].name = arena_printf(a, "X-Header-%zu", i);
        rq->headers[i].value = arena_printf(a, "value %zu of request %u", i, rq->id);
        if (!rq->headers[i].name || !rq->headers[i].value)
            return false;
    }
    return true;
}

/* Renders the page for path into a buffer that grows with regal_realloc. */
static char *page_render(regal_arena *a, const char *path, size_t *len)
{
    uint64_t h = hash_str(path);
    unsigned items = 5 + (unsigned)(h % 60);
    size_t cap = 256, used = 0;
    char *buf = regal_alloc(a, cap);
    if (!buf)
        return NULL;
    for (unsigned i = 0; i <= items; i++) {
        char line[96];
        int n = i < items ? snprintf(line, sizeof line, "<li>item %u: %016" PRIx64 "</li>\n", i,
                                     splitmix(h + i))
                          : snprintf(line, sizeof line, "<!-- %u items -->\n", items);
        if (n < 0)
            return NULL;
        if (used + (size_t)n + 1 > cap) {
            char *grown = regal_realloc(a, buf, 2 * cap);
            if (!grown)
                return NULL;
            buf = grown;
            cap *= 2;
        }
        memcpy(buf + used, line, (size_t)n + 1);
        used += (size_t)n;
    }
    *len = used;
    return buf;
}

static void sample_shared_arena(unsigned id)
{
    regal_stats st;
    regal_arena_stats(cache.arena, &st);
    pthread_mutex_lock(&sample_lock);
    if (id == WARM_REQUESTS)
        mapped_warm = st.mapped;
    if (id >= WARM_REQUESTS && st.mapped > mapped_max)
        mapped_max = st.mapped;
    pthread_mutex_unlock(&sample_lock);
}

static bool request_serve(struct worker *w, unsigned id)
{
    regal_arena_config cfg = {.name = "request", .limit = 0, .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *a = regal_arena_create(&cfg);
    if (!a)
        return false;

    struct request rq = {.id = id, .path = NULL, .headers = NULL, .nheaders = 0};
    size_t len = 0;
    char *body = NULL;
    bool ok = request_parse(a, &rq);
    if (ok)
        body = cache_get(a, rq.path, &len);
    if (ok && body) {
        w->hits++;
        if (w->hits % HIT_VERIFY == 0) {
            size_t fresh_len;
            char *fresh = page_render(a, rq.path, &fresh_len);
            ok = fresh && fresh_len == len && memcmp(fresh, body, len) == 0;
            w->verified++;
        }
    } else if (ok) {
        w->misses++;
        body = page_render(a, rq.path, &len);
        ok = body && cache_put(rq.path, body, len);
    }
    ok = ok && regal_arena_of(body) == a;

    regal_stats st;
    regal_arena_stats(a, &st);
    w->blocks += st.blocks_in_use;
    w->bytes += st.in_use;
    regal_arena_destroy(a); /* the whole request, at once */
    return ok;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (;;) {
        unsigned id = atomic_fetch_add(&next_request, 1) + 1;
        if (id > REQUESTS)
            break;
        if (!request_serve(w, id)) {
            fprintf(stderr,
                    "request_arena: request %u failed (an allocation or a cached page; "
                    "errno: %s)\n",
                    id, strerror(errno));
            w->failed = true;
            break;
        }
        w->served++;
        if (id % SAMPLE_EVERY == 0)
            sample_shared_arena(id);
    }
    return NULL;
}

int main(void)
{
    regal_arena_config cfg = {.name = "cache", .limit = 0, .flags = 0};
    cache.arena = regal_arena_create(&cfg);
    if (!cache.arena) {
        fprintf(stderr, "request_arena: regal_arena_create failed: %s\n", strerror(errno));
        return EXIT_FAILURE;
    }
    pthread_mutex_init(&cache.lock, NULL);
    cache.buckets = regal_calloc(cache.arena, CACHE_BUCKETS, sizeof *cache.buckets);
    if (!cache.buckets) {
        fprintf(stderr, "request_arena: regal_calloc failed: %s\n", strerror(errno));
        return EXIT_FAILURE;
    }

    struct worker workers[WORKERS];
    memset(workers, 0, sizeof workers);
    for (int i = 0; i < WORKERS; i++) {
        int err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
        if (err) {
            fprintf(stderr, "request_arena: pthread_create: %s\n", strerror(err));
            return EXIT_FAILURE;
        }
    }
    unsigned served = 0, hits = 0, misses = 0, verified = 0;
    size_t blocks = 0, bytes = 0;
    int status = EXIT_SUCCESS;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(workers[i].thread, NULL);
        served += workers[i].served;
        hits += workers[i].hits;
        misses += workers[i].misses;
        verified += workers[i].verified;
        blocks += workers[i].blocks;
        bytes += workers[i].bytes;
        if (workers[i].failed)
            status = EXIT_FAILURE;
    }

    regal_stats st;
    regal_arena_stats(cache.arena, &st);
    double growth = mapped_warm
                        ? 100.0 * ((double)mapped_max - (double)mapped_warm) / (double)mapped_warm
                        : 0.0;
    printf("request_arena: %u requests served by %d workers, one arena per request\n", served,
           WORKERS);
    printf("per request: %.1f blocks, %.1f KiB in use before destroy\n",
           served ? (double)blocks / served : 0.0, served ? (double)bytes / served / KIB : 0.0);
    printf("cache: %u hits, %u misses, %zu evictions, %zu entries (%u hits verified)\n", hits,
           misses, cache.evictions, cache.count, verified);
    printf("shared arena \"cache\": mapped %zu KiB at request %d, max after %zu KiB (%+.1f%%), "
           "in use %zu KiB\n",
           mapped_warm / KIB, WARM_REQUESTS, mapped_max / KIB, growth, st.in_use / KIB);

    if (served != REQUESTS || hits + misses != served || hits == 0) {
        fprintf(stderr, "request_arena: %u of %d requests served, %u hits\n", served, REQUESTS,
                hits);
        status = EXIT_FAILURE;
    }
    if (under_memcheck()) {
        puts("request_arena: under memcheck (quarantine): mapped not checked");
    } else if (mapped_warm == 0 || growth > MAX_GROWTH_PCT) {
        fprintf(stderr, "request_arena: shared arena's mapped grew by %.1f%% (limit %.0f%%)\n",
                growth, MAX_GROWTH_PCT);
        status = EXIT_FAILURE;
    }
    if (regal_arena_check(cache.arena) != 0) {
        fprintf(stderr, "request_arena: regal_arena_check failed on the shared arena\n");
        status = EXIT_FAILURE;
    }
    regal_arena_destroy(cache.arena);
    pthread_mutex_destroy(&cache.lock);
    puts(status == EXIT_SUCCESS ? "request_arena: ok" : "request_arena: FAILED");
    return status;
}
