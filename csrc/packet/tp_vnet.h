/* virtio_net_hdr handling as pure functions over buffers (no syscalls):
 * GSO split of super-packets a device hands over (tp_vnet.c) and GRO
 * coalescing of plain packets into super-packets a device accepts
 * (tp_gro.c); the checksums they use are tp_csum.h's.
 * Header lengths are derived from the packets, never taken from hdr_len. */
#ifndef TP_VNET_H
#define TP_VNET_H

#include <stddef.h>
#include <stdint.h>

#include "tp_csum.h"    /* tp_csum_add, tp_csum_fold */
#include "tp_parse.h"   /* enum tp_l2 */

#define TP_VNET_MAX_SEGS 64        /* segments per super-packet we build, and per tp_vnet_split call */
#define TP_VNET_HDR_ROOM 128       /* scratch per segment header (L2 + IPv6 + TCP with options) */
/* The most segments one super-packet may be split into: a 64 KB packet at a
 * gso_size down to 64 bytes. A caller that holds all of one packet's
 * segments at once sizes its arrays for this; more is TP_VNET_ETOOMANY. */
#define TP_VNET_SPLIT_MAX_SEGS 1024

/* struct virtio_net_hdr field values (include/uapi/linux/virtio_net.h): the
 * packet code's own copy, since the system headers may be older than the
 * kernel and packet code includes no system I/O header. */
#define TP_VNET_F_NEEDS_CSUM 1
#define TP_VNET_F_DATA_VALID 2
#define TP_VNET_GSO_NONE 0
#define TP_VNET_GSO_TCPV4 1
#define TP_VNET_GSO_UDP 3
#define TP_VNET_GSO_TCPV6 4
#define TP_VNET_GSO_UDP_L4 5
#define TP_VNET_GSO_ECN 0x80
#define TP_VNET_HDR_LEN 10         /* the fields above; devices may use 12 (num_buffers) */

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

/* A segment is hdr[0..hdr_len) followed by data[0..len); hdr may be NULL. */
struct tp_seg {
    uint8_t *hdr;
    uint32_t hdr_len;
    uint8_t *data;
    uint32_t len;
};

/* Make wire packets of one packet read from a vnet_hdr device. l2 is an
 * enum tp_l2 (tp_parse.h): TP_L2_NONE for TUN, TP_L2_ETH for TAP.
 *
 * A GSO super-packet is cut into gso_size segments with every header field
 * and checksum fixed (IPv4 ID +1 per segment, TCP sequence, CWR on the first
 * only, FIN/PSH on the last only); a packet with NEEDS_CSUM only gets its
 * checksum completed in place. A UDP checksum that comes out 0 is sent as
 * 0xffff. IPv6 extension headers and IP fragments are TP_VNET_EUNSUPPORTED.
 *
 * In chunks, for any number of segments (a 64 KB TSO packet at MSS 536 has
 * over 120): tp_vnet_split_begin checks the packet, completes a NEEDS_CSUM
 * checksum, and returns the number of segments (at most
 * TP_VNET_SPLIT_MAX_SEGS) or a TP_VNET_E* error; each tp_vnet_split_next
 * then makes up to max_segs more (their headers go to scratch,
 * TP_VNET_HDR_ROOM bytes each, and point into it) and returns how many, 0
 * once all were made. pkt must stay in place until then. */
struct tp_vnet_splitter {   /* private: set by tp_vnet_split_begin */
    uint8_t *pkt;
    uint32_t len, l3, l4, hl, payload, mss, nseg, done, seq0;
    uint64_t base;          /* pseudo-header sum without the length */
    uint16_t id0;
    uint8_t v6, proto, l4hl;
};

int tp_vnet_split_begin(struct tp_vnet_splitter *s, const struct tp_vnet_hdr *h,
                        uint8_t *pkt, uint32_t len, int l2);
/* How many wire packets the packet stands for: its segments for a GSO
 * super-packet it can parse, else 1. Reads only (no checksum completed). */
int tp_vnet_count_segs(const struct tp_vnet_hdr *h, const uint8_t *pkt, uint32_t len, int l2);
int tp_vnet_split_next(struct tp_vnet_splitter *s, uint8_t *scratch, struct tp_seg *segs, int max_segs);

/* All segments in one call: TP_VNET_ETOOMANY when there are more than
 * max_segs (use the chunked calls above to split those). Returns the number
 * of segments or a TP_VNET_E* error. */
int tp_vnet_split(const struct tp_vnet_hdr *h, uint8_t *pkt, uint32_t len, int l2,
                  uint8_t *scratch, struct tp_seg *segs, int max_segs);

/* Coalescing: packets in arrival order are grouped into units; a unit of
 * count > 1 is a super-packet: its first packet's headers were rewritten in
 * place and vh describes it; the packets after the first contribute
 * data + skip[i] (their payload). next[] chains a unit's packets. l2 is an
 * enum tp_l2 (untagged Ethernet only for TAP).
 *
 * Packets merge under the rules of the kernel's GRO (tcp_gro_receive,
 * inet_gro_receive, ipv6_gro_receive, udp_gro_receive_segment): exactly as
 * long as their IP length (no trailing bytes), IPv4 without options and with
 * a valid header checksum, no IPv6 extension headers, a valid L4 checksum;
 * within a flow the same TOS/TTL/DF (IPv4) or traffic class/flow label/hop
 * limit (IPv6), IPv4 IDs +1 per packet (or all equal with DF); TCP: ACK
 * only (PSH ends a run), the same ACK number, header length, flags but PSH,
 * window and options, in-sequence; no segment larger than the first. Order
 * within a flow is kept: a packet that cannot join its flow's run ends it. */
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
/* The packets were authenticated end to end (a transform's AEAD): their IPv4
 * header and L4 checksums are taken as good, not verified (the super-packet
 * gets fresh ones either way). */
#define TP_GRO_CSUM_TRUSTED 4

int tp_gro_coalesce(struct tp_gro_pkt *pkts, int n, int l2, unsigned what,
                    int *next, uint32_t *skip, struct tp_gro_unit *units);

#endif
