# C declarations used by the core: only what is used, in one place.

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, INT64_MAX
from libc.string cimport memcpy, memmove, memset, strlen, strncpy
from libc.stdio cimport snprintf
from libc.stdlib cimport malloc, calloc, free, realloc
from libc.errno cimport errno, EINVAL, EINTR, ETIMEDOUT, EIO, ENOSPC, EDQUOT
from posix.unistd cimport close, unlink
from posix.types cimport off_t


cdef extern from "<sys/types.h>" nogil:
    ctypedef long ssize_t


cdef extern from "ps_status.h" nogil:
    ctypedef enum ps_status:
        PS_OK
        PS_ERR_SHORT_BUFFER
        PS_ERR_BAD_MAGIC
        PS_ERR_LENGTH_MISMATCH
        PS_ERR_CRC_MISMATCH
        PS_ERR_BAD_VARINT
        PS_ERR_RECORD_COUNT
        PS_ERR_COMPRESSION
        PS_ERR_BAD_RECORD
        PS_ERR_IO
        PS_ERR_NO_MEMORY
        PS_ERR_TOO_LARGE
        PS_ERR_CLOSED
        PS_ERR_OFFSET_GAP


cdef extern from "ps_endian.h" nogil:
    uint16_t ps_load_be16(const uint8_t *p)
    uint32_t ps_load_be32(const uint8_t *p)
    uint64_t ps_load_be64(const uint8_t *p)
    void ps_store_be16(uint8_t *p, uint16_t v)
    void ps_store_be32(uint8_t *p, uint32_t v)
    void ps_store_be64(uint8_t *p, uint64_t v)


cdef extern from "ps_varint.h" nogil:
    int ps_read_varint(const uint8_t *buf, size_t end, size_t *pos, int32_t *out)
    int ps_read_varlong(const uint8_t *buf, size_t end, size_t *pos, int64_t *out)
    size_t ps_sizeof_varint(int32_t v)
    size_t ps_sizeof_varlong(int64_t v)
    size_t ps_write_varint(uint8_t *buf, int32_t v)
    size_t ps_write_varlong(uint8_t *buf, int64_t v)


cdef extern from "ps_crc32c.h" nogil:
    void ps_crc32c_init()
    uint32_t ps_crc32c(uint32_t crc, const void *buf, size_t length)
    uint32_t ps_crc32c_sw(uint32_t crc, const void *buf, size_t length)
    const char *ps_crc32c_impl()


cdef extern from "ps_batch.h" nogil:
    enum:
        PS_BATCH_HEADER_SIZE
        PS_BATCH_LOG_OVERHEAD
        PS_MAGIC_V2
        PS_OFF_BASE_OFFSET
        PS_OFF_LENGTH
        PS_OFF_LEADER_EPOCH
        PS_OFF_MAGIC
        PS_OFF_CRC
        PS_OFF_ATTRIBUTES
        PS_OFF_LAST_OFFSET_DELTA
        PS_OFF_BASE_TIMESTAMP
        PS_OFF_MAX_TIMESTAMP
        PS_OFF_PRODUCER_ID
        PS_OFF_PRODUCER_EPOCH
        PS_OFF_BASE_SEQUENCE
        PS_OFF_RECORD_COUNT
        PS_ATTR_COMPRESSION_MASK
        PS_ATTR_TIMESTAMP_TYPE
        PS_ATTR_TRANSACTIONAL
        PS_ATTR_CONTROL

    ctypedef struct ps_batch_header:
        int64_t base_offset
        int32_t batch_length
        int32_t partition_leader_epoch
        int8_t magic
        uint32_t crc
        int16_t attributes
        int32_t last_offset_delta
        int64_t base_timestamp
        int64_t max_timestamp
        int64_t producer_id
        int16_t producer_epoch
        int32_t base_sequence
        int32_t record_count

    ctypedef struct ps_record:
        int8_t attributes
        int64_t timestamp_delta
        int32_t offset_delta
        int32_t key_len
        size_t key_pos
        int32_t value_len
        size_t value_pos
        int32_t header_count
        size_t headers_pos
        size_t end

    void ps_batch_read_header(const uint8_t *p, ps_batch_header *h)
    int ps_batch_validate(const uint8_t *p, size_t n, int check_crc, ps_batch_header *h, size_t *errpos)
    int ps_read_bytes_field(const uint8_t *s, size_t end, size_t *pos, int nullable,
                            int32_t *length, size_t *data_pos, size_t *errpos)
    int ps_record_parse(const uint8_t *s, size_t n, size_t *pos, ps_record *r, size_t *errpos)
    int ps_records_validate(const uint8_t *s, size_t n, int32_t count, size_t *errpos)


