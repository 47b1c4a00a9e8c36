/*
 * test/alloc/tp_alloccount.c: an LD_PRELOAD library that counts heap
 * allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc,
 * memalign, valloc) per process, so a test can tell how many a request
 * costs. Each process, forked or executed, counts into its own file
 * $TP_ALLOC_DIR/<pid>: one 64-bit counter, mapped shared, added to
 * atomically, read by the test while the process runs. Without
 * TP_ALLOC_DIR it counts nowhere. The allocations themselves are glibc's
 * (__libc_malloc and friends): nothing else changes.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

static uint64_t unmapped; /* counted before (or without) a file */
static uint64_t *counter = &unmapped;

static void map_counter(void)
{
    const char *dir = getenv("TP_ALLOC_DIR");
    counter = &unmapped;
    if (dir == NULL || dir[0] == '\0')
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%ld", dir, (long)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (ftruncate(fd, sizeof(uint64_t)) == 0) {
        void *m = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED)
            counter = m;
    }
    close(fd);
}

__attribute__((constructor)) static void start(void)
{
    map_counter();
    pthread_atfork(NULL, NULL, map_counter); /* a forked child counts its own */
}

static void count(void)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n)
{
    count();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    count();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    count();
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count();
    void *p = __libc_memalign(align, n);
    if (p == NULL)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

void *memalign(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

void *valloc(size_t n)
{
    count();
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n);
}
