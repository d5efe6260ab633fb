/*
 * Valgrind: the only file that includes its headers.  Every wrapper is a
 * no-op unless the build has client requests (REGAL_VALGRIND, no NVALGRIND)
 * and the process runs under Valgrind (checked once, cached in
 * rg_vg_running), so the real-CPU cost is one load and one branch.
 *
 * The scheme: every chunk and large mapping is NOACCESS from the moment
 * regal gets it, so allocator metadata is neither a user's to touch nor a
 * root for the leak checker; every user block is a MALLOCLIKE block with a
 * redzone (track.c), so memcheck describes it exactly as it describes
 * glibc's blocks; regal touches its metadata with error reporting disabled
 * (rg_vg_quiet_*).  Arena reset and destroy FREELIKE every live block, so a
 * later access names the reset or destroy call.
 *
 * Why not one METAPOOL | AUTO_FREE mempool per arena with the chunks as
 * pool chunks, which would make reset one request per chunk: memcheck
 * 3.19's leak checker then resolves a pointer to a block to the chunk
 * around it, and reports blocks that a global still points to as
 * "definitely lost" (tried: a MALLOCLIKE block inside a metapool chunk,
 * its only pointer in a global, is reported lost).
 */
#ifndef RG_VG_H
#define RG_VG_H

#include "common.h"

#if REGAL_VALGRIND && !defined(NVALGRIND)
#include <valgrind/memcheck.h>
#define RG_VG_COMPILED 1
#else
#define RG_VG_COMPILED 0
#endif

/* Bytes after each block (and before it, from the layout) that the user
 * must not touch while running under Valgrind. */
#define RG_VG_REDZONE 16

extern bool rg_vg_running;
void rg_vg_init(void);

RG_INLINE bool rg_vg(void)
{
    return RG_VG_COMPILED && RG_UNLIKELY(rg_vg_running);
}

#if RG_VG_COMPILED
#define RG_VG_DO(request)                                                                          \
    do {                                                                                           \
        if (rg_vg()) {                                                                             \
            request;                                                                               \
        }                                                                                          \
    } while (0)
#else
#define RG_VG_DO(request) ((void)0)
#endif

/* regal's own accesses to NOACCESS metadata: not the user's errors. */
#define rg_vg_quiet_begin() RG_VG_DO(VALGRIND_DISABLE_ERROR_REPORTING)
#define rg_vg_quiet_end()   RG_VG_DO(VALGRIND_ENABLE_ERROR_REPORTING)

#define rg_vg_noaccess(p, n) RG_VG_DO(VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#define rg_vg_defined(p, n)  RG_VG_DO(VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#define rg_vg_block_alloc(p, n, zeroed)                                                            \
    RG_VG_DO(VALGRIND_MALLOCLIKE_BLOCK((p), (n), RG_VG_REDZONE, (zeroed)))
#define rg_vg_block_free(p) RG_VG_DO(VALGRIND_FREELIKE_BLOCK((p), RG_VG_REDZONE))
/* The definedness of n bytes, saved to and restored from bits (n bytes,
 * addressable): a block that moves keeps its undefined bytes (handle.c). */
#define rg_vg_get_vbits(p, bits, n) RG_VG_DO((void)VALGRIND_GET_VBITS((p), (bits), (n)))
#define rg_vg_set_vbits(p, bits, n) RG_VG_DO((void)VALGRIND_SET_VBITS((p), (bits), (n)))

#endif
