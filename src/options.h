/* REGAL_OPTIONS: comma-separated name or name=value, read once. */
#ifndef RG_OPTIONS_H
#define RG_OPTIONS_H

#include "common.h"

struct rg_options {
    bool abort_on_error; /* abort after reporting a user error */
    bool stats;          /* print the default arena's statistics at exit */
    bool stats_json;     /* ... as JSON (stats=json) */
    bool debug;          /* the default arena is a debug arena */
    bool leaks;          /* list the default arena's live blocks at exit */
    bool verbose;        /* say what was configured */
    int stats_fd;        /* a copy of stderr taken at start-up for the exit statistics */
    /* The purge policy of every arena (purge.c). */
    uint64_t purge_delay; /* ms before free memory is purged; RG_PURGE_DELAY_OFF */
    size_t purge_cap;     /* bytes of free memory kept at most; RG_PURGE_CAP_AUTO, _OFF */
};

/* The purge policy's settings (purge.c): purge_delay=<ms>|off and
 * purge_cap=<bytes>[K|M|G]|auto|off.  Defaults: 1000 ms, and a cap of
 * max(floor, in_use / 4), the floor starting at RG_PURGE_CAP_MIN and
 * learning from wasted purges. */
#define RG_PURGE_DELAY_DEFAULT ((uint64_t)1000)
#define RG_PURGE_DELAY_OFF     UINT64_MAX
#define RG_PURGE_CAP_OFF       SIZE_MAX
#define RG_PURGE_CAP_AUTO      (SIZE_MAX - 1)
#define RG_PURGE_CAP_MIN       ((size_t)64 << 20)

/* Parses REGAL_OPTIONS the first time; cheap afterwards.  Never allocates. */
void rg_options_init(void);
const struct rg_options *rg_options(void);

#endif
