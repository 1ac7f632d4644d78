/* The shard mutex, and the rule that it is only taken without the GIL.
 *
 * ps_mutex wraps a pthread mutex. Debug builds (PS_DEBUG_LOCKS, set by
 * PSTREAM_DEBUG_BUILD=1) also record the owning thread, so that code documented as
 * "mutex held" can assert it (ps_mutex_assert_held) and a wrong unlock aborts with a
 * message instead of corrupting state. Release builds compile the checks away.
 *
 * Threads holding the GIL never block on a ps_mutex while keeping the GIL: they try
 * first and, when the mutex is busy, drop the GIL to wait (ps_lock_with_gil_released in
 * the Cython layer). A shard thread holding the mutex therefore never stalls Python. */
#ifndef PS_LOCK_H
#define PS_LOCK_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    pthread_mutex_t mu;
#ifdef PS_DEBUG_LOCKS
    pthread_t owner;
    int held;
#endif
} ps_mutex;

#ifdef PS_DEBUG_LOCKS
#include <Python.h>
#define PS_LOCK_CHECKS 1
static inline void ps__lock_fail(const char *what) {
    fprintf(stderr, "pstream: lock contract broken: %s\n", what);
    abort();
}
/* A thread that blocks on the mutex with the GIL held deadlocks against one that holds
 * the mutex and waits for the GIL (lock_with_gil_released takes the GIL back last). */
static inline void ps__assert_no_gil(void) {
    if (PyGILState_Check()) ps__lock_fail("blocking on the shard mutex while holding the GIL");
}
static inline void ps__note_owner(ps_mutex *m) {
    if (m->held) ps__lock_fail("mutex acquired while marked held");
    m->owner = pthread_self();
    m->held = 1;
}
static inline void ps__clear_owner(ps_mutex *m) {
    if (!m->held || !pthread_equal(m->owner, pthread_self()))
        ps__lock_fail("mutex released by a thread that does not hold it");
    m->held = 0;
}
static inline void ps_mutex_assert_held(ps_mutex *m) {
    if (!m->held || !pthread_equal(m->owner, pthread_self()))
        ps__lock_fail("code that needs the shard mutex runs without it");
}
#else
#define PS_LOCK_CHECKS 0
#define ps__note_owner(m) ((void)0)
#define ps__clear_owner(m) ((void)0)
#define ps_mutex_assert_held(m) ((void)0)
#define ps__assert_no_gil() ((void)0)
#endif

static inline int ps_mutex_init(ps_mutex *m) {
#ifdef PS_DEBUG_LOCKS
    m->held = 0;
#endif
    return pthread_mutex_init(&m->mu, NULL);
}

static inline void ps_mutex_destroy(ps_mutex *m) { pthread_mutex_destroy(&m->mu); }

static inline void ps_mutex_lock(ps_mutex *m) {
    ps__assert_no_gil();
    pthread_mutex_lock(&m->mu);
    ps__note_owner(m);
}

/* 0 when acquired, nonzero when another thread holds it. */
static inline int ps_mutex_trylock(ps_mutex *m) {
    int rc = pthread_mutex_trylock(&m->mu);
    if (rc == 0) ps__note_owner(m);
    return rc;
}

static inline void ps_mutex_unlock(ps_mutex *m) {
    ps__clear_owner(m);
    pthread_mutex_unlock(&m->mu);
}

static inline int ps_cond_wait(pthread_cond_t *c, ps_mutex *m) {
    int rc;
    ps__assert_no_gil();
    ps__clear_owner(m);
    rc = pthread_cond_wait(c, &m->mu);
    ps__note_owner(m);
    return rc;
}

static inline int ps_cond_timedwait(pthread_cond_t *c, ps_mutex *m, const struct timespec *t) {
    int rc;
    ps__assert_no_gil();
    ps__clear_owner(m);
    rc = pthread_cond_timedwait(c, &m->mu, t);
    ps__note_owner(m);
    return rc;
}

#endif
