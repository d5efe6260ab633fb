/*
 * Planted bug: reads a block after freeing it, after AFTER more allocations
 * of the same size (memory handed out again at once would hide the bug).
 * usage: uaf [SIZE [AFTER]]   (default 24 8; AFTER at most 8)
 * memcheck: "Invalid read of size 1", "0 bytes inside a block of size SIZE free'd".
 */
#include "vgtest.h"

enum { MAX_AFTER = 8 };

int main(int argc, char **argv)
{
    size_t n = t_size_arg(argc, argv, 1, 24);
    size_t after = t_size_arg(argc, argv, 2, MAX_AFTER);
    unsigned char *later[MAX_AFTER];
    if (after > MAX_AFTER)
        after = MAX_AFTER;
    t_setup();
    unsigned char *p = t_check(T_ALLOC(n), "alloc");
    t_sink = p;
    t_report_allocator(p);
    memset(p, 0xab, n);
    T_FREE(p);
    for (size_t i = 0; i < after; i++) {
        later[i] = t_check(T_ALLOC(n), "alloc");
        memset(later[i], 0xcd, n);
    }

    volatile unsigned char *vp = t_sink; /* p, laundered past the free */
    T_GUARDED(t_byte = vp[0]);           /* the bug */

    for (size_t i = 0; i < after; i++)
        T_FREE(later[i]);
    t_teardown();
    return 0;
}
