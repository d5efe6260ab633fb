/*
 * entity_pool: game entities in fixed-size pools, spawned and despawned
 * every tick.
 *
 * Three kinds of entity of different sizes (bullets, monsters, vehicles)
 * each get a regal_pool in one single-thread arena.  Every tick some
 * entities run out of time to live and go back to their pool with
 * regal_pool_free(), in random order, and new ones are spawned with
 * regal_pool_alloc(); monsters also fire bullets.  Each kind has a cap on
 * live entities, which the level start (tick 0) fills at once.  Every
 * LEVEL_TICKS ticks the level changes: regal_pool_reset() drops every entity
 * of a pool at once and the new level fills the caps again.
 *
 * A pool hands out a freed slot again in O(1), so after the level start the
 * pools need no new memory: stats.mapped stays flat across ticks and level
 * changes, and the entities spawned during play land on addresses that
 * earlier, despawned entities had.  The program counts those reuses with a
 * set of every address ever handed out, and exits non-zero when mapped grows
 * after tick WARM_TICK, when fewer than MIN_REUSE_PCT of the spawns during
 * play (level fills excluded) reuse a slot, when an allocation fails or when
 * regal_arena_check() finds a problem.  Under memcheck, whose quarantine
 * delays reuse on purpose, only the last two are checked.
 */
#include <errno.h>
#include <inttypes.h>
#include <regal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICKS         1000
#define WARM_TICK     1   /* mapped is compared against the value after this tick */
#define LEVEL_TICKS   250 /* the level changes: every pool is reset */
#define CHECK_EVERY   100 /* ticks between regal_arena_check() walks */
#define MIN_REUSE_PCT 99.0
#define FIRE_ONE_IN   8 /* a monster fires a bullet on one tick in 8 */
#define KIB           1024u

/* Every entity starts with this header, so one set of functions handles all
 * three kinds. */
struct ent {
    float pos[2], vel[2];
    uint32_t ttl; /* ticks left to live */
    uint32_t id;
};

struct bullet {
    struct ent e;
    float damage;
    uint32_t owner;
};

struct monster {
    struct ent e;
    float health, armor;
    uint32_t target, state;
    char name[32];
    float path[8][2];
};

struct vehicle {
    struct ent e;
    float rot[4];
    float wheel[4][6];
    char plate[16];
    uint32_t passengers[8];
    float fuel;
};

/* Every address a kind's pool ever handed out: open addressing. */
struct addr_set {
    uintptr_t *slots;
    size_t cap, count; /* cap is a power of two */
};

struct kind {
    const char *name;
    size_t size, align, cap;   /* cap: most live entities */
    uint32_t ttl_min, ttl_max; /* ticks */
    size_t spawn_max;          /* most spontaneous spawns per tick */
    regal_pool *pool;
    struct ent **live;
    size_t nlive;
    size_t spawned, despawned, cleared; /* cleared: by a pool reset */
    size_t spawned_play, reused_play;   /* after WARM_TICK, level fills excluded */
    struct addr_set seen;
};

enum { BULLET, MONSTER, VEHICLE, KINDS };

#define KIND(type, cap_, ttl_lo, ttl_hi, spawns)                                                   \
    {                                                                                              \
        .name = #type "s", .size = sizeof(struct type), .align = _Alignof(struct type),            \
        .cap = (cap_), .ttl_min = (ttl_lo), .ttl_max = (ttl_hi), .spawn_max = (spawns)             \
    }

/* cap, time to live (ticks), most spontaneous spawns per tick */
static struct kind kinds[KINDS] = {
    [BULLET] = KIND(bullet, 3000, 3, 40, 60),
    [MONSTER] = KIND(monster, 400, 20, 300, 3),
    [VEHICLE] = KIND(vehicle, 48, 30, 200, 1),
};

static uint64_t rng_state = 0x0e17171e5eed0001u;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint32_t rng_range(uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)(rng_next() % (hi - lo + 1));
}

static float rng_float(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rng_next() >> 40) / (float)(1u << 24);
}

/* Under memcheck, regal holds freed blocks in a quarantine before reusing
 * their memory (README, "Valgrind"), so reuse is not expected there: the
 * figures are printed but not checked.  memcheck preloads its own library. */
