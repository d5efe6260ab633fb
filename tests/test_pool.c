/*
 * Unit tests of src/pool.c: regal_arena_check finds a bad entry of a
 * single-thread pool's hot stack (pool.h), which nothing outside can make.
 */
#include <criterion/criterion.h>

#include "arena.h"
#include "helpers.h"
#include "pool.h"

static regal_arena *a;
static regal_pool *p;
static void *obj[4];

static void setup(void)
{
    regal_arena_config cfg = {.flags = REGAL_ARENA_SINGLE_THREAD};
    a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    p = regal_pool_create(a, 96, 16);
    cr_assert_not_null(p);
    for (size_t i = 0; i < ARRAY_LEN(obj); i++)
        obj[i] = regal_pool_alloc(p);
    regal_pool_free(p, obj[1]);
    cr_assert_eq(p->hot_n, 1);
    cr_assert_eq(regal_arena_check(a), 0);
}

static void teardown(void)
{
    regal_arena_destroy(a);
}

TestSuite(pool_hot, .init = setup, .fini = teardown);

/* Checks a and expects one report of a bad hot stack. */
static void check_fails(void)
{
    error_log log;
    error_log_install(&log);
    int rc = regal_arena_check(a);
    error_log_remove();
    cr_assert_neq(rc, 0);
    cr_assert_geq(log.count, 1);
}

Test(pool_hot, an_entry_with_another_slot_fails_the_check)
{
    p->hot.slot[0] ^= 1;
    check_fails();
    p->hot.slot[0] ^= 1;
    cr_assert_eq(regal_arena_check(a), 0);
}

Test(pool_hot, an_entry_whose_object_is_live_fails_the_check)
{
    p->hot.obj[0] = obj[2];
    check_fails();
    p->hot.obj[0] = obj[1];
    cr_assert_eq(regal_arena_check(a), 0);
}

Test(pool_hot, an_entry_outside_regal_fails_the_check)
{
    static _Alignas(16) char elsewhere[96];
    p->hot.obj[0] = elsewhere;
    check_fails();
    p->hot.obj[0] = obj[1];
    cr_assert_eq(regal_arena_check(a), 0);
}
