/* The Internet checksum (RFC 1071) over buffers, summed in native byte
 * order in a 64-bit accumulator: add pieces with tp_csum_add, fold to 16
 * bits, complement to get the field's value. */
#ifndef TP_CSUM_H
#define TP_CSUM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tp_bytes.h"

/* One's complement sum of data added to sum (native byte order; pieces
 * combined this way must each start at an even offset of the packet). */
uint64_t tp_csum_add(uint64_t sum, const void *data, size_t len);
uint16_t tp_csum_fold(uint64_t sum);

/* A 16-bit value in network order as tp_csum_add adds words. */
static inline uint64_t tp_csum_word(uint16_t v)
{
    uint8_t b[2];
    uint16_t w;

    tp_wr16(b, v);
    memcpy(&w, b, 2);
    return w;
}

/* Store a folded native-order sum (or its complement) as the field's bytes. */
static inline void tp_csum_store(uint8_t *at, uint16_t folded_native)
{
    memcpy(at, &folded_native, 2);
}

/* A completed UDP checksum of 0 goes out as 0xffff: 0 means "none" in UDP
 * (RFC 768), and IPv6 receivers drop it. Same value in one's complement. */
static inline uint16_t tp_csum_udp(uint16_t c)
{
    return c == 0 ? 0xffff : c;
}

#endif
