/*
 * Statistics: the struct, a text table and JSON.  Per-class figures are
 * derived from the page queues when printed, so the fast paths only count
 * totals (stats.h).
 */
#include "stats.h"

#include <inttypes.h>

#include "heap.h"
#include "large.h"
#include "options.h"
#include "pool.h"

void regal_arena_stats(regal_arena *a, regal_stats *out)
{
    rg_arena_lock(a);
    out->in_use = a->st.in_use;
    out->peak_in_use = a->st.peak_in_use;
    out->mapped = a->mapped;
    out->requested_total = a->st.requested_total;
    out->blocks_in_use = a->st.blocks_in_use;
    out->alloc_count = a->st.alloc_count;
    out->free_count = a->st.free_count;
    out->largest_free_run = rg_heap_largest_free(&a->heap);
    rg_arena_unlock(a);
}

struct queue_figures {
    size_t spans, pages, used, capacity;
};

static struct queue_figures queue_figures(const struct rg_pageq *q)
{
    struct queue_figures f = {0};
    const struct rg_page *lists[2] = {q->avail, q->full};
    for (int l = 0; l < 2; l++) {
        for (const struct rg_page *pg = lists[l]; pg != NULL; pg = pg->next) {
            f.spans++;
            f.pages += pg->span;
            f.used += pg->used;
            f.capacity += pg->capacity;
        }
    }
    return f;
}

struct heap_figures {
    size_t free_blocks, free_bytes, chunks;
};

static struct heap_figures heap_figures(const regal_arena *a)
{
    struct heap_figures f = {0};
    for (const struct rg_chunk *c = a->heaps; c != NULL; c = c->next)
        f.chunks++;
    for (unsigned i = 0; i < RG_FL_COUNT; i++)
        for (unsigned j = 0; j < RG_SL_COUNT; j++)
            for (const struct rg_hblock *b = a->heap.heads[i][j]; b != NULL; b = b->next_free) {
                f.free_blocks++;
                f.free_bytes += b->size & ~RG_HB_FLAGS;
            }
    return f;
}

static size_t count_chunks(const struct rg_chunk *c, size_t *bytes)
{
    size_t n = 0;
    for (; c != NULL; c = c->next, n++)
        if (bytes)
            *bytes += c->map_size;
    return n;
}

static void print_queue(FILE *out, const char *what, size_t size, const struct rg_pageq *q)
{
    struct queue_figures f = queue_figures(q);
    if (f.spans == 0)
        return;
    fprintf(out, "  %-6s %8zu %10zu %6zu %6.1f%%\n", what, size, f.used, f.pages,
            f.capacity ? 100.0 * (double)f.used / (double)f.capacity : 0.0);
}

void regal_arena_print_stats(regal_arena *a, FILE *out)
{
    regal_stats s;
    regal_arena_stats(a, &s);
    rg_arena_lock(a);
    fprintf(out, "regal arena '%s'%s\n", a->name[0] ? a->name : "(unnamed)",
            a->flags & REGAL_ARENA_SINGLE_THREAD ? " (single-thread)" : "");
    fprintf(out, "  %-6s %8s %10s %6s %7s\n", "kind", "size", "in use", "pages", "fill");
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++)
        print_queue(out, "class", rg_class_size[i], &a->classes[i]);
    for (const regal_pool *p = a->pools; p != NULL; p = p->next)
        print_queue(out, "pool", p->object_size, &p->q);
    struct heap_figures h = heap_figures(a);
    size_t large_bytes = 0, cache_bytes = 0;
    size_t large = count_chunks(a->large, &large_bytes);
    size_t cached = count_chunks(a->large_cache, &cache_bytes);
    fprintf(out, "  heap:  %zu chunks, %zu free runs, %zu bytes free, largest run %zu\n", h.chunks,
            h.free_blocks, h.free_bytes, s.largest_free_run);
    fprintf(out, "  large: %zu blocks (%zu bytes mapped), %zu cached (%zu bytes)\n", large,
            large_bytes, cached, cache_bytes);
    fprintf(out, "  total: in use %zu in %zu blocks, peak %zu, mapped %zu%s\n", s.in_use,
            s.blocks_in_use, s.peak_in_use, s.mapped, a->limit ? "" : " (no limit)");
    fprintf(out, "  calls: %zu allocs, %zu frees, %zu bytes requested\n", s.alloc_count,
            s.free_count, s.requested_total);
    rg_arena_unlock(a);
}

static void json_queue(FILE *out, const char *kind, size_t size, const struct rg_pageq *q,
                       bool *first)
{
    struct queue_figures f = queue_figures(q);
    if (f.spans == 0)
        return;
    fprintf(out, "%s{\"kind\":\"%s\",\"size\":%zu,\"in_use\":%zu,\"pages\":%zu,\"capacity\":%zu}",
            *first ? "" : ",", kind, size, f.used, f.pages, f.capacity);
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
    regal_stats s;
    regal_arena_stats(a, &s);
    rg_arena_lock(a);
    fputs("{\"name\":", out);
    json_string(out, a->name);
    fprintf(out,
            ",\"in_use\":%zu,\"peak_in_use\":%zu,\"mapped\":%zu,\"limit\":%zu,"
            "\"requested_total\":%zu,\"blocks_in_use\":%zu,\"alloc_count\":%zu,"
            "\"free_count\":%zu,\"largest_free_run\":%zu,\"pages\":[",
            s.in_use, s.peak_in_use, s.mapped, a->limit, s.requested_total, s.blocks_in_use,
            s.alloc_count, s.free_count, s.largest_free_run);
    bool first = true;
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++)
        json_queue(out, "class", rg_class_size[i], &a->classes[i], &first);
    for (const regal_pool *p = a->pools; p != NULL; p = p->next)
        json_queue(out, "pool", p->object_size, &p->q, &first);
    struct heap_figures h = heap_figures(a);
    size_t large_bytes = 0, cache_bytes = 0;
    size_t large = count_chunks(a->large, &large_bytes);
    size_t cached = count_chunks(a->large_cache, &cache_bytes);
    fprintf(out,
            "],\"heap\":{\"chunks\":%zu,\"free_runs\":%zu,\"free_bytes\":%zu},"
            "\"large\":{\"blocks\":%zu,\"mapped\":%zu,\"cached\":%zu,\"cached_bytes\":%zu}}\n",
            h.chunks, h.free_blocks, h.free_bytes, large, large_bytes, cached, cache_bytes);
    rg_arena_unlock(a);
}

/* REGAL_OPTIONS=stats: the default arena's figures at exit, if it exists. */
__attribute__((destructor)) static void print_at_exit(void)
{
    const struct rg_options *o = rg_options();
    if (!o->stats)
        return;
    regal_arena *a = regal_default_arena();
    if (o->stats_json)
        regal_arena_print_stats_json(a, stderr);
    else
        regal_arena_print_stats(a, stderr);
}
