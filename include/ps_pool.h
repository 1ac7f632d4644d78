/* The write-buffer budget of one shard (pstream/storage/shard.pxi owns it).
 *
 * Segments take their page-aligned write buffers here and give them back; the bytes handed
 * out never exceed `capacity`. Counted with atomics, so a buffer freed outside the shard's
 * mutex (a failed segment dropped at close) is still counted, and a metrics reader needs no
 * lock. The buffers themselves come from posix_memalign (glibc keeps freed ones for reuse). */
#ifndef PS_POOL_H
#define PS_POOL_H

#include <stdint.h>
#include <stdlib.h>
#include "ps_io.h"

typedef struct {
    int64_t capacity;   /* budget in bytes (set once, before the shard starts) */
    int64_t in_use;     /* bytes handed out now */
    int64_t peak;       /* greatest in_use so far */
    int64_t waits;      /* appends that found the budget spent and waited (back-pressure) */
    int64_t released;   /* times an idle partition gave its buffers back */
    int64_t chained;    /* batches that did not fit and went on into a chained buffer */
} ps_pool;

/* A buffer of `bytes` (a multiple of the page), or NULL: *over is 1 when the budget is
 * spent (wait and try again), 0 when malloc failed. */
static inline uint8_t *ps_pool_take(ps_pool *pool, int64_t bytes, int *over) {
    int64_t now = __atomic_add_fetch(&pool->in_use, bytes, __ATOMIC_RELAXED);
    int64_t peak;
    uint8_t *p;
    if (now > pool->capacity) {
        __atomic_sub_fetch(&pool->in_use, bytes, __ATOMIC_RELAXED);
        *over = 1;
        return NULL;
    }
    p = (uint8_t *)ps_aligned_alloc((size_t)bytes);
    if (p == NULL) {
        __atomic_sub_fetch(&pool->in_use, bytes, __ATOMIC_RELAXED);
        *over = 0;
        return NULL;
    }
    peak = __atomic_load_n(&pool->peak, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&pool->peak, &peak, now, 1, __ATOMIC_RELAXED,
                                                      __ATOMIC_RELAXED)) {
    }
    return p;
}

static inline void ps_pool_give(ps_pool *pool, uint8_t *p, int64_t bytes) {
    if (p == NULL) return;
    free(p);
    if (pool != NULL) __atomic_sub_fetch(&pool->in_use, bytes, __ATOMIC_RELAXED);
}

static inline int64_t ps_pool_load(const int64_t *counter) {
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static inline void ps_pool_count(int64_t *counter) {
    __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
}

/* Bytes of every segment's index arrays in the process (index.pxi counts its reallocs and frees). */
static int64_t ps_index_bytes = 0;

static inline void ps_index_bytes_add(int64_t delta) {
    __atomic_add_fetch(&ps_index_bytes, delta, __ATOMIC_RELAXED);
}

static inline int64_t ps_index_bytes_now(void) {
    return __atomic_load_n(&ps_index_bytes, __ATOMIC_RELAXED);
}

#endif
