/* Kafka's zigzag varints (ByteUtils.readVarint / writeVarint and the varlong pair).
 *
 * Readers return PS_OK or PS_ERR_BAD_VARINT (truncated, or longer than 5 bytes
 * for an int32 / 10 bytes for an int64) and advance *pos. Like Kafka, an int32
 * varint keeps the low 32 bits of what it accumulated before zigzag decoding.
 */
#ifndef PS_VARINT_H
#define PS_VARINT_H
#include <stddef.h>
#include <stdint.h>
#include "ps_status.h"

static inline int ps_read_uvarint_n(const uint8_t *buf, size_t end, size_t *pos, int max_bytes, uint64_t *out) {
    uint64_t value = 0;
    size_t p = *pos;
    for (int i = 0; i < max_bytes; i++) {
        if (p >= end) return PS_ERR_BAD_VARINT;
        uint8_t b = buf[p++];
        value |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) { *pos = p; *out = value; return PS_OK; }
    }
    return PS_ERR_BAD_VARINT;
}

static inline int ps_read_varint(const uint8_t *buf, size_t end, size_t *pos, int32_t *out) {
    uint64_t raw;
    /* fast path: one byte */
    if (*pos < end && !(buf[*pos] & 0x80)) {
        uint32_t u = buf[(*pos)++];
        *out = (int32_t)((u >> 1) ^ (0u - (u & 1)));
        return PS_OK;
    }
    int st = ps_read_uvarint_n(buf, end, pos, 5, &raw);
    if (st) return st;
    uint32_t u = (uint32_t)raw;
    *out = (int32_t)((u >> 1) ^ (0u - (u & 1)));
    return PS_OK;
}

static inline int ps_read_varlong(const uint8_t *buf, size_t end, size_t *pos, int64_t *out) {
    uint64_t u;
    int st = ps_read_uvarint_n(buf, end, pos, 10, &u);
    if (st) return st;
    *out = (int64_t)((u >> 1) ^ (0ull - (u & 1)));
    return PS_OK;
}

static inline size_t ps_sizeof_varlong(int64_t v) {
    uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 1;
    while (u >= 0x80) { u >>= 7; n++; }
    return n;
}

static inline size_t ps_sizeof_varint(int32_t v) { return ps_sizeof_varlong((int64_t)v); }

/* Writes the zigzag varlong of v at buf and returns the bytes written (<= 10). */
static inline size_t ps_write_varlong(uint8_t *buf, int64_t v) {
    uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 0;
    while (u >= 0x80) { buf[n++] = (uint8_t)(u | 0x80); u >>= 7; }
    buf[n++] = (uint8_t)u;
    return n;
}

static inline size_t ps_write_varint(uint8_t *buf, int32_t v) { return ps_write_varlong(buf, (int64_t)v); }

#endif
