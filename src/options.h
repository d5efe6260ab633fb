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
};

/* Parses REGAL_OPTIONS the first time; cheap afterwards.  Never allocates. */
void rg_options_init(void);
const struct rg_options *rg_options(void);

#endif
