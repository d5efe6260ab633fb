/*
 * Arenas: creation, reset, destroy, the default arena, committed-memory
 * accounting against the limit, and routing of requests and pointers to the
 * pages, heap and large paths.
 *
 * An arena is the header of its home chunk, a pages chunk that stays with
 * it until destroy, so creating one costs a chunk from the cache and no
 * other allocation.
 *
 * Invariants:
 *  1. mapped == sum over chunks of their committed granules * RG_GRANULE
 *     + sum over large mappings (live and cached) of rg_large_committed.
 *  2. limit == 0 or mapped <= limit.
 *  3. Every chunk on pages/heaps/large lists has arena == this arena and
 *     tracked == rg_arena_tracked(this arena), and its byte in the chunk
 *     map says the same (chunk.c invariant 2; fast.h reads it there).
 *  4. dirty == committed bytes of free spans and of pages at or above top
 *     (pages chunks) + committed bytes of the pages inside free heap blocks
 *     + large_cache_bytes (rg_purge_count_dirty; purge.c).
 *
 * The lock guards everything in the struct; SINGLE_THREAD arenas skip it.
 */
#include "arena.h"

#include <errno.h>
#include <string.h>

#include "error.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "pool.h"
#include "purge.h"
#include "track.h"

/* ---- committed memory ---- */

static bool fits(const regal_arena *a, size_t bytes)
{
    return a->limit == 0 || a->mapped + bytes <= a->limit;
}

/* Before memory is committed fresh (a slow path: its pages fault in
 * anyway) the purge policy runs, and at the limit everything the arena
 * holds without using goes back (release_all: the large cache, free spans,
 * the inside of free heap and handle blocks).  No chunk or block moves, so
 * both are safe in the middle of an allocation. */
static void release_all(regal_arena *a)
{
    rg_purge_all(a);
    rg_handle_decommit_free(a);
}

static void add_mapped(regal_arena *a, size_t bytes)
{
    a->mapped += bytes;
    a->fresh_total += bytes;
    if (a->mapped > a->peak_mapped)
        a->peak_mapped = a->mapped;
    if (RG_UNLIKELY(a->bound_released > 0))
        rg_purge_judge(a);
}

bool rg_arena_commit_bytes(regal_arena *a, size_t bytes)
{
    rg_purge_maybe(a);
    if (!fits(a, bytes)) {
        release_all(a);
        if (!fits(a, bytes))
            return false;
    }
    add_mapped(a, bytes);
    return true;
}

bool rg_arena_commit(regal_arena *a, struct rg_chunk *c, size_t from, size_t to, bool was_dirty)
{
    size_t fresh = rg_chunk_uncommitted(c, from, to);
    if (fresh == 0 && !was_dirty)
        return true; /* the usual heap case: nothing to count, no bit to set */
    if (fresh > 0) { /* a purge may decommit part of [from, to) too: count again */
        rg_purge_maybe(a);
        fresh = rg_chunk_uncommitted(c, from, to);
        if (!fits(a, fresh)) {
            release_all(a);
            fresh = rg_chunk_uncommitted(c, from, to);
            if (!fits(a, fresh))
                return false;
        }
    }
    /* Counted after the purge, which may have given part of it back. */
    if (was_dirty)
        rg_arena_dirty_sub(a, rg_chunk_committed_in(c, from, to));
    add_mapped(a, fresh);
    rg_chunk_set_committed(c, from, to);
    return true;
}

void rg_arena_uncommit(regal_arena *a, size_t bytes)
{
    RG_ASSERT(a->mapped >= bytes);
    a->mapped -= bytes;
}

void rg_arena_purged(regal_arena *a, size_t bytes)
{
    rg_arena_uncommit(a, bytes);
    rg_arena_dirty_sub(a, bytes);
    a->purged += bytes;
}

/* ---- chunks ---- */

static struct rg_chunk **chunk_list(regal_arena *a, enum rg_chunk_kind kind)
{
    return kind == RG_CHUNK_PAGES ? &a->pages : &a->heaps;
}

