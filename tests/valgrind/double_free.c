/*
 * Planted bug: frees a 24-byte block twice ("double"), or frees a pointer
 * 8 bytes inside it before freeing it properly ("interior").
 * usage: double_free double|interior
 * memcheck: "Invalid free()", "0 bytes inside a block of size 24 free'd"
 * (double) or "8 bytes inside a block of size 24 alloc'd" (interior); regal
 * adds its own "regal: ..." line on stderr.
 */
#include "vgtest.h"

int main(int argc, char **argv)
{
    const char *mode = t_str_arg(argc, argv, 1, "double");
    int interior = strcmp(mode, "interior") == 0;
    if (!interior && strcmp(mode, "double") != 0) {
        fprintf(stderr, "usage: %s double|interior\n", argv[0]);
        return 2;
    }
    t_setup();
    unsigned char *p = t_check(T_ALLOC(24), "alloc");
    t_sink = p;
    t_report_allocator(p);
    memset(p, 0xab, 24);

    unsigned char *volatile q = interior ? p + 8 : p;
    if (!interior)
        T_FREE(p);
    T_FREE(q); /* the bug */
    if (interior)
        T_FREE(p);

    t_teardown();
    return 0;
}
