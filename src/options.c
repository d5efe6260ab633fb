/*
 * REGAL_OPTIONS parsing.  Runs from the first arena creation, possibly
 * inside the first malloc of a process, so it uses getenv and stack buffers
 * only; unknown names and bad values warn on stderr and are ignored.
 */
#include "options.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct rg_options opts;
static int parsed; /* 0 not yet, 1 parsing or done */

static void warn(const char *what, const char *item, size_t len)
{
    char buf[160];
    int n = snprintf(buf, sizeof buf, "regal: REGAL_OPTIONS: %s '%.*s' ignored\n", what,
                     (int)(len > 64 ? 64 : len), item);
    if (n > 0 && write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0)
        return;
}

static bool is(const char *item, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(item, name, len) == 0;
}

static void apply(const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    size_t nlen = eq ? (size_t)(eq - item) : len;
    const char *val = eq ? eq + 1 : NULL;
    size_t vlen = eq ? len - nlen - 1 : 0;
    bool *flag = is(item, nlen, "abort_on_error") ? &opts.abort_on_error
                 : is(item, nlen, "stats")        ? &opts.stats
                 : is(item, nlen, "debug")        ? &opts.debug
                 : is(item, nlen, "verbose")      ? &opts.verbose
                 : is(item, nlen, "leaks")        ? &opts.leaks
                                                  : NULL;
    if (flag == NULL) {
        warn("unknown option", item, len);
        return;
    }
    if (val == NULL || is(val, vlen, "1") || is(val, vlen, "true")) {
        *flag = true;
    } else if (is(val, vlen, "0") || is(val, vlen, "false")) {
        *flag = false;
    } else if (flag == &opts.stats && is(val, vlen, "json")) {
        opts.stats = opts.stats_json = true;
    } else {
        warn("bad value in", item, len);
    }
}

static void say_options(void)
{
    char buf[200];
    const char *stats = opts.stats_json ? "json" : opts.stats ? "1" : "0";
    int n = snprintf(buf, sizeof buf,
                     "regal: options: abort_on_error=%d stats=%s debug=%d leaks=%d verbose=1\n",
                     opts.abort_on_error, stats, opts.debug, opts.leaks);
    if (n > 0 && write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0)
        return;
}

void rg_options_init(void)
{
    if (__atomic_exchange_n(&parsed, 1, __ATOMIC_ACQ_REL))
        return;
    const char *env = getenv("REGAL_OPTIONS");
    while (env != NULL && *env != '\0') {
        size_t len = strcspn(env, ",");
        if (len > 0)
            apply(env, len);
        env += len + (env[len] == ',');
    }
    /* Programs that close stderr at exit (coreutils' close_stdout) would
     * lose the exit statistics: keep a copy of it. */
    opts.stats_fd = opts.stats ? fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3) : -1;
    if (opts.verbose)
        say_options();
}

const struct rg_options *rg_options(void)
{
    rg_options_init();
    return &opts;
}
