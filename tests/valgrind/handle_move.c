/*
 * A handle block that compaction moves stays a block for memcheck.
 * usage: handle_move clean|uninit|stale
 *   clean   every byte it reads was written: no error
 *   uninit  planted bugs: a branch on the one byte never written, and a
 *           read one byte past the end, both after the move
 *   stale   planted bug: a read through the address from before the move
 * The block must move (the program fails otherwise), and after its free
 * and the arena's destroy nothing leaks.  Arena variant only: handles have
 * no malloc form.
 * memcheck: uninit: "Conditional jump or move depends on uninitialised
 * value(s)" and "Invalid read of size 1 ... 0 bytes after a ... block of
 * size 100 alloc'd"; stale: "Invalid read of size 1 ... inside a block of
 * size 100 free'd" by regal_arena_compact (the middle byte: the first
 * would be described against the block freed before it).
 */
#include "vgtest.h"

#define SIZE 100
#define HOLE 50 /* the byte never written */
#define ROOM 4000

int main(int argc, char **argv)
{
    const char *mode = t_str_arg(argc, argv, 1, "clean");
    if (strcmp(mode, "clean") != 0 && strcmp(mode, "uninit") != 0 && strcmp(mode, "stale") != 0) {
        fprintf(stderr, "usage: %s clean|uninit|stale\n", argv[0]);
        return 2;
    }
    t_setup();
    regal_handle room = regal_handle_alloc(t_arena, ROOM); /* freed: the block moves there */
    regal_handle h = regal_handle_alloc(t_arena, SIZE);
    if (room == 0 || h == 0) {
        perror("regal_handle_alloc");
        return 2;
    }
    unsigned char *before = t_check(regal_handle_ptr(t_arena, h), "regal_handle_ptr");
    memset(before, 7, HOLE);
    memset(before + HOLE + 1, 9, SIZE - HOLE - 1);
    regal_handle_free(t_arena, room);
    size_t back = regal_arena_compact(t_arena);
    volatile unsigned char *p = t_check(regal_handle_ptr(t_arena, h), "regal_handle_ptr");
    if ((void *)p == (void *)before) {
        fprintf(stderr, "handle_move: the block did not move\n");
        return 1;
    }
    printf("moved by %td bytes, %zu bytes given back\n", before - (unsigned char *)p, back);

    /* The written bytes moved with the block, still defined. */
    for (size_t i = 0; i < SIZE; i++) {
        if (i != HOLE && p[i] != (i < HOLE ? 7 : 9)) {
            fprintf(stderr, "handle_move: byte %zu lost in the move\n", i);
            return 1;
        }
    }
    if (strcmp(mode, "uninit") == 0) {
        if (p[HOLE] == 0x5a) /* the bug: never written */
            puts("byte 50 is 0x5a");
        T_GUARDED(t_byte = p[SIZE]); /* the bug: one past the end */
    } else if (strcmp(mode, "stale") == 0) {
        volatile unsigned char *old = before;
        T_GUARDED(t_byte = old[SIZE / 2]); /* the bug: the block is not there any more */
    }
    p[HOLE] = 1; /* all of it defined, then gone */
    regal_handle_free(t_arena, h);
    t_teardown();
    return 0;
}
