/* Fault injection points for tests: make the core's pwrite, fdatasync, open, rename or
 * fallocate fail with a chosen errno, on the files whose path contains a string (a
 * partition's directory: "/orders/0/"), after N matching calls, once, K times or for good.
 *
 * A table of up to PS_FAULT_SLOTS armed faults under a mutex; the I/O wrappers below consult
 * it only while `ps_faults_armed` (read relaxed) is non-zero, so an unarmed broker pays one
 * predictable branch per call. Armed from Python (pstream._core.arm_fault) or, for a broker
 * subprocess, from PSTREAM_FAULTS (see pstream/_corelib/faults.pxi). Redpanda's
 * honey_badger / file-level injection points play the same part there. */
#ifndef PS_FAULTS_H
#define PS_FAULTS_H
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "ps_io.h"

enum { PS_FAULT_PWRITE = 0, PS_FAULT_FDATASYNC, PS_FAULT_OPEN, PS_FAULT_RENAME, PS_FAULT_FALLOCATE, PS_FAULT_OPS };
#define PS_FAULT_SLOTS 16
#define PS_FAULT_MATCH 256

typedef struct {
    int used;
    int op;
    int err;                    /* errno to return */
    char match[PS_FAULT_MATCH]; /* path substring; "" matches every file */
    int64_t after;              /* matching calls to let through first */
    int64_t count;              /* failures left; -1: every call from then on (sticky) */
    int64_t hits;               /* failures injected so far */
} ps_fault;

static ps_fault ps_fault_table[PS_FAULT_SLOTS];
static pthread_mutex_t ps_fault_mu = PTHREAD_MUTEX_INITIALIZER;
static int ps_faults_armed = 0;

static inline int ps_fault_arm(int op, int err, const char *match, int64_t after, int64_t count) {
    int i, slot = -1;
    if (op < 0 || op >= PS_FAULT_OPS || err <= 0 || count == 0 || strlen(match) >= PS_FAULT_MATCH) return -1;
    pthread_mutex_lock(&ps_fault_mu);
    for (i = 0; i < PS_FAULT_SLOTS; i++) if (!ps_fault_table[i].used) { slot = i; break; }
    if (slot >= 0) {
        ps_fault *f = &ps_fault_table[slot];
        memset(f, 0, sizeof *f);
        f->used = 1; f->op = op; f->err = err; f->after = after; f->count = count;
        strcpy(f->match, match);
        __atomic_store_n(&ps_faults_armed, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&ps_fault_mu);
    return slot;
}

/* Disarms every fault; returns how many failures they injected in all. */
static inline int64_t ps_fault_disarm_all(void) {
    int64_t hits = 0;
    int i;
    pthread_mutex_lock(&ps_fault_mu);
    for (i = 0; i < PS_FAULT_SLOTS; i++) { hits += ps_fault_table[i].hits; ps_fault_table[i].used = 0; }
    __atomic_store_n(&ps_faults_armed, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&ps_fault_mu);
    return hits;
}

static inline int64_t ps_fault_hits(void) {
    int64_t hits = 0;
    int i;
    pthread_mutex_lock(&ps_fault_mu);
    for (i = 0; i < PS_FAULT_SLOTS; i++) if (ps_fault_table[i].used) hits += ps_fault_table[i].hits;
    pthread_mutex_unlock(&ps_fault_mu);
    return hits;
}

static int ps_fault_lookup(int op, const char *path) {
    int i, err = 0;
    pthread_mutex_lock(&ps_fault_mu);
    for (i = 0; i < PS_FAULT_SLOTS && !err; i++) {
        ps_fault *f = &ps_fault_table[i];
        if (!f->used || f->op != op || f->count == 0) continue;
        if (f->match[0] && (path == NULL || strstr(path, f->match) == NULL)) continue;
        if (f->after > 0) { f->after--; continue; }
        err = f->err;
        f->hits++;
        if (f->count > 0) f->count--;
    }
    pthread_mutex_unlock(&ps_fault_mu);
    return err;
}

/* 0, or the errno an armed fault injects for this call (errno is set too). */
static inline int ps_fault_hit(int op, const char *path) {
    int err;
    if (__builtin_expect(!__atomic_load_n(&ps_faults_armed, __ATOMIC_RELAXED), 1)) return 0;
    err = ps_fault_lookup(op, path);
    if (err) errno = err;
    return err;
}

/* The core's file calls that can fail on a full or broken disk, each behind its fault point. */

static inline int ps_f_open_for_write(const char *path, int want_direct, int *direct) {
    if (ps_fault_hit(PS_FAULT_OPEN, path)) { *direct = 0; return -1; }
    return ps_open_for_write(path, want_direct, direct);
}

static inline int ps_f_preallocate(const char *path, int fd, int64_t offset, int64_t len) {
    if (ps_fault_hit(PS_FAULT_FALLOCATE, path)) return -1;
    return ps_preallocate(fd, offset, len);
}

/* A short write before the failure, as a full disk gives: the first page lands, the rest fails. */
static inline int ps_f_pwrite_all(const char *path, int fd, const char *buf, size_t len, int64_t offset) {
    int err = ps_fault_hit(PS_FAULT_PWRITE, path);
    if (err) {
        if (len > PS_PAGE && ps_pwrite_all(fd, buf, PS_PAGE, offset) != 0) return -1;
        errno = err;
        return -1;
    }
    return ps_pwrite_all(fd, buf, len, offset);
}

static inline int ps_f_pwrite_frags(const char *path, int fd, const ps_frag *f, int n, int64_t last_len) {
    int err = ps_fault_hit(PS_FAULT_PWRITE, path);
    if (err) {
        if ((n > 1 || last_len > PS_PAGE) && f[0].len >= PS_PAGE &&
                ps_pwrite_all(fd, (const char *)f[0].data, PS_PAGE, f[0].start) != 0) return -1;
        errno = err;
        return -1;
    }
    return ps_pwrite_frags(fd, f, n, last_len);
}

static inline int ps_f_fdatasync(const char *path, int fd) {
    if (ps_fault_hit(PS_FAULT_FDATASYNC, path)) return -1;
    return ps_fdatasync(fd);
}

static inline int ps_f_rename(const char *from, const char *to) {
    if (ps_fault_hit(PS_FAULT_RENAME, from) || ps_fault_hit(PS_FAULT_RENAME, to)) return -1;
    return rename(from, to);
}

#endif