static void chunk_link(regal_arena *a, struct rg_chunk *c)
{
    struct rg_chunk **head = chunk_list(a, (enum rg_chunk_kind)c->kind);
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

/* Metadata a new chunk commits at once: for pages chunks the header, the
 * home arena and every page descriptor; for heap chunks the header. */
static size_t chunk_meta_bytes(enum rg_chunk_kind kind)
{
    size_t meta = kind == RG_CHUNK_PAGES ? RG_PAGES_META : sizeof(struct rg_chunk);
    return rg_align_up(meta, RG_GRANULE);
}

struct rg_chunk *rg_arena_add_chunk(regal_arena *a, enum rg_chunk_kind kind)
{
    size_t meta = chunk_meta_bytes(kind);
    if (!rg_arena_commit_bytes(a, meta))
        return NULL;
    struct rg_chunk *c = rg_chunk_alloc(a, kind, rg_arena_tracked(a));
    if (c == NULL) {
        rg_arena_uncommit(a, meta);
        return NULL;
    }
    rg_chunk_set_committed(c, 0, meta);
    rg_vg_noaccess(c, RG_CHUNK_SIZE);
    rg_vg_defined(c, sizeof(struct rg_chunk)); /* read by the fast paths; no block pointers */
    if (kind == RG_CHUNK_PAGES)
        rg_pages_chunk_init(c);
    else
        rg_heap_chunk_init(a, c);
    chunk_link(a, c);
    return c;
}

size_t rg_arena_remove_chunk(regal_arena *a, struct rg_chunk *c)
{
    struct rg_chunk **head = chunk_list(a, (enum rg_chunk_kind)c->kind);
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    size_t bytes = rg_chunk_committed(c);
    rg_arena_uncommit(a, bytes);
    rg_chunk_free(c);
    return bytes;
}

/* ---- the registry of live arenas, and fork ---- */

/* fork() in a threaded program: every arena lock (and the chunk cache's)
 * is taken before the fork, in registry order, and released in both parent
 * and child afterwards, so the child never inherits a lock held by a thread
 * that does not exist there. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static regal_arena *registry;

static void registry_add(regal_arena *a)
{
    pthread_mutex_lock(&registry_lock);
    a->prev_arena = NULL;
    a->next_arena = registry;
    if (registry)
        registry->prev_arena = a;
    registry = a;
    pthread_mutex_unlock(&registry_lock);
}

void rg_registry_lock(void)
{
    pthread_mutex_lock(&registry_lock);
}

void rg_registry_unlock(void)
{
    pthread_mutex_unlock(&registry_lock);
}

/* Also orphans the arena's theaps: thread exit holds the registry lock
 * while it hands theaps back, so it never meets a destroyed arena. */
static void registry_remove(regal_arena *a)
{
    pthread_mutex_lock(&registry_lock);
    rg_theap_orphan_all(a);
    if (a->prev_arena)
        a->prev_arena->next_arena = a->next_arena;
    else
        registry = a->next_arena;
    if (a->next_arena)
        a->next_arena->prev_arena = a->prev_arena;
    pthread_mutex_unlock(&registry_lock);
}

/* Direct calls, not rg_arena_lock: the child is single-threaded again and
 * would skip the unlock. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    for (regal_arena *a = registry; a != NULL; a = a->next_arena)
        if (!(a->flags & REGAL_ARENA_SINGLE_THREAD))
            pthread_mutex_lock(&a->lock);
    rg_chunk_fork_prepare();
}

static void fork_release(void)
{
    rg_chunk_fork_release();
    for (regal_arena *a = registry; a != NULL; a = a->next_arena)
        if (!(a->flags & REGAL_ARENA_SINGLE_THREAD))
            pthread_mutex_unlock(&a->lock);
    pthread_mutex_unlock(&registry_lock);
}

/* The child has only the forking thread: the spans of the others' theaps
 * go to their arenas, so other threads' frees are not lost. */
static void fork_child(void)
{
    for (regal_arena *a = registry; a != NULL; a = a->next_arena)
        rg_theap_fork_child(a);
    fork_release();
}

/* Registered on first use, with no lock held: pthread_atfork may allocate,
 * which re-enters regal (and finds the handlers already claimed). */
static void register_fork_handlers(void)
{
    static int claimed;
    if (__atomic_load_n(&claimed, __ATOMIC_RELAXED) ||
        __atomic_exchange_n(&claimed, 1, __ATOMIC_ACQ_REL))
        return;
    pthread_atfork(fork_prepare, fork_release, fork_child);
}

/* ---- lifetime ---- */

static void init_queues(regal_arena *a)
{
    a->theaps = NULL;
    memset(a->revive, 0, sizeof a->revive);
    a->peak_floor = 0;
    a->peak_mapped = a->mapped;
    rg_theap_init(&a->own, a);
    bool single = (a->flags & REGAL_ARENA_SINGLE_THREAD) && !rg_arena_tracked(a);
    /* No thread's in a shared arena: its spans change under the lock. */
    a->own.thread = single ? RG_ANY_THREAD : NULL;
    a->single = single ? RG_SINGLE_MAGIC : 0;
    rg_pageq_init(&a->meta, (uint32_t)rg_align_up(sizeof(struct regal_pool), RG_ALIGN),
                  RG_PAGE_META);
}

/* Process-wide settings, once, before the first arena: options, whether
 * memcheck runs, the free-list key.  Every thread sees them complete. */
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

static void process_init(void)
{
    rg_options_init();
    rg_vg_init();
    rg_link_key = (uintptr_t)rg_os_secret();
    rg_classes_init();
}

/* The arena lock spins a little before it sleeps: its holders stay for
 * a heap operation or so, and with more threads than cores a futex sleep
 * and wake per contended acquire cost more than the wait (bench/mstress:
 * 4 threads, 2 cores, 38000 context switches and 0.88 s with a plain
 * mutex; 600 and 0.47 s with this one). */
static void lock_init(pthread_mutex_t *lock)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(lock, &attr);
    pthread_mutexattr_destroy(&attr);
}

