/*
 * frame_arena: a game-style frame loop on one arena that is reset every frame.
 *
 * Each frame builds throw-away data the way a renderer or a particle system
 * would: a pool of particles that are simulated, die and respawn; a growing
 * list of draw commands that is sorted; debug labels of varying length, some
 * freed as soon as they are hashed; and a few medium buffers of 20-200 KiB
 * (a zeroed visibility grid, an aligned vertex buffer, scratch space).  All
 * of it is folded into a checksum so the work cannot be optimised away, and
 * all of it goes at once with regal_arena_reset() at the end of the frame.
 *
 * The point of the example is that a reset arena reuses its memory: after the
 * first frames, stats.mapped must stay flat.  Frame 0 plays the level-load
 * frame and uses every maximum at once, so the arena reaches its working set
 * early; from frame 10 on, mapped may not grow by more than 10%.  The program
 * exits non-zero when it does, when an allocation fails, when a reset leaves
 * live blocks behind or when regal_arena_check() finds a problem.
 */
#include <errno.h>
#include <inttypes.h>
#include <regal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAMES         600
#define BASELINE_FRAME 10   /* mapped is compared against the value at this frame */
#define MAX_GROWTH_PCT 10.0 /* allowed growth of mapped after BASELINE_FRAME */
#define CHECK_EVERY    100  /* frames between regal_arena_check() walks */
#define KIB            1024u

/* Per-frame workload bounds; frame 0 uses every maximum. */
#define PARTICLES_MIN 500
#define PARTICLES_MAX 4000
#define COMMANDS_MIN  100
#define COMMANDS_MAX  1500
#define LABELS_MIN    50
#define LABELS_MAX    400
#define LABEL_LEN_MIN 8
#define LABEL_LEN_MAX 300
#define MEDIUM_MIN    1
#define MEDIUM_MAX    6
#define MEDIUM_SZ_MIN (20 * KIB)
#define MEDIUM_SZ_MAX (200 * KIB)

struct particle {
    float pos[3];
    float vel[3];
    float life;
    uint32_t color;
};

struct draw_cmd {
    uint64_t key; /* material and depth, the order the renderer submits in */
    uint32_t mesh;
    uint32_t first_index;
    uint32_t index_count;
    float depth;
};

/* What one frame allocated: every successful call counts, including the
 * replacements of dead particles and the growth steps of the command list. */
struct tally {
    size_t blocks;
    size_t bytes;
};

/* splitmix64: a fixed seed keeps the run (and its checksum) reproducible. */
static uint64_t rng_state = 0x5eed0f12a3e9b7c1u;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static size_t rng_range(size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next() % (hi - lo + 1));
}

static float rng_float(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rng_next() >> 40) / (float)(1u << 24);
}

static size_t pick(int frame, size_t lo, size_t hi)
{
    return frame == 0 ? hi : rng_range(lo, hi);
}

/* An allocation that returned NULL: the example cannot go on. */
static _Noreturn void fail(int frame, const char *what, size_t size)
{
    fprintf(stderr, "frame_arena: frame %d: %s(%zu) failed: %s\n", frame, what, size,
            strerror(errno));
    exit(EXIT_FAILURE);
}

/* A block that breaks the API contract (not zeroed, misaligned). */
static _Noreturn void broken(int frame, const char *what, size_t size)
{
    fprintf(stderr, "frame_arena: frame %d: %s block of %zu bytes\n", frame, what, size);
    exit(EXIT_FAILURE);
}

static void *frame_alloc(regal_arena *a, size_t size, struct tally *t, int frame)
{
    void *p = regal_alloc(a, size);
    if (!p)
        fail(frame, "regal_alloc", size);
    t->blocks++;
    t->bytes += size;
    return p;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3u;
}

static void particle_spawn(struct particle *p)
{
    for (int k = 0; k < 3; k++) {
        p->pos[k] = rng_float(-10.0f, 10.0f);
        p->vel[k] = rng_float(-2.0f, 2.0f);
    }
    p->vel[1] += 4.0f;
    p->life = rng_float(0.02f, 1.5f);
    p->color = (uint32_t)rng_next();
}

