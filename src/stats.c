/*
 * Statistics: the struct, a text table and JSON.  Per-class figures are
 * derived from the page queues when printed, so the fast paths only count
 * totals (stats.h).
 *
 * The printers copy what they show under the lock and print after
 * releasing it: stdio may allocate (a stream's first buffer), which
 * re-enters regal through the malloc shim.
 */
#include "stats.h"

#include <string.h>

#include "handle.h"
#include "heap.h"
#include "large.h"
#include "options.h"
#include "pool.h"
#include "purge.h"
#include "track.h"
#include "vg.h"

static size_t minus(size_t x, size_t y)
{
    return x > y ? x - y : 0;
}

/* The resident, retained and free figures.  Address space: every chunk and
 * large mapping of the arena.  Metadata: the committed part of page 0 of
 * pages chunks, heap chunk headers, and what a live large mapping commits
 * beyond its usable bytes (header and alignment). */
static void memory_figures(const regal_arena *a, regal_stats *out)
{
    size_t space = 0, meta = 0;
    for (const struct rg_chunk *c = a->pages; c != NULL; c = c->next) {
        space += RG_CHUNK_SIZE;
        meta += rg_align_up(RG_PAGES_META, RG_GRANULE);
    }
    for (const struct rg_chunk *c = a->heaps; c != NULL; c = c->next) {
        space += RG_CHUNK_SIZE;
        meta += RG_HEAP_META;
    }
    for (struct rg_chunk *c = a->large; c != NULL; c = c->next) {
        space += c->map_size;
        meta += rg_large_committed(c) - rg_large_usable(c);
    }
    space += rg_large_cached_bytes(a);
    space += rg_handle_space(a);
    out->resident = a->mapped;
    out->retained = minus(space, a->mapped);
    out->dirty = a->dirty;
    out->free_resident = minus(a->mapped, out->in_use + meta);
    out->fragmentation = minus(out->free_resident, rg_heap_largest_free_resident(&a->heap));
    out->purged = a->purged;
}

void regal_arena_stats(regal_arena *a, regal_stats *out)
{
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    struct rg_counters st;
    rg_arena_counters(a, &st);
    out->in_use = st.in_use;
    out->peak_in_use = st.peak_in_use;
    out->mapped = a->mapped;
    out->requested_total = st.requested_total;
    out->blocks_in_use = st.alloc_count - st.free_count;
    out->alloc_count = st.alloc_count;
    out->free_count = st.free_count;
    out->largest_free_run = rg_heap_largest_free(&a->heap);
    memory_figures(a, out);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
}

struct queue_figures {
    size_t size, spans, pages, used, capacity;
};

#define SNAP_POOLS 64

struct snapshot {
    regal_stats s;
    char name[RG_NAME_MAX];
    unsigned flags;
    size_t limit;
    uint64_t purge_delay;
    size_t purge_cap, purge_cap_now;
    struct queue_figures classes[RG_CLASS_COUNT];
    struct queue_figures pools[SNAP_POOLS];
    size_t npools, pools_left_out;
    size_t heap_chunks, free_runs, free_bytes;
    size_t large, large_bytes, cached, cached_bytes;
    struct rg_handle_figures handles;
};

/* A span's used count changes with no lock in its owner thread: read as
 * is, a figure for display (tests/tsan/suppressions.txt names the caller,
 * class_figures). */
static void add_span(struct queue_figures *f, const struct rg_page *pg)
{
    f->spans++;
    f->pages += pg->span;
    f->used += pg->used;
    f->capacity += pg->capacity;
}

static struct queue_figures queue_figures(const struct rg_pageq *q, size_t size)
{
    struct queue_figures f = {.size = size};
    const struct rg_page *lists[2] = {q->avail, q->full};
    for (int l = 0; l < 2; l++)
        for (const struct rg_page *pg = lists[l]; pg != NULL; pg = pg->next)
            add_span(&f, pg);
    return f;
}

/* Class spans are spread over the threads' theaps, whose lists only their
 * owners walk: the figures come from the span descriptors of each chunk. */
static void class_figures(const regal_arena *a, struct queue_figures *classes)
{
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++)
        classes[i] = (struct queue_figures){.size = rg_class_size[i]};
    for (struct rg_chunk *c = a->pages; c != NULL; c = c->next) {
        unsigned top = ((const struct rg_pages_chunk *)c)->top;
        for (unsigned i = RG_DATA_PAGE0; i < top; i++) {
            const struct rg_page *pg = rg_page_desc(c, i);
            if (pg->state == RG_PAGE_HEAD && pg->kind == RG_PAGE_CLASS)
                add_span(&classes[rg_size_class(pg->slot_size)], pg);
        }
    }
}

