/* virtio_net_hdr handling as pure functions over buffers (no syscalls):
 * checksums, GSO split of super-packets a device hands over, and GRO
 * coalescing of plain packets into super-packets a device accepts.
 * Header lengths are derived from the packets, never taken from hdr_len. */
#ifndef TP_VNET_H
#define TP_VNET_H

#include <stddef.h>
#include <stdint.h>

#define TP_VNET_MAX_SEGS 64        /* segments per super-packet we split or build */
#define TP_VNET_HDR_ROOM 128       /* scratch per segment header (L2 + IPv6 + TCP with options) */

/* Errors (negative returns) */
#define TP_VNET_EMALFORMED (-1)
#define TP_VNET_ETOOMANY (-2)
#define TP_VNET_EUNSUPPORTED (-3)

struct tp_vnet_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
};

void tp_vnet_hdr_read(const uint8_t *p, struct tp_vnet_hdr *h);
void tp_vnet_hdr_write(uint8_t *p, const struct tp_vnet_hdr *h, int size);

/* One's complement sum of data added to sum (native byte order; pieces
 * combined this way must each start at an even offset of the packet). */
uint64_t tp_csum_add(uint64_t sum, const void *data, size_t len);
uint16_t tp_csum_fold(uint64_t sum);

/* A segment is hdr[0..hdr_len) followed by data[0..len); hdr may be NULL. */
struct tp_seg {
    uint8_t *hdr;
    uint32_t hdr_len;
    uint8_t *data;
    uint32_t len;
};

/* Make wire packets of one packet read from a vnet_hdr device (l2 = 14 for
 * TAP, 0 for TUN): a GSO super-packet is cut into gso_size segments with
 * every header field and checksum fixed; a packet with NEEDS_CSUM only gets
 * its checksum completed in place. Segment headers go to scratch
 * (TP_VNET_HDR_ROOM bytes each). Returns the number of segments or a
 * TP_VNET_E* error. */
int tp_vnet_split(const struct tp_vnet_hdr *h, uint8_t *pkt, uint32_t len, int l2,
                  uint8_t *scratch, struct tp_seg *segs, int max_segs);

/* Coalescing: packets in arrival order are grouped into units; a unit of
 * count > 1 is a super-packet: its first packet's headers were rewritten in
 * place and vh describes it; the packets after the first contribute
 * data + skip[i] (their payload). next[] chains a unit's packets. */
struct tp_gro_pkt {
    uint8_t *data;
    uint32_t len;
};

struct tp_gro_unit {
    int first;
    int last;
    int count;
    struct tp_vnet_hdr vh;
};

#define TP_GRO_TCP 1
#define TP_GRO_UDP 2

int tp_gro_coalesce(struct tp_gro_pkt *pkts, int n, int l2, unsigned what,
                    int *next, uint32_t *skip, struct tp_gro_unit *units);

#endif