static regal_arena *arena_new(const regal_arena_config *cfg)
{
    unsigned flags = cfg ? cfg->flags : 0;
    if ((flags & REGAL_ARENA_DEBUG) || rg_vg())
        flags |= RG_ARENA_TRACKED;
    struct rg_chunk *home = rg_chunk_alloc(NULL, RG_CHUNK_PAGES, (flags & RG_ARENA_TRACKED) != 0);
    if (home == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    regal_arena *a = (regal_arena *)home;
    rg_vg_noaccess(home, RG_CHUNK_SIZE);
    rg_vg_defined(home, sizeof(regal_arena)); /* read by the fast paths; no block pointers */
    home->arena = a;
    rg_pages_chunk_init(home);
    rg_chunk_set_committed(home, 0, chunk_meta_bytes(RG_CHUNK_PAGES));
    a->magic = RG_ARENA_MAGIC;
    a->flags = flags;
    a->limit = cfg ? cfg->limit : 0;
    if (cfg && cfg->name)
        strncpy(a->name, cfg->name, RG_NAME_MAX - 1);
    lock_init(&a->lock);
    a->pages = home;
    a->mapped = chunk_meta_bytes(RG_CHUNK_PAGES);
    rg_purge_init(a);
    init_queues(a);
    registry_add(a);
    return a;
}

regal_arena *regal_arena_create(const regal_arena_config *cfg)
{
    pthread_once(&process_once, process_init);
    if (cfg && (cfg->flags & ~(REGAL_ARENA_SINGLE_THREAD | REGAL_ARENA_DEBUG))) {
        errno = EINVAL;
        return NULL;
    }
    if (cfg && cfg->limit != 0 && cfg->limit < chunk_meta_bytes(RG_CHUNK_PAGES)) {
        errno = ENOMEM; /* not even the arena's own page fits */
        return NULL;
    }
    rg_vg_quiet_begin();
    regal_arena *a = arena_new(cfg);
    rg_vg_quiet_end();
    register_fork_handlers();
    return a;
}

static bool arena_is_valid_handle(regal_arena *a, const char *what)
{
    if (rg_arena_is_live(a))
        return true;
    rg_report(REGAL_ERR_INVALID_FREE, a, NULL, "%s of something that is not a live arena", what);
    return false;
}

/* Everything but the home chunk, which keeps the arena itself. */
static void release_chunks(regal_arena *a)
{
    rg_handle_destroy(a);
    rg_large_destroy(a);
    while (a->heaps != NULL)
        rg_arena_remove_chunk(a, a->heaps);
    struct rg_chunk *home = rg_arena_home(a);
    while (a->pages != home || home->next != NULL) {
        struct rg_chunk *c = a->pages == home ? home->next : a->pages;
        rg_arena_remove_chunk(a, c);
    }
}

void regal_arena_destroy(regal_arena *a)
{
    if (a == NULL || !arena_is_valid_handle(a, "destroy"))
        return;
    rg_vg_quiet_begin();
    bool is_default = a->is_default;
    rg_vg_quiet_end();
    if (is_default) {
        rg_report(REGAL_ERR_INVALID_FREE, a, a, "the default arena cannot be destroyed");
        return;
    }
    rg_vg_quiet_begin();
    bool debug = (a->flags & REGAL_ARENA_DEBUG) != 0, tracked = rg_arena_tracked(a);
    rg_vg_quiet_end();
    if (debug)
        rg_track_leak_report(a, "destroy");
    rg_vg_quiet_begin();
    if (tracked)
        rg_track_arena_release(a);
    registry_remove(a);
    release_chunks(a);
    pthread_mutex_destroy(&a->lock);
    a->magic = 0;
    a->single = 0;
    rg_chunk_free(rg_arena_home(a));
    rg_vg_quiet_end();
}

void regal_arena_reset(regal_arena *a)
{
    if (a == NULL || !arena_is_valid_handle(a, "reset"))
        return;
    rg_vg_quiet_begin();
    if (rg_arena_tracked(a))
        rg_track_arena_release(a);
    rg_arena_lock(a);
    rg_large_reset(a);
    for (struct rg_chunk *c = a->pages; c != NULL; c = c->next)
        rg_pages_chunk_reset(c);
    rg_heap_reset(a);
    rg_theap_orphan_all(a);
    rg_handle_reset(a);
    /* Every page is free now: count the dirty memory again. */
    a->dirty = rg_purge_count_dirty(a);
    if (a->dirty == 0)
        a->dirty_since = 0;
    init_queues(a);
    a->pools = NULL;
    rg_purge_maybe(a);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
}

static regal_arena *rg_default_arena_ptr;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

/* Built completely, then published with a release store; readers load it
 * with acquire, so no thread sees a half-made default arena. */
static void default_init(void)
{
    regal_arena_config cfg = {.name = "default",
                              .flags = rg_options()->debug ? REGAL_ARENA_DEBUG : 0};
    regal_arena *a = arena_new(&cfg);
    if (a != NULL)
        a->is_default = true;
    __atomic_store_n(&rg_default_arena_ptr, a, __ATOMIC_RELEASE);
}

regal_arena *regal_default_arena(void)
{
    regal_arena *a = __atomic_load_n(&rg_default_arena_ptr, __ATOMIC_ACQUIRE);
    if (RG_UNLIKELY(a == NULL)) {
        pthread_once(&process_once, process_init);
        rg_vg_quiet_begin();
        pthread_once(&default_once, default_init);
        rg_vg_quiet_end();
        register_fork_handlers();
        a = __atomic_load_n(&rg_default_arena_ptr, __ATOMIC_ACQUIRE);
    }
    return a;
}

/* ---- routing ---- */

void *rg_arena_alloc(regal_arena *a, size_t size, size_t align, size_t *usable)
{
    if (size <= RG_SMALL_MAX) {
        int c = align <= RG_ALIGN ? (int)rg_size_class(size) : rg_aligned_class(size, align);
        if (c >= 0) {
            *usable = rg_class_size[c];
            return rg_page_alloc(a, &a->own.classes[c]);
        }
    }
    if (size <= RG_HEAP_MAX && align <= RG_PAGE_SIZE)
        return rg_heap_alloc(a, size, align, usable);
    void *p = rg_large_alloc(a, size, align);
    if (p != NULL)
        *usable = rg_large_usable(rg_chunk_of(p));
    return p;
}

void rg_arena_visit(regal_arena *a, rg_visit_fn fn, void *ctx)
{
    for (struct rg_chunk *c = a->pages; c != NULL; c = c->next)
        rg_pages_chunk_visit(c, fn, ctx);
    rg_heap_visit(a, fn, ctx);
    rg_large_visit(a, fn, ctx);
}

/* Spans with no live slot, every dirty byte, then whole empty chunks: heap
 * chunks but one, pages chunks with no live span but the home chunk
 * (rg_chunk_free gives them back to the OS whole on their way to the
 * process-wide cache). */
size_t rg_arena_trim_locked(regal_arena *a)
{
    /* Only the spans no thread owns and the caller's own: other threads'
     * theaps change with no lock, and hand theirs back when they exit. */
    struct rg_theap *mine = rg_theap_of(a);
    size_t shed = 0;
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++) {
        shed += rg_pageq_trim(&a->own.classes[i]);
        if (mine != NULL && mine != &a->own)
            shed += rg_pageq_trim(&mine->classes[i]);
    }
    for (struct regal_pool *p = a->pools; p != NULL; p = p->next) {
        rg_pool_flush_hot(p);
        shed += rg_pageq_trim(&p->q);
    }
    shed += rg_pageq_trim(&a->meta);
    size_t released = shed + rg_purge_all(a), chunks = rg_heap_trim(a) + rg_handle_trim(a);
    struct rg_chunk *home = rg_arena_home(a), *next;
    for (struct rg_chunk *c = a->pages; c != NULL; c = next) {
        next = c->next;
        if (c != home && ((struct rg_pages_chunk *)c)->spans_live == 0)
            chunks += rg_arena_remove_chunk(a, c);
    }
    a->purged += chunks;
    return released + chunks;
}