static size_t count_chunks(const struct rg_chunk *c, size_t *bytes)
{
    size_t n = 0;
    for (; c != NULL; c = c->next, n++)
        *bytes += c->map_size;
    return n;
}

static void snapshot_heap(const regal_arena *a, struct snapshot *snap)
{
    for (const struct rg_chunk *c = a->heaps; c != NULL; c = c->next)
        snap->heap_chunks++;
    for (unsigned i = 0; i < RG_FL_COUNT; i++)
        for (unsigned j = 0; j < RG_SL_COUNT; j++)
            for (const struct rg_hblock *b = a->heap.heads[i][j]; b != NULL; b = b->next_free) {
                snap->free_runs++;
                snap->free_bytes += b->size & ~RG_HB_FLAGS;
            }
}

static void snapshot(regal_arena *a, struct snapshot *snap)
{
    memset(snap, 0, sizeof *snap);
    regal_arena_stats(a, &snap->s);
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    memcpy(snap->name, a->name, sizeof snap->name);
    snap->flags = a->flags;
    snap->limit = a->limit;
    snap->purge_delay = a->purge_delay;
    snap->purge_cap = a->purge_cap;
    snap->purge_cap_now = rg_purge_cap(a);
    class_figures(a, snap->classes);
    for (const regal_pool *p = a->pools; p != NULL; p = p->next) {
        if (snap->npools < SNAP_POOLS) {
            struct queue_figures f = queue_figures(&p->q, p->object_size);
            f.used -= p->hot_n; /* freed, on the hot stack */
            snap->pools[snap->npools++] = f;
        } else
            snap->pools_left_out++;
    }
    snapshot_heap(a, snap);
    snap->large = count_chunks(a->large, &snap->large_bytes);
    snap->cached = a->large_cache_count;
    snap->cached_bytes = rg_large_cached_bytes(a);
    rg_handle_figures(a, &snap->handles);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
}

static double fill(const struct queue_figures *f)
{
    return f->capacity ? 100.0 * (double)f->used / (double)f->capacity : 0.0;
}

static void print_queue(FILE *out, const char *what, const struct queue_figures *f)
{
    if (f->spans > 0)
        fprintf(out, "  %-6s %8zu %10zu %6zu %6.1f%%\n", what, f->size, f->used, f->pages, fill(f));
}

void regal_arena_print_stats(regal_arena *a, FILE *out)
{
    struct snapshot snap;
    snapshot(a, &snap);
    const regal_stats *s = &snap.s;
    fprintf(out, "regal arena '%s'%s\n", snap.name[0] ? snap.name : "(unnamed)",
            snap.flags & REGAL_ARENA_SINGLE_THREAD ? " (single-thread)" : "");
    fprintf(out, "  %-6s %8s %10s %6s %7s\n", "kind", "size", "in use", "pages", "fill");
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++)
        print_queue(out, "class", &snap.classes[i]);
    for (size_t i = 0; i < snap.npools; i++)
        print_queue(out, "pool", &snap.pools[i]);
    if (snap.pools_left_out)
        fprintf(out, "  (%zu more pools)\n", snap.pools_left_out);
    fprintf(out, "  heap:  %zu chunks, %zu free runs, %zu bytes free, largest run %zu\n",
            snap.heap_chunks, snap.free_runs, snap.free_bytes, s->largest_free_run);
    fprintf(out, "  large: %zu blocks (%zu bytes mapped), %zu cached (%zu bytes)\n", snap.large,
            snap.large_bytes, snap.cached, snap.cached_bytes);
    if (snap.handles.table_slots > 0 || snap.handles.chunks > 0)
        fprintf(out,
                "  handles: %zu live, %zu region chunks (%zu bytes free), %zu huge (%zu bytes)\n",
                snap.handles.live, snap.handles.chunks, snap.handles.free_bytes, snap.handles.huge,
                snap.handles.huge_bytes);
    fprintf(out, "  total: in use %zu in %zu blocks, peak %zu, mapped %zu", s->in_use,
            s->blocks_in_use, s->peak_in_use, s->mapped);
    if (snap.limit)
        fprintf(out, " of limit %zu\n", snap.limit);
    else
        fprintf(out, " (no limit)\n");
    fprintf(out,
            "  memory: resident %zu, retained %zu, dirty %zu, free resident %zu, "
            "fragmentation %zu\n",
            s->resident, s->retained, s->dirty, s->free_resident, s->fragmentation);
    fprintf(out, "  purge: ");
    if (snap.purge_delay == RG_PURGE_DELAY_OFF)
        fprintf(out, "no delay");
    else
        fprintf(out, "delay %llu ms", (unsigned long long)snap.purge_delay);
    if (snap.purge_cap_now == RG_PURGE_CAP_OFF)
        fprintf(out, ", no cap");
    else
        fprintf(out, ", cap %zu%s", snap.purge_cap_now,
                snap.purge_cap == RG_PURGE_CAP_AUTO ? " (auto)" : "");
    fprintf(out, ", %zu bytes purged\n", s->purged);
    fprintf(out, "  calls: %zu allocs, %zu frees, %zu bytes requested\n", s->alloc_count,
            s->free_count, s->requested_total);
}

