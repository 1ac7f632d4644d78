/* Strict UTF-8 validation, accepting exactly what Python's bytes.decode("utf-8") accepts:
 * no overlong forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 * Record header keys are UTF-8 strings; pstream's decoders refuse any other bytes there.
 */
#ifndef PS_UTF8_H
#define PS_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* Returns n if s[0:n] is valid UTF-8, else the position of the first invalid sequence. */
static inline size_t ps_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;          /* overlong */
            else if (c == 0xED) hi = 0x9F;     /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;          /* overlong */
            else if (c == 0xF4) hi = 0x8F;     /* above U+10FFFF */
        } else return i;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
        i += len;
    }
    return n;
}

#endif