/* ---- pointers ---- */

regal_arena *rg_owner(const void *p, struct rg_chunk **chunk)
{
    if (p == NULL || !rg_chunk_is_mapped(p))
        return NULL;
    struct rg_chunk *c = rg_chunk_of(p);
    if (c->magic != RG_CHUNK_MAGIC)
        return NULL;
    *chunk = c;
    return c->arena;
}

enum rg_ref_status rg_ref_resolve(struct rg_chunk *c, const void *p, struct rg_ref *ref)
{
    ref->chunk = c;
    ref->page = NULL;
    ref->arena = c->arena;
    switch (c->kind) {
    case RG_CHUNK_PAGES: {
        struct rg_page *pg = rg_page_of(c, p);
        if (pg == NULL || pg->kind == RG_PAGE_META)
            return RG_REF_FOREIGN;
        ref->page = pg;
        enum rg_slot_status s = rg_slot_status(pg, p);
        return s == RG_SLOT_LIVE ? RG_REF_LIVE : s == RG_SLOT_FREE ? RG_REF_DEAD : RG_REF_FOREIGN;
    }
    case RG_CHUNK_HEAP: {
        enum rg_hblock_status s = rg_heap_status(c, p);
        return s == RG_HB_LIVE ? RG_REF_LIVE : s == RG_HB_DEAD ? RG_REF_DEAD : RG_REF_FOREIGN;
    }
    case RG_CHUNK_LARGE: {
        enum rg_large_status s = rg_large_status(c, p);
        return s == RG_LARGE_LIVE ? RG_REF_LIVE : s == RG_LARGE_DEAD ? RG_REF_DEAD : RG_REF_FOREIGN;
    }
    default:
        return RG_REF_FOREIGN;
    }
}