static bool under_memcheck(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload != NULL && strstr(preload, "vgpreload_memcheck") != NULL;
}

static _Noreturn void fail(const char *what, const char *kind)
{
    fprintf(stderr, "entity_pool: %s (%s) failed: %s\n", what, kind, strerror(errno));
    exit(EXIT_FAILURE);
}

/* ---- the address set ---------------------------------------------------- */

static size_t addr_hash(uintptr_t p, size_t cap)
{
    return (size_t)(((uint64_t)p * 0x9e3779b97f4a7c15u) >> 17) & (cap - 1);
}

/* Adds p; returns true when p was already there. */
static bool addr_seen_before(struct addr_set *s, regal_arena *book, uintptr_t p)
{
    size_t i = addr_hash(p, s->cap);
    for (; s->slots[i] != 0; i = (i + 1) & (s->cap - 1))
        if (s->slots[i] == p)
            return true;
    s->slots[i] = p;
    if (++s->count * 2 > s->cap) { /* keep the table at most half full */
        struct addr_set big = {regal_calloc(book, 2 * s->cap, sizeof *big.slots), 2 * s->cap, 0};
        if (!big.slots)
            fail("regal_calloc", "address set");
        for (size_t k = 0; k < s->cap; k++)
            if (s->slots[k] != 0)
                addr_seen_before(&big, book, s->slots[k]);
        regal_free(s->slots);
        *s = big;
    }
    return false;
}

/* ---- spawning and despawning -------------------------------------------- */

static uint32_t next_id;

static void spawn(struct kind *k, regal_arena *book, bool play)
{
    struct ent *e = regal_pool_alloc(k->pool);
    if (!e)
        fail("regal_pool_alloc", k->name);
    memset(e, 0, k->size);
    e->pos[0] = rng_float(-500.0f, 500.0f);
    e->pos[1] = rng_float(-500.0f, 500.0f);
    e->vel[0] = rng_float(-3.0f, 3.0f);
    e->vel[1] = rng_float(-3.0f, 3.0f);
    e->ttl = rng_range(k->ttl_min, k->ttl_max);
    e->id = ++next_id;
    k->live[k->nlive++] = e;
    k->spawned++;
    bool reused = addr_seen_before(&k->seen, book, (uintptr_t)e);
    if (play) {
        k->spawned_play++;
        k->reused_play += reused;
    }
}

/* Moves every entity of k; the ones whose time is up go back to the pool. */
static void update(struct kind *k)
{
    for (size_t i = 0; i < k->nlive;) {
        struct ent *e = k->live[i];
        e->pos[0] += e->vel[0];
        e->pos[1] += e->vel[1];
        if (--e->ttl > 0) {
            i++;
            continue;
        }
        regal_pool_free(k->pool, e);
        k->despawned++;
        k->live[i] = k->live[--k->nlive]; /* order does not matter */
    }
}

/* The level start: every kind filled up to its cap. */
static void level_start(regal_arena *book)
{
    for (int i = 0; i < KINDS; i++)
        while (kinds[i].nlive < kinds[i].cap)
            spawn(&kinds[i], book, false);
}

static void level_clear(void)
{
    for (int i = 0; i < KINDS; i++) {
        regal_pool_reset(kinds[i].pool); /* every entity at once */
        kinds[i].cleared += kinds[i].nlive;
        kinds[i].nlive = 0;
    }
}

static void tick_run(regal_arena *book, int tick)
{
    for (int i = 0; i < KINDS; i++)
        update(&kinds[i]);

    struct kind *bullets = &kinds[BULLET];
    size_t fire = 0;
    for (size_t i = 0; i < kinds[MONSTER].nlive; i++)
        fire += rng_next() % FIRE_ONE_IN == 0;
    for (size_t n = 0; n < fire && bullets->nlive < bullets->cap; n++)
        spawn(bullets, book, tick > WARM_TICK);

    for (int i = 0; i < KINDS; i++) {
        size_t n = rng_range(0, (uint32_t)kinds[i].spawn_max);
        for (; n > 0 && kinds[i].nlive < kinds[i].cap; n--)
            spawn(&kinds[i], book, tick > WARM_TICK);
    }
}

