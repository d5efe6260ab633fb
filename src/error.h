/* The one place that reports user errors: the handler, or a "regal:" line. */
#ifndef RG_ERROR_H
#define RG_ERROR_H

#include "regal.h"

/* Formats the message (printf-style, no allocation), hands it to the
 * handler or writes "regal: <message>" on stderr, then aborts if
 * REGAL_OPTIONS asked for abort_on_error.  arena names the arena where
 * known (may be NULL). */
void rg_report(regal_error_kind kind, const void *ptr, const regal_arena *arena, const char *fmt,
               ...) __attribute__((format(printf, 4, 5)));

#endif
