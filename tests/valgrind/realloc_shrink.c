/*
 * Planted bug: shrinks a block with realloc, then reads one byte past the
 * new end.  The kept bytes are checked first (they must still be defined).
 * usage: realloc_shrink OLD NEW   (default 100 40)
 * memcheck: "Invalid read of size 1", "0 bytes after a block of size NEW alloc'd".
 */
#include "vgtest.h"

int main(int argc, char **argv)
{
    size_t old = t_size_arg(argc, argv, 1, 100);
    size_t n = t_size_arg(argc, argv, 2, 40);
    if (n == 0 || n >= old) {
        fprintf(stderr, "usage: %s OLD NEW with 0 < NEW < OLD\n", argv[0]);
        return 2;
    }
    t_setup();
    unsigned char *p = t_check(T_ALLOC(old), "alloc");
    t_report_allocator(p);
    memset(p, 0xab, old);
    p = t_check(T_REALLOC(p, n), "realloc");
    t_sink = p;

    volatile unsigned char *vp = p;
    for (size_t i = 0; i < n; i++) {
        if (vp[i] != 0xab) {
            fprintf(stderr, "vgtest: byte %zu lost by realloc\n", i);
            return 1;
        }
    }
    T_GUARDED(t_byte = vp[n]); /* the bug */

    T_FREE(p);
    t_teardown();
    return 0;
}
