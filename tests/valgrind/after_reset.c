/*
 * Planted bug: reads blocks of 24 bytes, 100 KiB and 2 MiB after
 * regal_arena_reset or regal_arena_destroy released them.
 * usage: after_reset reset|destroy
 * The shim variant has no arenas: it frees the three blocks instead, the
 * same bug as glibc sees it (the grounding run).
 * memcheck, three times: "Invalid read of size 1", "0 bytes inside a block of
 * size SIZE free'd".
 */
#include "vgtest.h"

static const size_t sizes[3] = {24, 100 * 1024, 2 * 1024 * 1024};

int main(int argc, char **argv)
{
    const char *mode = t_str_arg(argc, argv, 1, "reset");
    unsigned char *volatile p[3]; /* volatile: read again after the frees */
    int destroy = strcmp(mode, "destroy") == 0;
    if (!destroy && strcmp(mode, "reset") != 0) {
        fprintf(stderr, "usage: %s reset|destroy\n", argv[0]);
        return 2;
    }

    t_setup();
    for (int i = 0; i < 3; i++) {
        p[i] = t_check(T_ALLOC(sizes[i]), "alloc");
        memset(p[i], 0xab, sizes[i]);
    }
    t_sink = p[0];
    t_report_allocator(p[0]);

#ifdef USE_SHIM
    for (int i = 0; i < 3; i++)
        T_FREE(p[i]);
#else
    if (destroy) {
        regal_arena_destroy(t_arena);
        t_arena = NULL;
    } else {
        regal_arena_reset(t_arena);
    }
#endif

    volatile unsigned char *v0 = p[0], *v1 = p[1], *v2 = p[2];
    T_GUARDED(t_byte = v0[0]); /* the bug, three times */
    T_GUARDED(t_byte = v1[0]);
    T_GUARDED(t_byte = v2[0]);

#ifndef USE_SHIM
    if (!destroy)
        t_teardown();
#endif
    return 0;
}
