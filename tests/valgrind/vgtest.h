/*
 * Shared scaffolding of the Valgrind (memcheck) test programs.
 *
 * Every program is built twice from one source file:
 *  - the arena variant links libregal and allocates from an arena of its own
 *    (T_ALLOC and friends map to regal_alloc on t_arena);
 *  - the shim variant (-DUSE_SHIM) uses plain malloc/free and does not link
 *    regal at all.  run.sh runs it under plain valgrind (glibc's malloc as
 *    replaced by memcheck: the grounding run) and with LD_PRELOAD of
 *    libregal-malloc plus --soname-synonyms=somalloc=nouserintercepts.
 *
 * Every program prints "allocator: regal" or "allocator: libc" for its first
 * block so run.sh can tell that the preload really served the program (and
 * that the grounding run really did not use regal).
 *
 * The planted bugs go through volatile pointers and run under a SIGSEGV
 * guard: if an allocator unmapped the memory, the program survives the
 * fault, says so on stderr and goes on, and memcheck's report is still there.
 * Build with -O0 -g.
 */
#ifndef REGAL_VGTEST_H
#define REGAL_VGTEST_H

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef USE_SHIM
#include <dlfcn.h>
#else
#include "regal.h"
#endif

/* Pointers stored here escape: the compiler must assume anyone reads them. */
__attribute__((unused)) static void *volatile t_sink;
__attribute__((unused)) static volatile unsigned char t_byte;

#ifdef USE_SHIM

#define T_VARIANT       "shim"
#define T_ALLOC(n)      malloc(n)
#define T_CALLOC(c, n)  calloc((c), (n))
#define T_REALLOC(p, n) realloc((p), (n))
#define T_FREE(p)       free(p)

static inline void t_setup(void)
{
}
static inline void t_teardown(void)
{
}

/* "regal" when the process has libregal-malloc and it owns p. */
static inline void t_report_allocator(const void *p)
{
    void *(*arena_of)(const void *) = NULL;
    void *sym = dlsym(RTLD_DEFAULT, "regal_arena_of");
    memcpy(&arena_of, &sym, sizeof arena_of);
    printf("allocator: %s\n", arena_of != NULL && arena_of(p) != NULL ? "regal" : "libc");
    fflush(stdout);
}

#else /* arena variant */

#define T_VARIANT       "arena"
static regal_arena *t_arena; /* a global: the arena stays reachable */
#define T_ALLOC(n)      regal_alloc(t_arena, (n))
#define T_CALLOC(c, n)  regal_calloc(t_arena, (c), (n))
#define T_REALLOC(p, n) regal_realloc(t_arena, (p), (n))
#define T_FREE(p)       regal_free(p)

static inline void t_setup(void)
{
    regal_arena_config cfg = {.name = "vgtest", .limit = 0, .flags = 0};
    t_arena = regal_arena_create(&cfg);
    if (t_arena == NULL) {
        perror("regal_arena_create");
        exit(2);
    }
}

static inline void t_teardown(void)
{
    regal_arena_destroy(t_arena);
    t_arena = NULL;
}

static inline void t_report_allocator(const void *p)
{
    printf("allocator: %s\n", regal_arena_of(p) == t_arena ? "regal" : "libc");
    fflush(stdout);
}

#endif

/* ---- SIGSEGV guard around one planted bug --------------------------------- */

static sigjmp_buf t_jmp;

static inline void t_on_fault(int sig)
{
    siglongjmp(t_jmp, sig);
}

static inline void t_guard_on(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = t_on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* Runs stmt; a fault inside it is reported on stderr and survived. */
#define T_GUARDED(stmt)                                                                            \
    do {                                                                                           \
        int sig_;                                                                                  \
        t_guard_on();                                                                              \
        sig_ = sigsetjmp(t_jmp, 1);                                                                \
        if (sig_ == 0) {                                                                           \
            stmt;                                                                                  \
        } else {                                                                                   \
            fprintf(stderr, "vgtest: signal %d during `%s` (memory unmapped)\n", sig_, #stmt);     \
        }                                                                                          \
        signal(SIGSEGV, SIG_DFL);                                                                  \
        signal(SIGBUS, SIG_DFL);                                                                   \
    } while (0)

/* ---- Arguments ------------------------------------------------------------ */

static inline size_t t_size_arg(int argc, char **argv, int i, size_t dflt)
{
    if (argc <= i)
        return dflt;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(argv[i], &end, 0);
    if (errno != 0 || end == argv[i] || *end != '\0') {
        fprintf(stderr, "vgtest: bad size '%s'\n", argv[i]);
        exit(2);
    }
    return (size_t)v;
}

static inline const char *t_str_arg(int argc, char **argv, int i, const char *dflt)
{
    return argc > i ? argv[i] : dflt;
}

static inline void *t_check(void *p, const char *what)
{
    if (p == NULL) {
        fprintf(stderr, "vgtest: %s failed: %s\n", what, strerror(errno));
        exit(2);
    }
    return p;
}

#endif /* REGAL_VGTEST_H */
