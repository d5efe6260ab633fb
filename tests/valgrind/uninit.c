/*
 * Planted bug: branches on a byte of a fresh malloc'd block ("malloc");
 * the same with calloc ("calloc") is correct and must report nothing (every
 * byte of the block is checked).
 * usage: uninit malloc|calloc [SIZE]   (default 24)
 * memcheck: "Conditional jump or move depends on uninitialised value(s)"
 * and, with --track-origins=yes, "Uninitialised value was created by a heap
 * allocation"; for calloc "ERROR SUMMARY: 0 errors".
 */
#include "vgtest.h"

int main(int argc, char **argv)
{
    const char *mode = t_str_arg(argc, argv, 1, "malloc");
    size_t n = t_size_arg(argc, argv, 2, 24);
    int zeroed = strcmp(mode, "calloc") == 0;
    if (!zeroed && strcmp(mode, "malloc") != 0) {
        fprintf(stderr, "usage: %s malloc|calloc [SIZE]\n", argv[0]);
        return 2;
    }
    t_setup();
    unsigned char *p = t_check(zeroed ? T_CALLOC(1, n) : T_ALLOC(n), "alloc");
    t_sink = p;
    t_report_allocator(p);

    volatile unsigned char *vp = p;
    if (zeroed) {
        size_t nonzero = 0;
        for (size_t i = 0; i < n; i++)
            if (vp[i] != 0)
                nonzero++;
        if (nonzero != 0) {
            fprintf(stderr, "vgtest: calloc block has %zu non-zero bytes\n", nonzero);
            return 1;
        }
    } else if (vp[n - 1] == 0x5a) { /* the bug */
        puts("last byte is 0x5a");
    }

    T_FREE(p);
    t_teardown();
    return 0;
}
