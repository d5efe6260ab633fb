/*
 * Thread heaps (see theap.h): binding a thread to a shared arena, handing
 * its spans back when it exits, orphaning on reset and destroy.
 */
#include "theap.h"

#include <pthread.h>
#include <string.h>

#include "arena.h"
#include "os.h"

__thread struct rg_tl rg_tl __attribute__((tls_model("initial-exec")));

/* ---- storage: slabs of theaps, never unmapped ---- */

#define SLAB_BYTES  ((size_t)64 * 1024)
#define THEAP_BYTES rg_align_up(sizeof(struct rg_theap), 64) /* no false sharing */

/* Recycled theaps first, then the rest of the current slab, carved one
 * theap at a time: a slab is mapped untouched, and a process with one
 * thread faults in the pages of one theap, not all 64 KiB of its slab
 * (bench/small_rss: 16 page faults at the first malloc, now 1).  The first
 * slab is static and holds one theap, the first thread's: a
 * single-threaded process maps no slab at all. */
static union {
    struct rg_theap h;
    uint8_t bytes[(sizeof(struct rg_theap) + 63) / 64 * 64];
} first_slab __attribute__((aligned(64)));
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rg_theap *free_theaps;
static uint8_t *slab_next = first_slab.bytes, *slab_end = first_slab.bytes + sizeof first_slab;

static struct rg_theap *slab_carve(void)
{
    if ((size_t)(slab_end - slab_next) < THEAP_BYTES) {
        uint8_t *m = rg_os_map_aligned(SLAB_BYTES, 64, 0);
        if (m == NULL)
            return NULL;
        slab_next = m;
        slab_end = m + SLAB_BYTES;
    }
    struct rg_theap *h = (struct rg_theap *)slab_next;
    slab_next += THEAP_BYTES;
    return h;
}

static struct rg_theap *theap_new(void)
{
    pthread_mutex_lock(&slab_lock);
    struct rg_theap *h = free_theaps;
    if (h != NULL)
        free_theaps = h->next_of_thread;
    else
        h = slab_carve();
    pthread_mutex_unlock(&slab_lock);
    return h;
}

static void theap_recycle(struct rg_theap *h)
{
    pthread_mutex_lock(&slab_lock);
    h->next_of_thread = free_theaps;
    free_theaps = h;
    pthread_mutex_unlock(&slab_lock);
}

static_assert(offsetof(struct rg_theap, thread) ==
                  offsetof(struct rg_theap, next_of_thread) + sizeof(struct rg_theap *),
              "rg_theap_init clears around next_of_thread");

void rg_theap_init(struct rg_theap *h, struct regal_arena *a)
{
    /* All but next_of_thread, which a recycled theap keeps, and the cache
     * bins (rg_mcache_start's).  next_of_thread is not read here: a read
     * that comes first to a fresh page costs a second fault at the write. */
    memset(h, 0, offsetof(struct rg_theap, next_of_thread));
    memset(&h->thread, 0,
           offsetof(struct rg_theap, mcache.bins) - offsetof(struct rg_theap, thread));
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++) {
        rg_pageq_init(&h->classes[i], rg_class_size[i], RG_PAGE_CLASS);
        h->classes[i].owner = h;
    }
    h->thread = &rg_tl;
    __atomic_store_n(&h->arena, a, __ATOMIC_RELAXED);
}

/* ---- thread exit ---- */

