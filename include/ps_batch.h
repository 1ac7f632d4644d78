/* Kafka record batch v2 (magic 2): header layout, validation and record parsing.
 *
 * Layout of the 61-byte header, big-endian:
 *   0 baseOffset int64 | 8 batchLength int32 | 12 partitionLeaderEpoch int32 | 16 magic int8
 *   17 crc uint32 (CRC-32C of bytes 21..end) | 21 attributes int16 | 23 lastOffsetDelta int32
 *   27 baseTimestamp int64 | 35 maxTimestamp int64 | 43 producerId int64 | 51 producerEpoch int16
 *   53 baseSequence int32 | 57 recordCount int32 | 61 records...
 * baseOffset, batchLength and partitionLeaderEpoch sit before the CRC'd range, so the
 * broker can assign offsets without recomputing the checksum.
 *
 * Every function returns a ps_status and, on failure, the byte position of the fault
 * in *errpos. The check order is a contract shared with pstream/record/reference.py.
 */
#ifndef PS_BATCH_H
#define PS_BATCH_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "ps_status.h"
#include "ps_endian.h"
#include "ps_varint.h"
#include "ps_crc32c.h"
#include "ps_utf8.h"

#define PS_BATCH_HEADER_SIZE 61
#define PS_BATCH_LOG_OVERHEAD 12  /* baseOffset + batchLength */
#define PS_MAGIC_V2 2

#define PS_OFF_BASE_OFFSET 0
#define PS_OFF_LENGTH 8
#define PS_OFF_LEADER_EPOCH 12
#define PS_OFF_MAGIC 16
#define PS_OFF_CRC 17
#define PS_OFF_ATTRIBUTES 21
#define PS_OFF_LAST_OFFSET_DELTA 23
#define PS_OFF_BASE_TIMESTAMP 27
#define PS_OFF_MAX_TIMESTAMP 35
#define PS_OFF_PRODUCER_ID 43
#define PS_OFF_PRODUCER_EPOCH 51
#define PS_OFF_BASE_SEQUENCE 53
#define PS_OFF_RECORD_COUNT 57

#define PS_ATTR_COMPRESSION_MASK 0x07
#define PS_ATTR_TIMESTAMP_TYPE 0x08
#define PS_ATTR_TRANSACTIONAL 0x10
#define PS_ATTR_CONTROL 0x20

typedef struct {
    int64_t base_offset;
    int32_t batch_length;
    int32_t partition_leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t record_count;
} ps_batch_header;

static inline void ps_batch_read_header(const uint8_t *p, ps_batch_header *h) {
    h->base_offset = (int64_t)ps_load_be64(p + PS_OFF_BASE_OFFSET);
    h->batch_length = (int32_t)ps_load_be32(p + PS_OFF_LENGTH);
    h->partition_leader_epoch = (int32_t)ps_load_be32(p + PS_OFF_LEADER_EPOCH);
    h->magic = (int8_t)p[PS_OFF_MAGIC];
    h->crc = ps_load_be32(p + PS_OFF_CRC);
    h->attributes = (int16_t)ps_load_be16(p + PS_OFF_ATTRIBUTES);
    h->last_offset_delta = (int32_t)ps_load_be32(p + PS_OFF_LAST_OFFSET_DELTA);
    h->base_timestamp = (int64_t)ps_load_be64(p + PS_OFF_BASE_TIMESTAMP);
    h->max_timestamp = (int64_t)ps_load_be64(p + PS_OFF_MAX_TIMESTAMP);
    h->producer_id = (int64_t)ps_load_be64(p + PS_OFF_PRODUCER_ID);
    h->producer_epoch = (int16_t)ps_load_be16(p + PS_OFF_PRODUCER_EPOCH);
    h->base_sequence = (int32_t)ps_load_be32(p + PS_OFF_BASE_SEQUENCE);
    h->record_count = (int32_t)ps_load_be32(p + PS_OFF_RECORD_COUNT);
}

/* Framing only (no magic, no CRC): the size of the batch at p[0:n] in *size.
 * PS_ERR_SHORT_BUFFER: fewer bytes than a header or the declared length (a partial tail);
 * PS_ERR_LENGTH_MISMATCH: a batch length smaller than a v2 header (not a batch boundary).
 * Offset and length sit at the same place in every message format, so a reader can cut
 * any log at batch boundaries with this. */
static inline int ps_batch_frame(const uint8_t *p, size_t n, size_t *size) {
    if (n < PS_BATCH_HEADER_SIZE) return PS_ERR_SHORT_BUFFER;
    int32_t length = (int32_t)ps_load_be32(p + PS_OFF_LENGTH);
    if (length < PS_BATCH_HEADER_SIZE - PS_BATCH_LOG_OVERHEAD) return PS_ERR_LENGTH_MISMATCH;
    size_t total = (size_t)length + PS_BATCH_LOG_OVERHEAD;
    if (n < total) return PS_ERR_SHORT_BUFFER;
    *size = total;
    return PS_OK;
}

