/*
 * Planted bug: reads a 40-byte pool object after it was released by
 * regal_pool_free (then eight more objects taken from the pool),
 * regal_pool_reset or regal_pool_destroy.
 * usage: pool_uaf free|reset|destroy
 * The shim variant has no pools: it mallocs and frees a 40-byte block, the
 * same bug as glibc sees it (the grounding run).
 * memcheck: "Invalid read of size 1", "0 bytes inside a block of size 40 free'd".
 */
#include "vgtest.h"

enum { OBJ = 40, AFTER = 8 };

int main(int argc, char **argv)
{
    const char *mode = t_str_arg(argc, argv, 1, "free");
    if (strcmp(mode, "free") != 0 && strcmp(mode, "reset") != 0 && strcmp(mode, "destroy") != 0) {
        fprintf(stderr, "usage: %s free|reset|destroy\n", argv[0]);
        return 2;
    }
    t_setup();
#ifdef USE_SHIM
    unsigned char *o = t_check(malloc(OBJ), "malloc");
    t_report_allocator(o);
    memset(o, 0xab, OBJ);
    t_sink = o;
    free(o);
#else
    regal_pool *pool = t_check(regal_pool_create(t_arena, OBJ, 8), "regal_pool_create");
    unsigned char *o = t_check(regal_pool_alloc(pool), "regal_pool_alloc");
    unsigned char *keep = t_check(regal_pool_alloc(pool), "regal_pool_alloc");
    t_report_allocator(o);
    memset(o, 0xab, OBJ);
    memset(keep, 0xab, OBJ);
    if (strcmp(mode, "free") == 0) {
        regal_pool_free(pool, o);
        for (int i = 0; i < AFTER; i++)
            memset(t_check(regal_pool_alloc(pool), "regal_pool_alloc"), 0xcd, OBJ);
    } else if (strcmp(mode, "reset") == 0) {
        regal_pool_reset(pool);
    } else {
        regal_pool_destroy(pool);
    }
    t_sink = o;
#endif

    volatile unsigned char *vo = t_sink; /* o, laundered past the free */
    T_GUARDED(t_byte = vo[0]);           /* the bug */

    t_teardown();
    return 0;
}
