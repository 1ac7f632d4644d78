/* Shared 64-bit counters read without the shard mutex.
 *
 * A partition's offsets (log end, durable, log start) are written by whoever holds the
 * shard mutex and read by Python threads and the event loop without it. Writers store
 * with release order and lock-free readers load with acquire order, so a reader that
 * sees an offset also sees the bytes committed before it and never a torn value. */
#ifndef PS_ATOMIC_H
#define PS_ATOMIC_H

#include <stdint.h>

static inline int64_t ps_load_i64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ps_store_i64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int32_t ps_load_i32(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ps_store_i32(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

#endif
