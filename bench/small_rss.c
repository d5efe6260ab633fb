/*
 * small_rss: what an allocator costs a small program: start-up time and
 * resident memory when the program itself needs only a few hundred KiB.
 * Most processes on a system are small (shells, coreutils, helpers), and
 * an allocator that reserves and touches megabytes up front multiplies
 * their footprint; tcmalloc is known for 2-4x here.
 *
 *   small_rss [--children N] [--seed N] [--scale X]
 *   small_rss --child SEED
 *
 * The parent runs CHILDREN children (default 1000) one after the other,
 * each /proc/self/exe --child, so each is a fresh process under the same
 * LD_PRELOAD.  A child does what a small tool does: a chained hash table of
 * 2000 strings of 8 to 64 bytes, a vector of 4096 words grown by doubling,
 * a 64 KiB I/O buffer, about 200 KiB in all; it checks and frees them and
 * exits.
 *
 * Output: "<seconds> <max_child_rss_kib>": the time to run all children
 * (process creation and exit included) and the largest peak RSS of a child
 * (ru_maxrss from wait4).  The caller's /usr/bin/time -f %M reports the
 * same peak, as the largest of the parent and the children it waited for.
 * --scale multiplies CHILDREN.
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "workload.h"

#define STRINGS 2000
#define BUCKETS 512
#define WORDS   4096
#define IOBUF   (64 << 10)

extern char **environ;

struct entry {
    struct entry *next;
    size_t len;
    uint64_t tag;
    char s[];
};

static int child(uint64_t seed)
{
    struct wl_rng rng;
    wl_rng_init(&rng, seed, 1);
    struct entry **table = wl_malloc(BUCKETS * sizeof *table);
    memset(table, 0, BUCKETS * sizeof *table);
    for (uint64_t i = 0; i < STRINGS; i++) {
        size_t len = wl_rng_range(&rng, 8, 64);
        struct entry *e = wl_malloc(sizeof *e + len);
        e->len = len;
        e->tag = i + 1;
        wl_fill(e->s, len, e->tag);
        size_t h = (size_t)wl_rng_below(&rng, BUCKETS);
        e->next = table[h];
        table[h] = e;
    }

    uint64_t *words = NULL;
    size_t cap = 0;
    for (size_t n = 0; n < WORDS; n++) {
        if (n == cap) {
            cap = cap == 0 ? 16 : 2 * cap;
            words = wl_realloc(words, cap * sizeof *words);
        }
        words[n] = n * 0x9e3779b97f4a7c15u;
    }
    unsigned char *io = wl_malloc(IOBUF);
    wl_fill(io, IOBUF, seed);

    wl_check(io, IOBUF, seed, "(the I/O buffer)");
    free(io);
    for (size_t n = 0; n < WORDS; n++)
        if (words[n] != n * 0x9e3779b97f4a7c15u)
            wl_corrupted(words, WORDS * sizeof *words, n * sizeof *words, 0, "(the vector)");
    free(words);
    for (size_t h = 0; h < BUCKETS; h++) {
        for (struct entry *e = table[h], *next; e != NULL; e = next) {
            next = e->next;
            wl_check(e->s, e->len, e->tag, "(a table entry)");
            free(e);
        }
    }
    free(table);
    return EXIT_SUCCESS;
}

/* Runs one child; returns its peak RSS in KiB. */
static size_t run_child(uint64_t seed)
{
    char arg[32];
    snprintf(arg, sizeof arg, "%llu", (unsigned long long)seed);
    char *argv[] = {"small_rss", "--child", arg, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
    if (err != 0) {
        fprintf(stderr, "small_rss: posix_spawn: %s\n", strerror(err));
        exit(EXIT_FAILURE);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            perror("small_rss: wait4");
            exit(EXIT_FAILURE);
        }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "small_rss: child %llu failed (status 0x%x)\n", (unsigned long long)seed,
                (unsigned)status);
        exit(WIFEXITED(status) && WEXITSTATUS(status) == 3 ? 3 : EXIT_FAILURE);
    }
    return (size_t)ru.ru_maxrss;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return child(strtoull(argv[2], NULL, 10));

    size_t children = 1000, seed = 0x736d616c6c727373;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--children", WL_COUNT, &children, "small programs run one after the other (1000)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --children (1)"},
    };
    WL_PARSE(argc, argv, opts, "Start-up time and RSS of a small program (children of this one).");
    children = wl_scaled(children, scale);

    size_t max_rss = 0;
    double t0 = wl_now();
    for (size_t i = 0; i < children; i++) {
        size_t rss = run_child(seed + i);
        if (rss > max_rss)
            max_rss = rss;
    }
    double t1 = wl_now();

    char extra[32];
    snprintf(extra, sizeof extra, "%zu", max_rss);
    return wl_finish(t1 - t0, extra);
}
