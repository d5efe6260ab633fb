/*
 * libglibc-malloc: the malloc family forwarded to glibc's own allocator
 * through its __libc_* names.
 *
 * For programs linked with another allocator: Debian's redis-server links
 * jemalloc, so run without LD_PRELOAD it measures jemalloc, not glibc.
 * Preloading this library puts glibc's malloc back in front, so that the
 * "glibc" run of bench/real-programs is glibc's.  Only what such a program
 * may call is forwarded; malloc_usable_size is glibc's, looked up in
 * libc.so.6 itself, because the program's own allocator exports the name
 * too and would be asked about glibc's blocks.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

/* glibc's exported aliases of its allocator (GLIBC_2.2.5). */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

static size_t (*glibc_usable_size)(void *);

EXPORT void *malloc(size_t size)
{
    return __libc_malloc(size);
}

EXPORT void free(void *p)
{
    __libc_free(p);
}

EXPORT void *calloc(size_t count, size_t size)
{
    return __libc_calloc(count, size);
}

EXPORT void *realloc(void *p, size_t size)
{
    return __libc_realloc(p, size);
}

EXPORT void *memalign(size_t alignment, size_t size)
{
    return __libc_memalign(alignment, size);
}

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    return __libc_memalign(alignment, size);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment % sizeof(void *) != 0)
        return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *valloc(size_t size)
{
    return __libc_valloc(size);
}

EXPORT void *pvalloc(size_t size)
{
    return __libc_pvalloc(size);
}

/* Threads that race here store the same value. */
EXPORT size_t malloc_usable_size(void *p)
{
    size_t (*fn)(void *) = __atomic_load_n(&glibc_usable_size, __ATOMIC_RELAXED);
    if (fn == NULL) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        void *sym = libc != NULL ? dlsym(libc, "malloc_usable_size") : NULL;
        if (sym == NULL)
            abort();
        memcpy(&fn, &sym, sizeof sym);
        __atomic_store_n(&glibc_usable_size, fn, __ATOMIC_RELAXED);
    }
    return fn(p);
}
