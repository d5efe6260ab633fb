/*
 * REGAL_OPTIONS=stats at exit, the two ways it once failed:
 *  - stderr fully buffered with no buffer yet: printing the table makes
 *    stdio allocate, which deadlocked while regal held the arena lock;
 *  - stderr closed by the program before exit (as coreutils does): the
 *    table went nowhere.
 * Run by exit_stats.sh, which reads the table from the stream stderr was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void close_stderr(void)
{
    close(STDERR_FILENO);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "buffered") == 0)
        setvbuf(stderr, NULL, _IOFBF, 0);
    if (argc > 1 && strcmp(argv[1], "closed") == 0)
        atexit(close_stderr);
    for (int i = 0; i < 1000; i++)
        free(malloc((size_t)i * 16));
    return 0;
}
