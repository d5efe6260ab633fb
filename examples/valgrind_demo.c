/*
 * valgrind_demo: two deliberate bugs in arena memory, for Valgrind memcheck
 * to find.
 *
 *   1. a write one byte past the end of a 24-byte block;
 *   2. a read of a block after regal_arena_reset() released it.
 *
 * Run natively, neither bug does harm: the stray byte lands in the unused
 * tail of the block's 32-byte slot, and a reset arena keeps its memory
 * mapped.  The program runs to the end and checks that the arena is still
 * consistent.  Run under memcheck, regal describes every block (a redzone
 * after it, and the reset frees it), so memcheck reports both bugs as it
 * would for malloc'd memory:
 *
 *   valgrind ./valgrind_demo
 *     Invalid write of size 1 ... 0 bytes after a block of size 24 alloc'd
 *     Invalid read of size 1 ... 0 bytes inside a block of size 24 free'd
 *                                (the free'ing stack is regal_arena_reset)
 *
 * Its test runs it under valgrind --error-exitcode=7 and expects failure.
 */
#include <regal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE 24

/* volatile: the compiler must keep the buggy accesses. */
static volatile unsigned char sink;

int main(void)
{
    regal_arena_config cfg = {.name = "demo", .limit = 0, .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *arena = regal_arena_create(&cfg);
    if (!arena) {
        perror("valgrind_demo: regal_arena_create");
        return EXIT_FAILURE;
    }
    unsigned char *name = regal_alloc(arena, SIZE);
    if (!name) {
        perror("valgrind_demo: regal_alloc");
        return EXIT_FAILURE;
    }
    memset(name, 'x', SIZE);

    volatile unsigned char *p = name;
    printf("valgrind_demo: bug 1: writing byte %d of a %d-byte block\n", SIZE, SIZE);
    p[SIZE] = '\0'; /* BUG: one past the end (a forgotten terminator) */

    regal_arena_reset(arena);
    printf("valgrind_demo: bug 2: reading the block after regal_arena_reset\n");
    sink = p[0]; /* BUG: the reset freed it */

    int status = EXIT_SUCCESS;
    if (regal_arena_check(arena) != 0) {
        fprintf(stderr, "valgrind_demo: regal_arena_check failed\n");
        status = EXIT_FAILURE;
    }
    regal_arena_destroy(arena);
    printf("valgrind_demo: %s; run it under valgrind to see both bugs reported\n",
           status == EXIT_SUCCESS ? "ran to the end" : "FAILED");
    return status;
}
