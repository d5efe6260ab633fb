/*
 * User errors and failed assertions.  Messages are formatted into a stack
 * buffer and written with write(2): no stdio, no allocation, safe inside the
 * malloc shim and with any lock of regal's released (callers report after
 * unlocking, so a handler may call regal again).
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "options.h"

static regal_error_fn handler;
static void *handler_ctx;

void regal_set_error_handler(regal_error_fn fn, void *ctx)
{
    __atomic_store_n(&handler_ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&handler, fn, __ATOMIC_RELEASE);
}

static void write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

void rg_report(regal_error_kind kind, const void *ptr, const regal_arena *arena, const char *fmt,
               ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    char name[RG_NAME_MAX] = "";
    if (arena != NULL) { /* NOACCESS metadata under Valgrind */
        rg_vg_quiet_begin();
        memcpy(name, arena->name, sizeof name);
        rg_vg_quiet_end();
    }
    if (name[0] != '\0' && n >= 0 && (size_t)n < sizeof msg)
        snprintf(msg + n, sizeof msg - (size_t)n, " (arena '%s')", name);
    regal_error_fn fn = __atomic_load_n(&handler, __ATOMIC_ACQUIRE);
    if (fn != NULL) {
        fn(kind, ptr, msg, __atomic_load_n(&handler_ctx, __ATOMIC_RELAXED));
    } else {
        char line[300];
        int len = snprintf(line, sizeof line, "regal: %s\n", msg);
        write_all(line, len < 0 ? 0 : (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    }
    if (rg_options()->abort_on_error)
        abort();
}

void rg_assert_fail(const char *file, int line, const char *expr)
{
    char buf[300];
    int len = snprintf(buf, sizeof buf, "regal: assertion failed at %s:%d: %s\n", file, line, expr);
    write_all(buf, len < 0 ? 0 : (size_t)len < sizeof buf ? (size_t)len : sizeof buf - 1);
    abort();
}