/* Checks a-f of the contract: sizes, magic, CRC (when check_crc), record count sign. */
static inline int ps_batch_validate(const uint8_t *p, size_t n, int check_crc, ps_batch_header *h, size_t *errpos) {
    if (n < PS_BATCH_HEADER_SIZE) { *errpos = n; return PS_ERR_SHORT_BUFFER; }
    ps_batch_read_header(p, h);
    if (h->batch_length < PS_BATCH_HEADER_SIZE - PS_BATCH_LOG_OVERHEAD) { *errpos = PS_OFF_LENGTH; return PS_ERR_LENGTH_MISMATCH; }
    size_t total = (size_t)h->batch_length + PS_BATCH_LOG_OVERHEAD;
    if (n < total) { *errpos = n; return PS_ERR_SHORT_BUFFER; }
    if (h->magic != PS_MAGIC_V2) { *errpos = PS_OFF_MAGIC; return PS_ERR_BAD_MAGIC; }
    if (check_crc && ps_crc32c(0, p + PS_OFF_ATTRIBUTES, total - PS_OFF_ATTRIBUTES) != h->crc) {
        *errpos = PS_OFF_CRC; return PS_ERR_CRC_MISMATCH;
    }
    if (h->record_count < 0) { *errpos = PS_OFF_RECORD_COUNT; return PS_ERR_RECORD_COUNT; }
    return PS_OK;
}

/* One parsed record: positions are relative to the start of the records section. */
typedef struct {
    int8_t attributes;
    int64_t timestamp_delta;
    int32_t offset_delta;
    int32_t key_len;      /* -1: null */
    size_t key_pos;
    int32_t value_len;    /* -1: null */
    size_t value_pos;
    int32_t header_count;
    size_t headers_pos;   /* first header */
    size_t end;           /* position after the record */
} ps_record;

/* Reads a length-prefixed byte field inside [.., end): *len may be -1 (null) when nullable. */
static inline int ps_read_bytes_field(const uint8_t *s, size_t end, size_t *pos, int nullable,
                                      int32_t *len, size_t *data_pos, size_t *errpos) {
    size_t start = *pos;
    int st = ps_read_varint(s, end, pos, len);
    if (st) { *errpos = start; return st; }
    if (*len < (nullable ? -1 : 0)) { *errpos = start; return PS_ERR_BAD_RECORD; }
    *data_pos = *pos;
    if (*len > 0) {
        if ((size_t)*len > end - *pos) { *errpos = *pos; return PS_ERR_BAD_RECORD; }
        *pos += (size_t)*len;
    }
    return PS_OK;
}

/* Parses the record starting at *pos of the section s[0:n]; on success advances *pos.
 * Header keys are checked for UTF-8 by the caller (it decodes them). */
static inline int ps_record_parse(const uint8_t *s, size_t n, size_t *pos, ps_record *r, size_t *errpos) {
    size_t start = *pos, p = *pos;
    int32_t length;
    int st = ps_read_varint(s, n, &p, &length);
    if (st) { *errpos = start; return st; }
    if (length < 0 || (size_t)length > n - p) { *errpos = start; return PS_ERR_BAD_RECORD; }
    size_t end = p + (size_t)length;
    size_t at;
    if (p >= end) { *errpos = p; return PS_ERR_BAD_RECORD; }
    r->attributes = (int8_t)s[p++];
    at = p;
    if ((st = ps_read_varlong(s, end, &p, &r->timestamp_delta))) { *errpos = at; return st; }
    at = p;
    if ((st = ps_read_varint(s, end, &p, &r->offset_delta))) { *errpos = at; return st; }
    if ((st = ps_read_bytes_field(s, end, &p, 1, &r->key_len, &r->key_pos, errpos))) return st;
    if ((st = ps_read_bytes_field(s, end, &p, 1, &r->value_len, &r->value_pos, errpos))) return st;
    at = p;
    if ((st = ps_read_varint(s, end, &p, &r->header_count))) { *errpos = at; return st; }
    if (r->header_count < 0) { *errpos = at; return PS_ERR_BAD_RECORD; }
    r->headers_pos = p;
    for (int32_t i = 0; i < r->header_count; i++) {
        int32_t hlen; size_t hpos;
        if ((st = ps_read_bytes_field(s, end, &p, 0, &hlen, &hpos, errpos))) return st;
        if ((st = ps_read_bytes_field(s, end, &p, 1, &hlen, &hpos, errpos))) return st;
    }
    if (p != end) { *errpos = start; return PS_ERR_BAD_RECORD; }
    r->end = end;
    *pos = end;
    return PS_OK;
}

