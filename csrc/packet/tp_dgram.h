/* A UDP receive buffer cut into the datagrams it carries, without sockets.
 * With UDP_GRO the kernel hands over a run of equal datagrams as one buffer
 * plus their size (a control message); the count comes from the kernel (up
 * to UDP_MAX_SEGMENTS, 128 since Linux 6.10) and from the sender, so it is
 * never trusted to fit the caller's array. */
#ifndef TP_DGRAM_H
#define TP_DGRAM_H

#include <stdint.h>

#define TP_DGRAM_MAX_SEGS 128   /* the kernel's UDP_MAX_SEGMENTS (Linux >= 6.10): more is never genuine */

struct tp_dgram {
    uint32_t len;       /* bytes received */
    uint32_t seg;       /* bytes per datagram (the last may be shorter); len without UDP_GRO */
    uint32_t nseg;      /* datagrams carried; an empty buffer counts as one (malformed) */
};

struct tp_dgram_seg {
    uint32_t off, len;  /* one datagram at buf + off */
};

/* What len received bytes carry, given the UDP_GRO size the kernel reported
 * (<= 0, or not below len: one datagram). */
struct tp_dgram tp_dgram_of(uint32_t len, int gro_size);

/* The datagrams of g, in order, into out[0..room): returns how many were
 * written (0 for an empty buffer). The other g->nseg - written had no room;
 * their bytes are g->len minus those of the written ones. */
uint32_t tp_dgram_cut(const struct tp_dgram *g, struct tp_dgram_seg *out, uint32_t room);

#endif
