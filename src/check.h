/* Consistency walks behind regal_arena_check(). */
#ifndef RG_CHECK_H
#define RG_CHECK_H

#include <stdbool.h>

#include "chunk.h"
#include "regal.h"

/* Reports a violation as REGAL_ERR_CORRUPTION; always returns false. */
bool rg_check_fail(const void *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether c's header says it is a chunk of the kind owned by a, tagged
 * with a's tracking (arena.c invariant 3); reports nothing. */
bool rg_chunk_header_is_valid(const struct rg_chunk *c, regal_arena *a, enum rg_chunk_kind kind);

#endif
