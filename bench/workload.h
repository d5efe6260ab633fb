/*
 * workload: what the plain-libc workloads of bench/ share: options, timing,
 * resident memory, random numbers, filled-and-checked blocks, threads and
 * the last output line.
 *
 * A workload calls only the malloc family and links only libc (and
 * pthreads), so LD_PRELOAD decides which allocator it measures.  Its
 * contract with bench/run-peers: the first field of its last stdout line is
 * the elapsed seconds of the measured part; fields after it are extra
 * figures the workload documents (frag prints its final RSS there).  A
 * corrupted block (a byte it wrote has changed) makes it exit with status 3.
 */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Options --------------------------------------------------------------- */

enum wl_kind {
    WL_COUNT, /* size_t >= 1 */
    WL_BYTES, /* size_t >= 1, optional K, M or G suffix (KiB, MiB, GiB) */
    WL_SCALE, /* double > 0 */
    WL_FLAG,  /* bool, takes no value */
};

struct wl_option {
    const char *name; /* with its dashes: "--threads" */
    enum wl_kind kind;
    void *value; /* size_t *, double * or bool *, by kind */
    const char *help;
};

/* Parses argv against opts; prints a usage built from opts (after summary,
 * one line on what the program does) and exits with status 2 on anything
 * else.  --help prints the usage and exits with status 0. */
void wl_parse(int argc, char **argv, const struct wl_option *opts, size_t nopts,
              const char *summary);
#define WL_PARSE(argc, argv, opts, summary)                                                        \
    wl_parse((argc), (argv), (opts), sizeof(opts) / sizeof((opts)[0]), (summary))

/* n * scale rounded, at least 1: every workload takes --scale to size its
 * work (bench/run --quick passes 0.25). */
size_t wl_scaled(size_t n, double scale);

/* ---- Symbols --------------------------------------------------------------------- */

/* The function name as dlsym(handle, name) finds it (RTLD_DEFAULT:
 * whichever library answers first), or NULL.  With lib not NULL, only if
 * it comes from the library of that file name (dladdr; "libc.so.6"):
 * programs that link one allocator and measure another check whose
 * function they hold. */
void (*wl_function(void *handle, const char *name, const char *lib))(void);

/* ---- Time and memory ------------------------------------------------------------ */

/* CLOCK_MONOTONIC in seconds. */
double wl_now(void);

/* Resident set of this process in KiB (/proc/self/statm), 0 if unknown. */
size_t wl_rss_kib(void);

/* Peak resident set of this process in KiB (VmHWM in /proc/self/status),
 * 0 if unknown. */
size_t wl_peak_rss_kib(void);

/* ---- Random numbers ------------------------------------------------------------- */

/* splitmix64: small, fast, the same sequence on every platform.  One per
 * thread; stream separates the threads of one seed. */
struct wl_rng {
    uint64_t state;
};

void wl_rng_init(struct wl_rng *r, uint64_t seed, uint64_t stream);
uint64_t wl_rng_next(struct wl_rng *r);

/* Uniform in [0, n), n >= 1; the modulo bias is below 2^-40 for the n used. */
uint64_t wl_rng_below(struct wl_rng *r, uint64_t n);

/* Uniform in [min, max]. */
size_t wl_rng_range(struct wl_rng *r, size_t min, size_t max);

/* Log-uniform in [min, max] (min >= 1): every power-of-two octave between
 * them equally likely, uniform inside an octave.  Programs ask for many
 * small blocks and few large ones; this is the usual model of it. */
size_t wl_rng_log_size(struct wl_rng *r, size_t min, size_t max);

/* ---- Blocks ------------------------------------------------------------------------ */

/* malloc and realloc that end the program (status 1) on failure. */
void *wl_malloc(size_t size);
void *wl_realloc(void *p, size_t size);

/* Writes a pattern derived from tag over the first min(size, 16) bytes, one
 * byte every 4 KiB (so every page of the block is resident) and the last
 * byte.  Two blocks with different tags almost never agree on a byte, so a
 * block that overlaps another fails wl_check. */
void wl_fill(void *p, size_t size, uint64_t tag);

/* Exits with status 3, naming the block and the byte, if one of the bytes
 * wl_fill(p, size, tag) wrote has another value.  when says where the
 * program is ("before free"). */
void wl_check(const void *p, size_t size, uint64_t tag, const char *when);

/* A filled block the churn workloads keep in slots (p NULL: none). */
struct wl_block {
    void *p;
    size_t size;
    uint64_t tag;
};

/* Checks and frees b's block if it has one, then gives it a new block of
 * size bytes filled for tag. */
void wl_block_replace(struct wl_block *b, size_t size, uint64_t tag);
/* An array of n empty slots (wl_malloc: exits if it cannot). */
struct wl_block *wl_blocks_new(size_t n);
/* Checks and frees every block of b[0..n), then the array itself. */
void wl_blocks_free(struct wl_block *b, size_t n);

/* Reports that byte off of block p (size bytes) is not want and exits with
 * status 3: for workloads that check bytes of their own. */
_Noreturn void wl_corrupted(const void *p, size_t size, size_t off, unsigned char want,
                            const char *when);

/* ---- Threads --------------------------------------------------------------------- */

/* Runs fn(args + i * arg_size) for i in [0, n) on n threads and joins them;
 * ends the program if a thread cannot be created. */
void wl_run_threads(size_t n, void *(*fn)(void *), void *args, size_t arg_size);

/* ---- Output ---------------------------------------------------------------------- */

/* Prints the last line, "<seconds>[ extra]", and returns the exit status for
 * main (failure if stdout could not be written).  extra may be NULL. */
int wl_finish(double seconds, const char *extra);

#endif /* BENCH_WORKLOAD_H */