/* Checks h-i of the contract over an (uncompressed) records section, without
 * building anything. UTF-8 of header keys is not checked here. */
static inline int ps_records_validate(const uint8_t *s, size_t n, int32_t count, size_t *errpos) {
    size_t pos = 0;
    ps_record r;
    for (int32_t i = 0; i < count; i++) {
        if (pos >= n) { *errpos = pos; return PS_ERR_RECORD_COUNT; }
        int st = ps_record_parse(s, n, &pos, &r, errpos);
        if (st) return st;
    }
    if (pos != n) { *errpos = pos; return PS_ERR_RECORD_COUNT; }
    return PS_OK;
}

/* --- what a broker checks before storing a batch (Kafka's LogValidator) ---------------------
 *
 * The walk goes once over a records section, possibly handed over in pieces (a compressed
 * section is decompressed a chunk at a time and never held whole): every record is parsed
 * with ps_record_parse, its offset delta must be its index, and with check_timestamps its
 * timestamp must be inside [min_timestamp, max_timestamp] (CreateTime topics) and the batch
 * must not claim LogAppendTime for itself, as LogValidator.validateTimestamp rules.
 * With require_key (a compacted topic) a record without a key is refused, as
 * LogValidator.validateKey rules; Kafka reports every such record, so the walk goes on
 * past them, counting them and keeping their indexes (keyless_at, grown with realloc; the
 * caller frees it), and skips the timestamp check of a keyless record (Kafka reports one
 * error per record, the key's first). At the end the records walked must be exactly the
 * batch's record count, ending exactly at the end of the section.
 */
typedef enum {
    PS_FAULT_NONE = 0,
    PS_FAULT_STRUCTURE = 1,       /* status says which: varint, record length, count */
    PS_FAULT_OFFSET_DELTA = 2,    /* record i has an offset delta other than i */
    PS_FAULT_TIMESTAMP = 3,       /* a CreateTime timestamp outside the allowed range */
    PS_FAULT_TIMESTAMP_TYPE = 4,  /* the producer set LogAppendTime on its batch */
    PS_FAULT_HEADER_KEY = 5,      /* a header key that is not UTF-8 */
    PS_FAULT_NO_KEY = 6,          /* require_key: records without a key (keyless, keyless_at) */
} ps_record_fault;

typedef struct {
    /* set by the caller */
    int32_t count;                /* the batch header's record count */
    int64_t base_timestamp;
    int64_t batch_max_timestamp;
    int batch_log_append_time;    /* the batch's timestamp-type attribute */
    int check_timestamps;
    int topic_create_time;        /* the topic keeps the producer's timestamps */
    int64_t min_timestamp, max_timestamp;
    int require_key;              /* set after ps_record_walk_init: a compacted topic's rule */
    /* kept by the walk */
    int32_t index;                /* records walked */
    size_t walked;                /* section bytes walked in earlier pieces */
    size_t cut_end;               /* after a piece: where the record it cut ends in the section (0: unknown) */
    /* the first fault: record index (-1: the batch as a whole), section position */
    ps_record_fault fault;
    int32_t fault_index;
    size_t fault_pos;
    int64_t fault_value;          /* the offending offset delta or timestamp */
    int32_t keyless;              /* require_key: records without a key walked so far */
    int32_t *keyless_at;          /* ... their indexes (malloc'ed; the caller frees it) */
    int32_t keyless_cap;
    size_t keyless_pos;           /* section position of the first one */
} ps_record_walk;

static inline void ps_record_walk_init(ps_record_walk *w, const ps_batch_header *h, int check_timestamps,
                                       int topic_create_time, int64_t min_ts, int64_t max_ts) {
    w->count = h->record_count;
    w->base_timestamp = h->base_timestamp;
    w->batch_max_timestamp = h->max_timestamp;
    w->batch_log_append_time = (h->attributes & PS_ATTR_TIMESTAMP_TYPE) != 0;
    w->check_timestamps = check_timestamps;
    w->topic_create_time = topic_create_time;
    w->min_timestamp = min_ts;
    w->max_timestamp = max_ts;
    w->index = 0;
    w->walked = 0;
    w->cut_end = 0;
    w->fault = PS_FAULT_NONE;
    w->fault_index = -1;
    w->fault_pos = 0;
    w->fault_value = 0;
    w->require_key = 0;
    w->keyless = 0;
    w->keyless_at = NULL;
    w->keyless_cap = 0;
    w->keyless_pos = 0;
}