/* Particles live in a pool made for this frame; the reset takes the pool. */
static uint64_t run_particles(regal_arena *a, int frame, struct tally *t)
{
    const float dt = 1.0f / 60.0f;
    size_t n = pick(frame, PARTICLES_MIN, PARTICLES_MAX);
    regal_pool *pool = regal_pool_create(a, sizeof(struct particle), 0);
    if (!pool)
        fail(frame, "regal_pool_create", sizeof(struct particle));
    struct particle **ps = frame_alloc(a, n * sizeof *ps, t, frame);

    for (size_t i = 0; i < n; i++) {
        ps[i] = regal_pool_alloc(pool);
        if (!ps[i])
            fail(frame, "regal_pool_alloc", sizeof(struct particle));
        t->blocks++;
        t->bytes += sizeof(struct particle);
        particle_spawn(ps[i]);
    }
    for (int step = 0; step < 4; step++) {
        for (size_t i = 0; i < n; i++) {
            struct particle *p = ps[i];
            p->vel[1] -= 9.81f * dt;
            for (int k = 0; k < 3; k++)
                p->pos[k] += p->vel[k] * dt;
            p->life -= dt;
            if (p->life > 0.0f)
                continue;
            /* A dead particle goes back to the pool and a new one takes its
             * slot, as an emitter would do. */
            regal_pool_free(pool, p);
            ps[i] = regal_pool_alloc(pool);
            if (!ps[i])
                fail(frame, "regal_pool_alloc", sizeof(struct particle));
            t->blocks++;
            t->bytes += sizeof(struct particle);
            particle_spawn(ps[i]);
        }
    }

    uint64_t h = 0;
    for (size_t i = 0; i < n; i++)
        h = mix(h, (uint64_t)(int64_t)(ps[i]->pos[0] * 1000.0f) ^ ps[i]->color);
    return h;
}

static int cmd_compare(const void *x, const void *y)
{
    const struct draw_cmd *a = x, *b = y;
    return (a->key > b->key) - (a->key < b->key);
}

/* Draw commands are collected into a list that grows with regal_realloc. */
static uint64_t run_draw_commands(regal_arena *a, int frame, struct tally *t)
{
    size_t n = pick(frame, COMMANDS_MIN, COMMANDS_MAX);
    size_t cap = 16;
    struct draw_cmd *cmds = frame_alloc(a, cap * sizeof *cmds, t, frame);

    for (size_t i = 0; i < n; i++) {
        if (i == cap) {
            struct draw_cmd *grown = regal_realloc(a, cmds, 2 * cap * sizeof *cmds);
            if (!grown)
                fail(frame, "regal_realloc", 2 * cap * sizeof *cmds);
            cmds = grown;
            cap *= 2;
            t->blocks++;
            t->bytes += cap * sizeof *cmds;
        }
        uint32_t material = (uint32_t)rng_range(0, 63);
        float depth = rng_float(0.1f, 500.0f);
        cmds[i].key = ((uint64_t)material << 32) | (uint32_t)(depth * 1000.0f);
        cmds[i].mesh = (uint32_t)rng_range(0, 999);
        cmds[i].first_index = (uint32_t)rng_range(0, 1u << 20);
        cmds[i].index_count = 3 * (uint32_t)rng_range(1, 4000);
        cmds[i].depth = depth;
    }
    qsort(cmds, n, sizeof *cmds, cmd_compare);

    uint64_t h = 0;
    for (size_t i = 0; i < n; i++)
        h = mix(h, cmds[i].key + cmds[i].mesh * i);
    return h;
}

/* Debug labels: every fourth one is a temporary, freed right after use. */
static uint64_t run_labels(regal_arena *a, int frame, struct tally *t)
{
    size_t n = pick(frame, LABELS_MIN, LABELS_MAX);
    char **labels = frame_alloc(a, n * sizeof *labels, t, frame);
    uint64_t h = 0xcbf29ce484222325u;

    for (size_t i = 0; i < n; i++) {
        size_t len = rng_range(LABEL_LEN_MIN, LABEL_LEN_MAX);
        char *s = frame_alloc(a, len + 1, t, frame);
        int head = snprintf(s, len + 1, "f%d/e%zu:", frame, i);
        if (head >= 0 && (size_t)head < len)
            memset(s + head, 'a' + (int)(i % 26), len - (size_t)head);
        s[len] = '\0';
        for (const char *c = s; *c; c++)
            h = mix(h, (unsigned char)*c);
        if (i % 4 == 3) {
            regal_free(s);
            s = NULL;
        }
        labels[i] = s;
    }
    for (size_t i = 0; i < n; i++)
        h = mix(h, labels[i] ? strlen(labels[i]) : 0);
    return h;
}

