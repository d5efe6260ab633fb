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

static struct rg_options opts = {.purge_delay = RG_PURGE_DELAY_DEFAULT,
                                 .purge_cap = RG_PURGE_CAP_AUTO};
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

struct unit {
    const char *suffix;
    uint64_t scale;
};

static const struct unit time_units[] = {{"ms", 1}, {"s", 1000}, {NULL, 0}};
static const struct unit size_units[] = {
    {"K", 1ull << 10}, {"k", 1ull << 10}, {"M", 1ull << 20}, {"m", 1ull << 20},
    {"G", 1ull << 30}, {"g", 1ull << 30}, {NULL, 0},
};

/* Decimal digits and an optional suffix of units; false when malformed or
 * at least limit. */
static bool parse_scaled(const char *val, size_t vlen, const struct unit *units, uint64_t limit,
                         uint64_t *out)
{
    size_t i = 0;
    uint64_t n = 0;
    for (; i < vlen && val[i] >= '0' && val[i] <= '9'; i++) {
        if (n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(val[i] - '0');
    }
    if (i == 0)
        return false;
    uint64_t scale = 1;
    if (i < vlen) {
        const struct unit *u = units;
        while (u->suffix != NULL && !is(val + i, vlen - i, u->suffix))
            u++;
        if (u->suffix == NULL)
            return false;
        scale = u->scale;
    }
    if (n > (limit - 1) / scale)
        return false;
    *out = n * scale;
    return true;
}

/* purge_delay=<ms>[ms|s]|off, purge_cap=<bytes>[K|M|G]|auto|off. */
static bool apply_purge(bool delay, const char *val, size_t vlen)
{
    uint64_t n;
    if (val == NULL)
        return false;
    if (is(val, vlen, "off"))
        n = delay ? RG_PURGE_DELAY_OFF : RG_PURGE_CAP_OFF;
    else if (!delay && is(val, vlen, "auto"))
        n = RG_PURGE_CAP_AUTO;
    else if (!parse_scaled(val, vlen, delay ? time_units : size_units,
                           delay ? RG_PURGE_DELAY_OFF : RG_PURGE_CAP_AUTO, &n))
        return false;
    if (delay)
        opts.purge_delay = n;
    else
        opts.purge_cap = (size_t)n;
    return true;
}

static void apply(const char *item, size_t len)
{
    const char *eq = memchr(item, '=', len);
    size_t nlen = eq ? (size_t)(eq - item) : len;
    const char *val = eq ? eq + 1 : NULL;
    size_t vlen = eq ? len - nlen - 1 : 0;
    if (is(item, nlen, "purge_delay") || is(item, nlen, "purge_cap")) {
        if (!apply_purge(is(item, nlen, "purge_delay"), val, vlen))
            warn("bad value in", item, len);
        return;
    }
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
    char buf[300], delay[24], cap[24];
    const char *stats = opts.stats_json ? "json" : opts.stats ? "1" : "0";
    if (opts.purge_delay == RG_PURGE_DELAY_OFF)
        snprintf(delay, sizeof delay, "%s", "off");
    else
        snprintf(delay, sizeof delay, "%llums", (unsigned long long)opts.purge_delay);
    if (opts.purge_cap == RG_PURGE_CAP_OFF || opts.purge_cap == RG_PURGE_CAP_AUTO)
        snprintf(cap, sizeof cap, "%s", opts.purge_cap == RG_PURGE_CAP_OFF ? "off" : "auto");
    else
        snprintf(cap, sizeof cap, "%zu", opts.purge_cap);
    int n = snprintf(buf, sizeof buf,
                     "regal: options: abort_on_error=%d stats=%s debug=%d leaks=%d "
                     "purge_delay=%s purge_cap=%s verbose=1\n",
                     opts.abort_on_error, stats, opts.debug, opts.leaks, delay, cap);
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
