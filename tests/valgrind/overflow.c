/*
 * Planted bug: writes one byte past the end of a block.
 * usage: overflow [SIZE]   (default 24)
 * memcheck: "Invalid write of size 1", "0 bytes after a block of size SIZE alloc'd".
 */
#include "vgtest.h"

int main(int argc, char **argv)
{
    size_t n = t_size_arg(argc, argv, 1, 24);
    t_setup();
    unsigned char *p = t_check(T_ALLOC(n), "alloc");
    t_sink = p;
    t_report_allocator(p);
    memset(p, 0xab, n);

    volatile unsigned char *vp = p;
    T_GUARDED(vp[n] = 1); /* the bug */

    T_FREE(p);
    t_teardown();
    return 0;
}