int main(void)
{
    regal_arena_config cfg = {.name = "entities", .limit = 0, .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *arena = regal_arena_create(&cfg);
    /* The example's own bookkeeping lives elsewhere, so that the figures of
     * "entities" are the pools' alone. */
    regal_arena_config book_cfg = {
        .name = "bookkeeping", .limit = 0, .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *book = regal_arena_create(&book_cfg);
    if (!arena || !book)
        fail("regal_arena_create", "entities");

    for (int i = 0; i < KINDS; i++) {
        struct kind *k = &kinds[i];
        k->pool = regal_pool_create(arena, k->size, k->align);
        k->live = regal_calloc(book, k->cap, sizeof *k->live);
        k->seen.cap = 1024;
        k->seen.slots = regal_calloc(book, k->seen.cap, sizeof *k->seen.slots);
        if (!k->pool)
            fail("regal_pool_create", k->name);
        if (!k->live || !k->seen.slots)
            fail("regal_calloc", k->name);
    }

    int status = EXIT_SUCCESS;
    size_t mapped_warm = 0, mapped_max = 0, live_max = 0;
    regal_stats st;
    for (int tick = 0; tick < TICKS; tick++) {
        if (tick > 0 && tick % LEVEL_TICKS == 0)
            level_clear();
        if (tick % LEVEL_TICKS == 0)
            level_start(book);
        else
            tick_run(book, tick);

        size_t live = 0;
        for (int i = 0; i < KINDS; i++)
            live += kinds[i].nlive;
        live_max = live > live_max ? live : live_max;
        regal_arena_stats(arena, &st);
        if (tick == WARM_TICK)
            mapped_warm = st.mapped;
        if (tick >= WARM_TICK && st.mapped > mapped_max)
            mapped_max = st.mapped;
        if (tick % CHECK_EVERY == CHECK_EVERY - 1 && regal_arena_check(arena) != 0) {
            fprintf(stderr, "entity_pool: tick %d: regal_arena_check failed\n", tick);
            status = EXIT_FAILURE;
        }
    }

    size_t spawned_play = 0, reused_play = 0;
    printf("entity_pool: %d ticks, a new level (pool reset) every %d, %zu live at most\n", TICKS,
           LEVEL_TICKS, live_max);
    for (int i = 0; i < KINDS; i++) {
        struct kind *k = &kinds[i];
        printf("%-8s %3zu B: %6zu spawned, %6zu despawned, %4zu cleared, %4zu distinct slots\n",
               k->name, k->size, k->spawned, k->despawned, k->cleared, k->seen.count);
        spawned_play += k->spawned_play;
        reused_play += k->reused_play;
    }
    double reuse_pct = spawned_play ? 100.0 * (double)reused_play / (double)spawned_play : 0.0;
    printf("spawns during play: %zu, %zu on a slot freed earlier (%.2f%%)\n", spawned_play,
           reused_play, reuse_pct);
    printf("mapped: tick %d %zu KiB, max after %zu KiB, end %zu KiB\n", WARM_TICK,
           mapped_warm / KIB, mapped_max / KIB, st.mapped / KIB);

    bool enforce = !under_memcheck();
    if (!enforce)
        puts("entity_pool: under memcheck (quarantine): reuse and mapped not checked");
    if (enforce && mapped_max > mapped_warm) {
        fprintf(stderr, "entity_pool: mapped grew from %zu to %zu bytes after tick %d\n",
                mapped_warm, mapped_max, WARM_TICK);
        status = EXIT_FAILURE;
    }
    if (enforce && reuse_pct < MIN_REUSE_PCT) {
        fprintf(stderr, "entity_pool: only %.2f%% of the spawns reused a slot (want %.0f%%)\n",
                reuse_pct, MIN_REUSE_PCT);
        status = EXIT_FAILURE;
    }
    if (regal_arena_check(arena) != 0) {
        fprintf(stderr, "entity_pool: regal_arena_check failed at exit\n");
        status = EXIT_FAILURE;
    }
    for (int i = 0; i < KINDS; i++)
        regal_pool_destroy(kinds[i].pool);
    regal_arena_destroy(arena);
    regal_arena_destroy(book);
    puts(status == EXIT_SUCCESS ? "entity_pool: ok" : "entity_pool: FAILED");
    return status;
}