static pthread_key_t exit_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* Runs at thread exit (pthread key destructor): every theap of the thread
 * goes back to its arena.  The registry lock keeps the arenas alive
 * meanwhile; a reset that ran first has orphaned the theap (checked again
 * under the arena's lock). */
static void thread_exit(void *arg)
{
    struct rg_tl *t = arg;
    t->exiting = true;
    memset(t->cache, 0, sizeof t->cache);
    t->default_theap = NULL;
    rg_registry_lock();
    for (struct rg_theap *h = t->theaps, *next; h != NULL; h = next) {
        next = h->next_of_thread;
        regal_arena *a = __atomic_load_n(&h->arena, __ATOMIC_RELAXED);
        if (a != RG_ORPHAN) {
            rg_arena_lock(a);
            if (__atomic_load_n(&h->arena, __ATOMIC_RELAXED) == a)
                rg_theap_abandon(a, h);
            rg_arena_unlock(a);
        }
        theap_recycle(h);
    }
    t->theaps = NULL;
    rg_registry_unlock();
}

static void key_init(void)
{
    pthread_key_create(&exit_key, thread_exit);
}

/* ---- binding ---- */

static void link_to_arena(regal_arena *a, struct rg_theap *h)
{
    rg_arena_lock(a);
    h->prev = NULL;
    h->next = a->theaps;
    if (a->theaps != NULL)
        a->theaps->prev = h;
    a->theaps = h;
    rg_arena_unlock(a);
}

static void unlink_from_arena(regal_arena *a, struct rg_theap *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        a->theaps = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
}

/* The thread's theap of a, or a new one (an orphaned theap of the thread
 * is reused). */
static struct rg_theap *find_or_make(struct rg_tl *t, regal_arena *a)
{
    struct rg_theap *spare = NULL;
    for (struct rg_theap *h = t->theaps; h != NULL; h = h->next_of_thread) {
        regal_arena *ha = __atomic_load_n(&h->arena, __ATOMIC_RELAXED);
        if (ha == a)
            return h;
        if (ha == RG_ORPHAN && spare == NULL)
            spare = h;
    }
    struct rg_theap *h = spare;
    if (h == NULL) {
        h = theap_new();
        if (h == NULL)
            return NULL;
        h->next_of_thread = t->theaps;
        t->theaps = h;
    }
    rg_theap_init(h, a);
    link_to_arena(a, h);
    return h;
}

struct rg_theap *rg_theap_bind(regal_arena *a)
{
    struct rg_tl *t = &rg_tl;
    if (t->exiting)
        return NULL;
    struct rg_theap *h = find_or_make(t, a);
    if (h == NULL)
        return NULL;
    if (!t->registered) {
        t->registered = true; /* first: pthread_setspecific may allocate */
        pthread_once(&key_once, key_init);
        pthread_setspecific(exit_key, t);
    }
    *rg_tl_slot(a) = h;
    if (a->is_default)
        t->default_theap = h;
    return h;
}

struct rg_theap *rg_theap_ensure(regal_arena *a)
{
    struct rg_theap *h = rg_theap_of(a);
    if (h == NULL && !rg_arena_tracked(a))
        h = rg_theap_bind(a);
    return h;
}

/* ---- handing back ---- */

static void counters_add(struct rg_counters *to, const struct rg_counters *from)
{
    to->in_use += from->in_use;
    to->requested_total += from->requested_total;
    to->alloc_count += from->alloc_count;
    to->free_count += from->free_count;
}

void rg_theap_abandon(regal_arena *a, struct rg_theap *h)
{
    size_t peak = rg_arena_peak(a);
    if (peak > a->peak_floor)
        a->peak_floor = peak;
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++)
        rg_pageq_abandon(&h->classes[i], &a->own.classes[i]);
    rg_mcache_flush(a, &h->mcache);
    counters_add(&a->own.st, &h->st);
    unlink_from_arena(a, h);
    __atomic_store_n(&h->arena, RG_ORPHAN, __ATOMIC_RELAXED);
}

void rg_theap_flush_caches(regal_arena *a)
{
    struct rg_theap *mine = rg_theap_of(a);
    if (mine != NULL)
        rg_mcache_flush(a, &mine->mcache);
    for (struct rg_theap *h = a->theaps; h != NULL; h = h->next)
        if (h != mine)
            rg_mcache_request_flush(&h->mcache);
}

void rg_theap_orphan_all(regal_arena *a)
{
    for (struct rg_theap *h = a->theaps; h != NULL; h = h->next) {
        for (unsigned i = 0; i < RG_CLASS_COUNT; i++)
            h->classes[i].avail = h->classes[i].full = h->classes[i].avail_tail = NULL;
        __atomic_store_n(&h->arena, RG_ORPHAN, __ATOMIC_RELAXED);
    }
    a->theaps = NULL;
}

void rg_theap_fork_child(regal_arena *a)
{
    for (struct rg_theap *h = a->theaps, *next; h != NULL; h = next) {
        next = h->next;
        if (h->thread != &rg_tl)
            rg_theap_abandon(a, h); /* its thread is gone; the struct is left */
    }
}

/* ---- figures ---- */

/* Other threads' counters are read as they are, with no lock: their owners
 * write them with plain stores on the fast paths (stats.h).  The peak of a
 * sum is not the sum of the peaks: where one thread allocates and another
 * frees, the first one's peak grows without end (a producer/consumer
 * program reported 1.6 GB for 164 MB resident).  Live blocks never hold
 * more than the arena has committed, so its highest mapped bounds it. */
size_t rg_arena_peak(regal_arena *a)
{
    size_t sum = a->own.st.peak_in_use;
    for (const struct rg_theap *h = a->theaps; h != NULL; h = h->next)
        sum += h->st.peak_in_use;
    if (sum < a->peak_floor)
        sum = a->peak_floor;
    return sum < a->peak_mapped ? sum : a->peak_mapped;
}

size_t rg_arena_in_use(const regal_arena *a)
{
    size_t sum = a->own.st.in_use;
    for (const struct rg_theap *h = a->theaps; h != NULL; h = h->next)
        sum += h->st.in_use;
    return sum;
}

void rg_arena_counters(regal_arena *a, struct rg_counters *out)
{
    *out = a->own.st;
    for (const struct rg_theap *h = a->theaps; h != NULL; h = h->next)
        counters_add(out, &h->st);
    out->peak_in_use = rg_arena_peak(a);
}
