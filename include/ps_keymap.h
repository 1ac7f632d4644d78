/* Key -> latest offset maps for the log cleaner (and `latest()` reads), and a small
 * producer id -> last batch offset map.
 *
 * ps_keymap is Kafka's SkimpyOffsetMap: an open-addressed table of fixed-size slots, each
 * a 128-bit hash of the key and the offset of its latest record (24 bytes a slot); the
 * keys themselves are never stored, so a map of N keys costs 24 N / load bytes whatever
 * the key sizes. Two distinct keys with the same 128-bit hash would be taken for one (the
 * same bet Kafka makes with MD5). The cleaner's map is fixed (`dedupe_buffer_bytes`, Kafka's
 * log.cleaner.dedupe.buffer.size) and filled to 75% (Kafka fills its to 90%, but probes
 * with a hash-derived step; linear probing, used here, slows down past about 75%); a
 * growable one (capacity doubled at 50%) serves reads of the latest value per key.
 *
 * The hash: two 64-bit multiply-xorshift passes over the key (8-byte words, then the
 * tail) with different seeds; a zero hash is reserved for empty slots.
 */
#ifndef PS_KEYMAP_H
#define PS_KEYMAP_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PS_KEYMAP_SLOT 24

typedef struct {
    uint8_t *slots;       /* capacity * 24 bytes: hash hi, hash lo, offset (native order) */
    size_t capacity;      /* slots */
    size_t used;
    size_t max_used;      /* put refuses a new key past this (fixed maps) or grows (growable) */
    int growable;
} ps_keymap;

static inline uint64_t ps_keymap_mix(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t ps_keymap_hash64(const uint8_t *key, size_t n, uint64_t seed) {
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL), w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, key + i, 8);
        h = ps_keymap_mix(h ^ w) * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    }
    w = 0;
    if (i < n) memcpy(&w, key + i, n - i);
    return ps_keymap_mix(h ^ w ^ ((uint64_t)(n - i) << 56));
}

static inline void ps_keymap_hash(const uint8_t *key, size_t n, uint64_t out[2]) {
    out[0] = ps_keymap_hash64(key, n, 0x243f6a8885a308d3ULL);
    out[1] = ps_keymap_hash64(key, n, 0x13198a2e03707344ULL);
    if (out[0] == 0 && out[1] == 0) out[1] = 1;
}

/* A map in `bytes` bytes of slots (fixed), or growing from `bytes` (growable); 0 or -1 (no memory). */
static inline int ps_keymap_init(ps_keymap *m, size_t bytes, int growable) {
    size_t cap = bytes / PS_KEYMAP_SLOT;
    if (cap < 16) cap = 16;
    m->slots = (uint8_t *)calloc(cap, PS_KEYMAP_SLOT);
    if (m->slots == NULL) return -1;
    m->capacity = cap;
    m->used = 0;
    m->growable = growable;
    m->max_used = growable ? cap / 2 : cap / 4 * 3;
    return 0;
}

static inline void ps_keymap_free(ps_keymap *m) {
    free(m->slots);
    m->slots = NULL;
    m->capacity = m->used = m->max_used = 0;
}

static inline void ps_keymap_clear(ps_keymap *m) {
    memset(m->slots, 0, m->capacity * PS_KEYMAP_SLOT);
    m->used = 0;
}

/* The slot for hash h: its own, or the empty one where it would go. */
static inline uint8_t *ps_keymap_find(const ps_keymap *m, const uint64_t h[2]) {
    size_t i = (size_t)(((unsigned __int128)h[0] * m->capacity) >> 64);   /* h[0] scaled to [0, capacity) */
    for (;;) {
        uint8_t *slot = m->slots + i * PS_KEYMAP_SLOT;
        uint64_t a, b;
        memcpy(&a, slot, 8);
        memcpy(&b, slot + 8, 8);
        if ((a == h[0] && b == h[1]) || (a == 0 && b == 0)) return slot;
        if (++i == m->capacity) i = 0;
    }
}

static inline int ps_keymap_grow(ps_keymap *m) {
    ps_keymap bigger;
    size_t i;
    bigger.slots = (uint8_t *)calloc(m->capacity * 2, PS_KEYMAP_SLOT);
    if (bigger.slots == NULL) return -1;
    bigger.capacity = m->capacity * 2;
    bigger.used = m->used;
    bigger.growable = 1;
    bigger.max_used = bigger.capacity / 2;
    for (i = 0; i < m->capacity; i++) {
        uint8_t *slot = m->slots + i * PS_KEYMAP_SLOT;
        uint64_t h[2];
        memcpy(h, slot, 16);
        if (h[0] || h[1]) memcpy(ps_keymap_find(&bigger, h), slot, PS_KEYMAP_SLOT);
    }
    free(m->slots);
    *m = bigger;
    return 0;
}

