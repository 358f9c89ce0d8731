/* Byte readers and writers for packet code: network (big-endian) order for
 * protocol headers, little-endian for the virtio_net_hdr. Unaligned access
 * is always safe: every access goes byte by byte. */
#ifndef TP_BYTES_H
#define TP_BYTES_H

#include <stdint.h>

static inline uint16_t tp_rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t tp_rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void tp_wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void tp_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint16_t tp_rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline void tp_wr16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

#endif