/* Notes record `index` as keyless; PS_ERR_NO_MEMORY if its index cannot be kept. */
static inline int ps_record_walk_keyless(ps_record_walk *w, int32_t index, size_t pos) {
    if (w->keyless == 0) w->keyless_pos = pos;
    if (w->keyless == w->keyless_cap) {
        int32_t cap = w->keyless_cap ? 2 * w->keyless_cap : 16;
        int32_t *grown = (int32_t *)realloc(w->keyless_at, (size_t)cap * sizeof(int32_t));
        if (grown == NULL) return PS_ERR_NO_MEMORY;
        w->keyless_at = grown;
        w->keyless_cap = cap;
    }
    w->keyless_at[w->keyless++] = index;
    return PS_OK;
}

static inline int ps_record_walk_fail(ps_record_walk *w, int st, ps_record_fault fault, int32_t index,
                                      size_t pos, int64_t value) {
    w->fault = fault;
    w->fault_index = index;
    w->fault_pos = w->walked + pos;
    w->fault_value = value;
    return st;
}

/* Walks the complete records of the piece s[0:n]; *used says how many bytes they took.
 * With last == 0 a record cut by the end of the piece is left for the next call (the
 * caller keeps s[*used:] and prepends it); with last != 0 the piece ends the section. */
static inline int ps_record_walk_piece(ps_record_walk *w, const uint8_t *s, size_t n, int last, size_t *used) {
    size_t pos = 0, errpos = 0;
    ps_record r;
    *used = 0;
    w->cut_end = 0;
    while (pos < n) {
        if (w->index >= w->count)
            return ps_record_walk_fail(w, PS_ERR_RECORD_COUNT, PS_FAULT_STRUCTURE, -1, pos, 0);
        if (!last) {   /* is the whole record in this piece? */
            size_t p = pos;
            int32_t length;
            if (ps_read_varint(s, n, &p, &length) != PS_OK) {
                if (n - pos < 5) break;   /* the length itself is cut */
            } else if (length >= 0 && (size_t)length > n - p) {
                w->cut_end = w->walked + p + (size_t)length;
                break;
            }
        }
        size_t start = pos;
        int st = ps_record_parse(s, n, &pos, &r, &errpos);
        if (st) return ps_record_walk_fail(w, st, PS_FAULT_STRUCTURE, w->index, errpos, 0);
        if (r.header_count) {   /* the parse checked the header lengths; keys must be UTF-8 too */
            size_t hp = r.headers_pos, kpos, vpos;
            int32_t klen, vlen;
            for (int32_t j = 0; j < r.header_count; j++) {
                ps_read_bytes_field(s, r.end, &hp, 0, &klen, &kpos, &errpos);
                ps_read_bytes_field(s, r.end, &hp, 1, &vlen, &vpos, &errpos);
                size_t bad = ps_utf8_check(s + kpos, (size_t)klen);
                if (bad != (size_t)klen)
                    return ps_record_walk_fail(w, PS_ERR_BAD_RECORD, PS_FAULT_HEADER_KEY, w->index, kpos, j);
            }
        }
        if (r.offset_delta != w->index)
            return ps_record_walk_fail(w, PS_ERR_BAD_RECORD, PS_FAULT_OFFSET_DELTA, w->index, start,
                                       r.offset_delta);
        int keyless = w->require_key && r.key_len < 0;
        if (keyless && ps_record_walk_keyless(w, w->index, w->walked + start) != PS_OK)
            return ps_record_walk_fail(w, PS_ERR_NO_MEMORY, PS_FAULT_STRUCTURE, w->index, start, 0);
        if (w->check_timestamps && !keyless) {
            /* Java's long arithmetic: the sum wraps */
            int64_t ts = w->batch_log_append_time ? w->batch_max_timestamp
                       : (int64_t)((uint64_t)w->base_timestamp + (uint64_t)r.timestamp_delta);
            if (w->topic_create_time && ts != -1) {
                if (ts < w->min_timestamp || ts > w->max_timestamp)
                    return ps_record_walk_fail(w, PS_ERR_BAD_RECORD, PS_FAULT_TIMESTAMP, w->index, start, ts);
            } else if (w->batch_log_append_time) {
                return ps_record_walk_fail(w, PS_ERR_BAD_RECORD, PS_FAULT_TIMESTAMP_TYPE, w->index, start, ts);
            }
        }
        w->index++;
        *used = pos;
    }
    w->walked += *used;
    if (last) {
        if (w->index < w->count)
            return ps_record_walk_fail(w, PS_ERR_RECORD_COUNT, PS_FAULT_STRUCTURE, -1, *used, 0);
        if (w->keyless) {
            w->fault = PS_FAULT_NO_KEY;
            w->fault_index = w->keyless_at[0];
            w->fault_pos = w->keyless_pos;
            return PS_ERR_BAD_RECORD;
        }
    }
    return PS_OK;
}

#endif