static void json_queue(FILE *out, const char *kind, const struct queue_figures *f, bool *first)
{
    if (f->spans == 0)
        return;
    fprintf(out, "%s{\"kind\":\"%s\",\"size\":%zu,\"in_use\":%zu,\"pages\":%zu,\"capacity\":%zu}",
            *first ? "" : ",", kind, f->size, f->used, f->pages, f->capacity);
    *first = false;
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(out, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

void regal_arena_print_stats_json(regal_arena *a, FILE *out)
{
    struct snapshot snap;
    snapshot(a, &snap);
    const regal_stats *s = &snap.s;
    fputs("{\"name\":", out);
    json_string(out, snap.name);
    fprintf(out,
            ",\"in_use\":%zu,\"peak_in_use\":%zu,\"mapped\":%zu,\"limit\":%zu,"
            "\"requested_total\":%zu,\"blocks_in_use\":%zu,\"alloc_count\":%zu,"
            "\"free_count\":%zu,\"largest_free_run\":%zu,",
            s->in_use, s->peak_in_use, s->mapped, snap.limit, s->requested_total, s->blocks_in_use,
            s->alloc_count, s->free_count, s->largest_free_run);
    fprintf(out,
            "\"resident\":%zu,\"retained\":%zu,\"dirty\":%zu,\"free_resident\":%zu,"
            "\"fragmentation\":%zu,\"purged\":%zu,\"purge\":{\"delay_ms\":",
            s->resident, s->retained, s->dirty, s->free_resident, s->fragmentation, s->purged);
    if (snap.purge_delay == RG_PURGE_DELAY_OFF)
        fputs("null", out);
    else
        fprintf(out, "%llu", (unsigned long long)snap.purge_delay);
    if (snap.purge_cap_now == RG_PURGE_CAP_OFF)
        fputs(",\"cap\":null},\"pages\":[", out);
    else
        fprintf(out, ",\"cap\":%zu},\"pages\":[", snap.purge_cap_now);
    bool first = true;
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++)
        json_queue(out, "class", &snap.classes[i], &first);
    for (size_t i = 0; i < snap.npools; i++)
        json_queue(out, "pool", &snap.pools[i], &first);
    fprintf(out,
            "],\"heap\":{\"chunks\":%zu,\"free_runs\":%zu,\"free_bytes\":%zu},"
            "\"large\":{\"blocks\":%zu,\"mapped\":%zu,\"cached\":%zu,\"cached_bytes\":%zu},",
            snap.heap_chunks, snap.free_runs, snap.free_bytes, snap.large, snap.large_bytes,
            snap.cached, snap.cached_bytes);
    fprintf(out,
            "\"handles\":{\"live\":%zu,\"chunks\":%zu,\"free_bytes\":%zu,\"huge\":%zu,"
            "\"huge_bytes\":%zu,\"table_slots\":%zu}}\n",
            snap.handles.live, snap.handles.chunks, snap.handles.free_bytes, snap.handles.huge,
            snap.handles.huge_bytes, snap.handles.table_slots);
}

/* REGAL_OPTIONS=stats: the default arena's figures at exit; leaks: its
 * live blocks. */
__attribute__((destructor)) static void print_at_exit(void)
{
    const struct rg_options *o = rg_options();
    if (o->leaks)
        rg_track_leak_report(regal_default_arena(), "at exit");
    if (!o->stats)
        return;
    regal_arena *a = regal_default_arena();
    FILE *out = o->stats_fd >= 0 ? fdopen(o->stats_fd, "w") : NULL;
    if (out == NULL)
        out = stderr;
    if (o->stats_json)
        regal_arena_print_stats_json(a, out);
    else
        regal_arena_print_stats(a, out);
    fflush(out);
}