/* Records `offset` as the key's latest: 0, or 1 when a new key does not fit (nothing changed),
 * or -1 when growing failed. */
static inline int ps_keymap_put(ps_keymap *m, const uint8_t *key, size_t n, int64_t offset) {
    uint64_t h[2];
    uint8_t *slot;
    ps_keymap_hash(key, n, h);
    slot = ps_keymap_find(m, h);
    uint64_t a, b;
    memcpy(&a, slot, 8);
    memcpy(&b, slot + 8, 8);
    if (a == 0 && b == 0) {
        if (m->used >= m->max_used) {
            if (!m->growable) return 1;
            if (ps_keymap_grow(m) != 0) return -1;
            slot = ps_keymap_find(m, h);
        }
        m->used++;
        memcpy(slot, h, 16);
    }
    memcpy(slot + 16, &offset, 8);
    return 0;
}

/* The key's latest offset, or -1 when the map does not hold it. */
static inline int64_t ps_keymap_get(const ps_keymap *m, const uint8_t *key, size_t n) {
    uint64_t h[2], a, b;
    int64_t offset;
    uint8_t *slot;
    ps_keymap_hash(key, n, h);
    slot = ps_keymap_find(m, h);
    memcpy(&a, slot, 8);
    memcpy(&b, slot + 8, 8);
    if (a == 0 && b == 0) return -1;
    memcpy(&offset, slot + 16, 8);
    return offset;
}

/* Producer id -> the base offset of its last batch in the range being cleaned (growable). */
typedef struct {
    int64_t *ids;         /* -1: empty */
    int64_t *offsets;
    size_t capacity;
    size_t used;
} ps_pidmap;

static inline int ps_pidmap_init(ps_pidmap *m) {
    size_t i;
    m->capacity = 64;
    m->used = 0;
    m->ids = (int64_t *)malloc(m->capacity * sizeof(int64_t));
    m->offsets = (int64_t *)malloc(m->capacity * sizeof(int64_t));
    if (m->ids == NULL || m->offsets == NULL) { free(m->ids); free(m->offsets); m->ids = m->offsets = NULL; return -1; }
    for (i = 0; i < m->capacity; i++) m->ids[i] = -1;
    return 0;
}

static inline void ps_pidmap_free(ps_pidmap *m) {
    free(m->ids);
    free(m->offsets);
    m->ids = m->offsets = NULL;
}

static inline size_t ps_pidmap_slot(const ps_pidmap *m, int64_t pid) {
    size_t mask = m->capacity - 1, i = (size_t)ps_keymap_mix((uint64_t)pid) & mask;
    while (m->ids[i] != -1 && m->ids[i] != pid) i = (i + 1) & mask;
    return i;
}

static inline int ps_pidmap_put(ps_pidmap *m, int64_t pid, int64_t offset) {
    size_t i = ps_pidmap_slot(m, pid);
    if (m->ids[i] == -1) {
        if ((m->used + 1) * 2 > m->capacity) {
            ps_pidmap bigger;
            size_t j;
            bigger.capacity = m->capacity * 2;
            bigger.used = m->used;
            bigger.ids = (int64_t *)malloc(bigger.capacity * sizeof(int64_t));
            bigger.offsets = (int64_t *)malloc(bigger.capacity * sizeof(int64_t));
            if (bigger.ids == NULL || bigger.offsets == NULL) {
                free(bigger.ids); free(bigger.offsets); return -1;
            }
            for (j = 0; j < bigger.capacity; j++) bigger.ids[j] = -1;
            for (j = 0; j < m->capacity; j++) {
                if (m->ids[j] != -1) {
                    size_t k = ps_pidmap_slot(&bigger, m->ids[j]);
                    bigger.ids[k] = m->ids[j];
                    bigger.offsets[k] = m->offsets[j];
                }
            }
            ps_pidmap_free(m);
            *m = bigger;
            i = ps_pidmap_slot(m, pid);
        }
        m->ids[i] = pid;
        m->used++;
    }
    m->offsets[i] = offset;
    return 0;
}

static inline int64_t ps_pidmap_get(const ps_pidmap *m, int64_t pid) {
    size_t i = ps_pidmap_slot(m, pid);
    return m->ids[i] == -1 ? -1 : m->offsets[i];
}

#endif
