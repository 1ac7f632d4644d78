/* How shard threads tell others that partitions moved: doorbells for event loops, a
 * condition for threads.
 *
 * One ps_bells per shard pool. Shard threads ring while holding their shard mutex.
 *  - Doorbells: up to PS_MAX_BELLS eventfds (or pipes), one per event loop that awaits
 *    offsets (several loops: an application's and a broker served from a thread). A ring
 *    writes to all of them; each loop drains its own and rechecks what it waits for.
 *    The list changes only with every shard mutex held, so a ring never sees it half made.
 *  - Followers: threads blocked (GIL released) until some partition's high watermark
 *    moves. `gen` counts moves seen while anyone followed; a follower enters (waiters + 1)
 *    before it reads the offsets, so a move it did not see is one that bumps gen after its
 *    read: it either sees gen changed or is woken by the broadcast. Without followers a
 *    move costs one fence and one load. */
#ifndef PS_BELLS_H
#define PS_BELLS_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include "ps_io.h"

#define PS_MAX_BELLS 16

typedef struct {
    int fds[PS_MAX_BELLS];        /* write ends; [all shard mutexes] to change, [a shard mutex] to ring */
    int n;
    pthread_mutex_t mu;           /* guards the wait below */
    pthread_cond_t cond;          /* CLOCK_MONOTONIC */
    uint64_t gen;                 /* [atomic] */
    int waiters;                  /* [atomic] followers inside ps_follow_enter/leave */
    int closed;                   /* [atomic] the pool stops: followers return */
    uint32_t *shared_seq;         /* [all shard mutexes] a counter in a page other processes map
                                   * (<data>/@readable): bumped, and its futex woken, whenever a
                                   * partition publishes new durable offsets; or NULL */
} ps_bells;

static inline int ps_bells_init(ps_bells *b) {
    pthread_condattr_t attr;
    b->n = 0;
    b->gen = 0;
    b->waiters = 0;
    b->closed = 0;
    b->shared_seq = NULL;
    if (pthread_mutex_init(&b->mu, NULL) != 0) return -1;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&b->cond, &attr) != 0) return -1;
    pthread_condattr_destroy(&attr);
    return 0;
}

static inline void ps_bells_destroy(ps_bells *b) {
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cond);
}

static inline void ps_bells_ring(ps_bells *b) {
    for (int i = 0; i < b->n; i++) ps_doorbell_ring(b->fds[i]);
}

/* A partition's high watermark moved (its new value is stored before this call). */
static inline void ps_bells_moved(ps_bells *b) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);   /* the store above, before the load below */
    if (__atomic_load_n(&b->waiters, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&b->mu);
        __atomic_add_fetch(&b->gen, 1, __ATOMIC_SEQ_CST);
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->mu);
    }
}

/* A partition published new durable offsets (part_publish): read-only readers in other
 * processes wait on the shared counter's futex. One syscall per fdatasync at most. */
static inline void ps_bells_publish(ps_bells *b) {
    if (b->shared_seq == NULL) return;
    __atomic_add_fetch(b->shared_seq, 1, __ATOMIC_SEQ_CST);
#ifdef __linux__
    syscall(SYS_futex, b->shared_seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#endif
}

/* A reader's wait on a shared counter (mapped from <data>/@readable): returns once it differs
 * from `seen`, is woken, or timeout_ns passes (spurious returns allowed: the caller looks again). */
static inline void ps_shared_seq_wait(const uint32_t *seq, uint32_t seen, int64_t timeout_ns) {
#ifdef __linux__
    struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
    syscall(SYS_futex, seq, FUTEX_WAIT, seen, &ts, NULL, 0);
#else
    struct timespec ts = {0, timeout_ns < 1000000 ? timeout_ns : 1000000};
    (void)seq; (void)seen;
    nanosleep(&ts, NULL);
#endif
}

static inline void ps_bells_close(ps_bells *b) {
    pthread_mutex_lock(&b->mu);
    __atomic_store_n(&b->closed, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&b->gen, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

static inline void ps_follow_enter(ps_bells *b) { __atomic_add_fetch(&b->waiters, 1, __ATOMIC_SEQ_CST); }
static inline void ps_follow_leave(ps_bells *b) { __atomic_sub_fetch(&b->waiters, 1, __ATOMIC_SEQ_CST); }
static inline uint64_t ps_follow_gen(ps_bells *b) { return __atomic_load_n(&b->gen, __ATOMIC_SEQ_CST); }
static inline int ps_bells_closed(ps_bells *b) { return __atomic_load_n(&b->closed, __ATOMIC_SEQ_CST); }

/* Waits (between enter and leave) until gen differs from `seen` or the monotonic clock
 * passes deadline_ns; returns 0, or ETIMEDOUT. */
static inline int ps_follow_wait(ps_bells *b, uint64_t seen, int64_t deadline_ns) {
    struct timespec ts;
    int rc = 0;
    ts.tv_sec = deadline_ns / 1000000000;
    ts.tv_nsec = deadline_ns % 1000000000;
    pthread_mutex_lock(&b->mu);
    while (__atomic_load_n(&b->gen, __ATOMIC_SEQ_CST) == seen && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&b->cond, &b->mu, &ts);
    pthread_mutex_unlock(&b->mu);
    return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

#endif
