/*
 * Planted bug: three 100-byte blocks lose their only pointer (it is
 * overwritten); a 48-byte block stays reachable from a global.  Nothing is
 * freed (the arena variant does not destroy its arena, which is kept in a
 * global too).
 * memcheck --leak-check=full: "definitely lost: 300 bytes in 3 blocks", one
 * loss record "300 bytes in 3 blocks are definitely lost" whose stack names
 * the allocation function and make_lost; the 48-byte block is not lost.
 */
#include "vgtest.h"

static void *reachable; /* a root: its block is still reachable at exit */

__attribute__((noinline)) static void make_lost(void)
{
    unsigned char *volatile p = NULL;
    for (int i = 0; i < 3; i++) {
        p = t_check(T_ALLOC(100), "alloc"); /* overwrites the only pointer */
        memset(p, 0xab, 100);
    }
    p = NULL;
}

__attribute__((noinline)) static void make_reachable(void)
{
    reachable = t_check(T_ALLOC(48), "alloc");
    memset(reachable, 0xcd, 48);
}

/* Scrubs stack below the callers so no stale copy of a lost pointer survives. */
__attribute__((noinline)) static void scrub_stack(void)
{
    volatile unsigned char junk[4096];
    memset((void *)junk, 0, sizeof junk);
}

int main(void)
{
    t_setup();
    make_reachable();
    t_report_allocator(reachable);
    make_lost();
    scrub_stack();
    return 0;
}
