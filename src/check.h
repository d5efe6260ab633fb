/* Consistency walks behind regal_arena_check(). */
#ifndef RG_CHECK_H
#define RG_CHECK_H

#include <stdbool.h>

/* Reports a violation as REGAL_ERR_CORRUPTION; always returns false. */
bool rg_check_fail(const void *where, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
