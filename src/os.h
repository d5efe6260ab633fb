/* The only system calls of the engine: mapping, unmapping, decommitting,
 * the clock. */
#ifndef RG_OS_H
#define RG_OS_H

#include "common.h"

/* Maps size bytes (a multiple of the OS page) at an address p such that
 * p + offset is a multiple of align (a power of two; offset a multiple of
 * the OS page).  One mmap when align is at most the OS page, or when the
 * range below the previous aligned mapping is free; NULL on failure. */
void *rg_os_map_aligned(size_t size, size_t align, size_t offset);
void rg_os_unmap(void *p, size_t size);
/* Gives the pages back to the OS; they read as zero afterwards. */
void rg_os_decommit(void *p, size_t size);
/* Replaces [p, p + size) (whole OS pages of this process's own memory)
 * with pages that read as zero, are read-only and are not counted against
 * the commit limit (Linux charges writable private memory only). */
bool rg_os_read_only_zero(void *p, size_t size);
/* Makes such pages writable: they count from now on; false when the
 * system would not commit them (strict overcommit). */
bool rg_os_make_writable(void *p, size_t size);
/* Grows a mapping in place; false if the address space after it is taken
 * or [p, p + old_size) is more than one OS mapping. */
bool rg_os_grow(void *p, size_t old_size, size_t new_size);
/* Moves the mapping [from, from + old_size), one OS mapping, to to and
 * grows it to new_size there (the rest reads as zero): no copy, no fault.
 * [to, to + new_size) is replaced.  False, and nothing moved, when the
 * kernel refuses (a range of several OS mappings among others): a resize
 * by mremap either happens whole or not at all. */
bool rg_os_move_grow(void *from, size_t old_size, size_t new_size, void *to);
/* Moves the pages of [from, from + size) onto [to, to + size), which must
 * be mapped already (it is replaced): no copy, no fault, from is unmapped
 * afterwards.  The source may span several OS mappings where the kernel
 * allows it (Linux 6.17 on).  RG_MOVE_NONE: refused before anything moved
 * (bad arguments; a range of several OS mappings before 6.17); RG_MOVE_LOST:
 * failed on the way, possibly after moving part of it, and the rest of the
 * source range was unmapped. */
enum rg_move { RG_MOVED, RG_MOVE_NONE, RG_MOVE_LOST };
enum rg_move rg_os_move(void *from, size_t size, void *to);
/* The OS page size: inline, because the heap asks on every free-list
 * insertion (the pages inside a free block are its dirty memory). */
extern size_t rg_os_page;
size_t rg_os_page_size_init(void);
RG_INLINE size_t rg_os_page_size(void)
{
    size_t page = __atomic_load_n(&rg_os_page, __ATOMIC_RELAXED);
    return RG_LIKELY(page != 0) ? page : rg_os_page_size_init();
}
/* Milliseconds of CLOCK_MONOTONIC_COARSE (the vDSO, no system call; a tick
 * of 1 to 10 ms): the purge policy's clock, read on slow paths only.
 * Never 0. */
uint64_t rg_os_now_ms(void);

/* 64 random bits chosen by the kernel at exec (AT_RANDOM): no syscall, no
 * allocation.  Keys for header checks and link encoding. */
uint64_t rg_os_secret(void);

#endif