cdef extern from "ps_io.h" nogil:
    enum:
        PS_PAGE
        PS_HAVE_O_DIRECT
        PS_FRAGS_MAX
        PS_CHAIN_MAX
    ctypedef struct ps_frag:
        uint8_t *data
        int64_t cap
        int64_t start
        int64_t len
    int64_t ps_page_floor(int64_t v)
    int64_t ps_page_ceil(int64_t v)
    void *ps_aligned_alloc(size_t size)
    int ps_open_for_write(const char *path, int want_direct, int *direct)
    int ps_preallocate(int fd, int64_t offset, int64_t length)
    int ps_fdatasync(int fd)
    int ps_pwrite_all(int fd, const char *buf, size_t length, int64_t offset)
    ssize_t ps_pread_all(int fd, char *buf, size_t length, int64_t offset)
    int ps_open_direct_read(const char *path)
    ssize_t ps_pread_direct(int fd, char *buf, size_t length, int64_t offset)
    int64_t ps_now_ms()
    void ps_set_errno(int e)
    int64_t ps_monotonic_ns()
    int64_t *ps_map_published(const char *path)
    void ps_unmap_published(int64_t *m)
    int ps_doorbell_open(int fds[2])
    void ps_doorbell_ring(int fd)
    void ps_doorbell_drain(int fd)
    int ftruncate(int fd, off_t length)
    off_t lseek(int fd, off_t offset, int whence)
    int c_open "open"(const char *path, int flags, ...)
    int O_RDONLY
    int O_WRONLY
    int O_CREAT
    int O_CLOEXEC
    int fcntl(int fd, int cmd, ...)
    int F_GETFL
    int O_DIRECT


cdef extern from "ps_murmur2.h" nogil:
    uint32_t ps_murmur2(const uint8_t *data, size_t length)


cdef extern from "ps_bells.h" nogil:
    enum:
        PS_MAX_BELLS
    ctypedef struct ps_bells:
        int fds[16]
        int n
        uint32_t *shared_seq
    int ps_bells_init(ps_bells *b)
    void ps_bells_destroy(ps_bells *b)
    void ps_bells_ring(ps_bells *b)
    void ps_bells_moved(ps_bells *b)
    void ps_bells_close(ps_bells *b)
    void ps_bells_publish(ps_bells *b)
    void ps_shared_seq_wait(const uint32_t *seq, uint32_t seen, int64_t timeout_ns)
    int ps_bells_closed(ps_bells *b)
    void ps_follow_enter(ps_bells *b)
    void ps_follow_leave(ps_bells *b)
    uint64_t ps_follow_gen(ps_bells *b)
    int ps_follow_wait(ps_bells *b, uint64_t seen, int64_t deadline_ns)


cdef extern from "ps_faults.h" nogil:
    enum:
        PS_FAULT_PWRITE
        PS_FAULT_FDATASYNC
        PS_FAULT_OPEN
        PS_FAULT_RENAME
        PS_FAULT_FALLOCATE
    int ps_fault_arm(int op, int err, const char *match, int64_t after, int64_t count)
    int64_t ps_fault_disarm_all()
    int64_t ps_fault_hits()
    int ps_f_open_for_write(const char *path, int want_direct, int *direct)
    int ps_f_preallocate(const char *path, int fd, int64_t offset, int64_t length)
    int ps_f_pwrite_all(const char *path, int fd, const char *buf, size_t length, int64_t offset)
    int ps_f_pwrite_frags(const char *path, int fd, const ps_frag *f, int n, int64_t last_len)
    int ps_f_fdatasync(const char *path, int fd)
    int ps_f_rename(const char *src, const char *dst)


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    ctypedef struct pthread_condattr_t:
        pass
    int pthread_create(pthread_t *thread, void *attr, void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t thread, void **retval)
    int pthread_condattr_init(pthread_condattr_t *a)
    int pthread_condattr_setclock(pthread_condattr_t *a, int clock)
    int pthread_cond_init(pthread_cond_t *c, pthread_condattr_t *a)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_signal(pthread_cond_t *c)
    int pthread_cond_broadcast(pthread_cond_t *c)


cdef extern from "<time.h>" nogil:
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    int CLOCK_MONOTONIC


# Mutexes only through ps_lock.h (owner checks in debug builds); see lock_with_gil_released.
cdef extern from "ps_lock.h" nogil:
    ctypedef struct ps_mutex:
        pass
    int PS_LOCK_CHECKS
    int ps_mutex_init(ps_mutex *m)
    void ps_mutex_destroy(ps_mutex *m)
    void ps_mutex_lock(ps_mutex *m)
    int ps_mutex_trylock(ps_mutex *m)
    void ps_mutex_unlock(ps_mutex *m)
    void ps_mutex_assert_held(ps_mutex *m)
    int ps_cond_wait(pthread_cond_t *c, ps_mutex *m)
    int ps_cond_timedwait(pthread_cond_t *c, ps_mutex *m, const timespec *t)


cdef extern from "ps_atomic.h" nogil:
    int64_t ps_load_i64(const int64_t *p)
    void ps_store_i64(int64_t *p, int64_t v)
    int32_t ps_load_i32(const int32_t *p)
    void ps_store_i32(int32_t *p, int32_t v)


cdef inline void lock_with_gil_released(ps_mutex *m) noexcept:
    """Takes a shard mutex from a thread that holds the GIL: tries, and when the mutex is
    busy waits for it with the GIL released, so a shard holding it never stalls Python."""
    if ps_mutex_trylock(m) != 0:
        with nogil:
            ps_mutex_lock(m)


from cpython.ref cimport PyObject, Py_XDECREF

cdef extern from "Python.h":
    PyObject *new_bytes_ptr "PyBytes_FromStringAndSize"(const char *data, Py_ssize_t size)
    char *bytes_ptr_data "PyBytes_AS_STRING"(PyObject *obj) nogil
    int _PyBytes_Resize(PyObject **obj, Py_ssize_t size)

cdef extern from "<string.h>" nogil:
    char *strdup(const char *s)
