/* LD_PRELOAD shim for tests/test_aead_c.py: counts malloc, calloc and
 * realloc calls in the whole process (libcrypto included) and prints the
 * total at exit, so a test can show that work per packet allocates nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long count;

void *malloc(size_t n)
{
    static void *(*real)(size_t);
    if (!real)
        real = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    count++;
    return real(n);
}

void *realloc(void *p, size_t n)
{
    static void *(*real)(void *, size_t);
    if (!real)
        real = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    count++;
    return real(p, n);
}

__attribute__((destructor)) static void report(void)
{
    fprintf(stderr, "allocations %lu\n", count);
}