/* Medium buffers: a zeroed grid, a 64-aligned vertex buffer, scratch space. */
static uint64_t run_medium(regal_arena *a, int frame, struct tally *t)
{
    size_t n = pick(frame, MEDIUM_MIN, MEDIUM_MAX);
    uint64_t h = 0;

    for (size_t i = 0; i < n; i++) {
        size_t size = pick(frame, MEDIUM_SZ_MIN, MEDIUM_SZ_MAX) & ~(size_t)7;
        size_t words = size / sizeof(uint64_t);
        uint64_t *buf;

        if (i % 3 == 0) {
            buf = regal_calloc(a, words, sizeof *buf);
            if (!buf)
                fail(frame, "regal_calloc", size);
            for (size_t w = 0; w < words; w++)
                if (buf[w] != 0)
                    broken(frame, "non-zero regal_calloc", size);
        } else if (i % 3 == 1) {
            buf = regal_aligned_alloc(a, 64, size);
            if (!buf)
                fail(frame, "regal_aligned_alloc", size);
            if ((uintptr_t)buf % 64 != 0)
                broken(frame, "misaligned regal_aligned_alloc", size);
        } else {
            buf = regal_alloc(a, size);
            if (!buf)
                fail(frame, "regal_alloc", size);
        }
        t->blocks++;
        t->bytes += size;

        for (size_t w = 0; w < words; w++)
            buf[w] = (uint64_t)frame * w + i;
        uint64_t sum = 0;
        for (size_t w = 0; w < words; w++)
            sum += buf[w] ^ (w << 7);
        h = mix(h, sum);
    }
    return h;
}

int main(void)
{
    regal_arena_config cfg = {.name = "frame", .limit = 0, .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *arena = regal_arena_create(&cfg);
    if (!arena) {
        fprintf(stderr, "frame_arena: regal_arena_create failed: %s\n", strerror(errno));
        return EXIT_FAILURE;
    }

    uint64_t checksum = 0;
    size_t blocks_sum = 0, blocks_max = 0, bytes_sum = 0, bytes_max = 0, in_use_max = 0;
    size_t mapped_base = 0, mapped_max = 0, mapped_end = 0;
    int status = EXIT_SUCCESS;

    for (int frame = 0; frame < FRAMES; frame++) {
        struct tally t = {0, 0};
        checksum = mix(checksum, run_particles(arena, frame, &t));
        checksum = mix(checksum, run_draw_commands(arena, frame, &t));
        checksum = mix(checksum, run_labels(arena, frame, &t));
        checksum = mix(checksum, run_medium(arena, frame, &t));

        blocks_sum += t.blocks;
        bytes_sum += t.bytes;
        blocks_max = t.blocks > blocks_max ? t.blocks : blocks_max;
        bytes_max = t.bytes > bytes_max ? t.bytes : bytes_max;

        /* mapped is read at the frame's high point, just before the reset. */
        regal_stats st;
        regal_arena_stats(arena, &st);
        in_use_max = st.in_use > in_use_max ? st.in_use : in_use_max;
        if (frame == BASELINE_FRAME)
            mapped_base = st.mapped;
        if (frame >= BASELINE_FRAME && st.mapped > mapped_max)
            mapped_max = st.mapped;
        mapped_end = st.mapped;
        if (frame % CHECK_EVERY == CHECK_EVERY - 1 && regal_arena_check(arena) != 0) {
            fprintf(stderr, "frame_arena: frame %d: regal_arena_check failed\n", frame);
            status = EXIT_FAILURE;
        }

        regal_arena_reset(arena);

        regal_arena_stats(arena, &st);
        if (st.in_use != 0 || st.blocks_in_use != 0) {
            fprintf(stderr, "frame_arena: frame %d: after reset in_use %zu, blocks_in_use %zu\n",
                    frame, st.in_use, st.blocks_in_use);
            status = EXIT_FAILURE;
            break;
        }
    }

    double growth = mapped_base
                        ? 100.0 * ((double)mapped_max - (double)mapped_base) / (double)mapped_base
                        : 0.0;
    printf("frame_arena: %d frames on arena \"frame\", reset after each frame\n", FRAMES);
    printf("blocks per frame: avg %.1f, max %zu\n", (double)blocks_sum / FRAMES, blocks_max);
    printf("bytes per frame:  avg %.1f KiB, max %.1f KiB (requested)\n",
           (double)bytes_sum / FRAMES / KIB, (double)bytes_max / KIB);
    printf("in_use before reset: max %.1f KiB\n", (double)in_use_max / KIB);
    printf("mapped: frame %d %zu KiB, end %zu KiB, max since frame %d %zu KiB (%+.1f%%)\n",
           BASELINE_FRAME, mapped_base / KIB, mapped_end / KIB, BASELINE_FRAME, mapped_max / KIB,
           growth);
    printf("checksum: %016" PRIx64 "\n", checksum);

    if (growth > MAX_GROWTH_PCT) {
        fprintf(stderr, "frame_arena: mapped grew by %.1f%% after frame %d (limit %.0f%%)\n",
                growth, BASELINE_FRAME, MAX_GROWTH_PCT);
        status = EXIT_FAILURE;
    }
    if (regal_arena_check(arena) != 0) {
        fprintf(stderr, "frame_arena: regal_arena_check failed at exit\n");
        status = EXIT_FAILURE;
    }
    regal_arena_destroy(arena);
    puts(status == EXIT_SUCCESS ? "frame_arena: ok" : "frame_arena: FAILED");
    return status;
}