size_t rg_ref_usable(const struct rg_ref *ref, const void *p)
{
    switch (ref->chunk->kind) {
    case RG_CHUNK_PAGES:
        return ref->page->slot_size;
    case RG_CHUNK_HEAP:
        return rg_heap_usable(p);
    default:
        return rg_large_usable(ref->chunk);
    }
}

void rg_ref_free(const struct rg_ref *ref, void *p)
{
    switch (ref->chunk->kind) {
    case RG_CHUNK_PAGES:
        rg_page_free(ref->arena, ref->page, p);
        break;
    case RG_CHUNK_HEAP:
        rg_heap_free(ref->arena, p);
        break;
    default:
        rg_large_free(ref->arena, ref->chunk);
    }
}

void *rg_ref_resize(const struct rg_ref *ref, void *p, size_t size)
{
    bool in_place;
    switch (ref->chunk->kind) {
    case RG_CHUNK_PAGES:
        /* In place while the size keeps its class (pool objects never move
         * between pages: they are resized like class blocks of their slot). */
        if (ref->page->kind == RG_PAGE_CLASS)
            in_place =
                size <= RG_SMALL_MAX && rg_class_size[rg_size_class(size)] == ref->page->slot_size;
        else
            in_place = size <= ref->page->slot_size;
        break;
    case RG_CHUNK_HEAP:
        in_place =
            size > RG_SMALL_MAX && size <= RG_HEAP_MAX && rg_heap_resize(ref->arena, p, size);
        break;
    default: /* a large block may move its pages */
        return size > RG_HEAP_MAX ? rg_large_resize(ref->arena, ref->chunk, size) : NULL;
    }
    return in_place ? p : NULL;
}
