/* The one L2/L3/L4 header parser of the packet code, shared by the offloads
 * (tp_vnet) and the flow keys (tp_flow_key): it finds where the IP header and
 * the transport header start, and says how far it got. It never reads past
 * len and never trusts a length field that does not fit the buffer. */
#ifndef TP_PARSE_H
#define TP_PARSE_H

#include <stdint.h>

/* What sits in front of the IP header. This is the one meaning of "l2" in
 * every packet-code signature. Callers written before this enum passed 14 for
 * Ethernet, so any non-zero value means Ethernet. */
enum tp_l2 {
    TP_L2_NONE = 0,   /* TUN: the buffer starts with the IP header */
    TP_L2_ETH = 1,    /* TAP: an Ethernet frame, with up to two 802.1Q/802.1ad tags */
};

/* IPv6 extension headers walked before giving up with TP_PARSE_UNPARSED.
 * RFC 8200's recommended order has at most seven (destination options twice),
 * so a legitimate packet never reaches this; a longer chain is reported, never
 * guessed at. */
#define TP_PARSE_MAX_EXT 8

enum tp_parse_status {
    TP_PARSE_OK = 0,        /* IP; the transport header (proto) starts at l4. It may
                               still be shorter than its protocol's header: check end - l4 */
    TP_PARSE_FRAGMENT = 1,  /* an IP fragment (frag says which); proto is its next header,
                               l4 where its data starts (the L4 header only when TP_FRAG_FIRST) */
    TP_PARSE_UNPARSED = 2,  /* the fixed IP header is valid (addresses readable) but the transport
                               header was not found: more than TP_PARSE_MAX_EXT extension headers,
                               an extension header running past the packet, or an IP length field
                               that does not fit the buffer. proto: the last next-header seen */
    TP_PARSE_BAD_IP = 3,    /* IP by EtherType (TAP) or always (TUN), but the fixed IP header is
                               truncated, of another version, or has a bad IHL */
    TP_PARSE_NOT_IP = 4,    /* TAP: a frame of another EtherType (ethertype says which) */
    TP_PARSE_BAD_L2 = 5,    /* TAP: a runt frame, or a VLAN tag cut short */
};

enum tp_frag {
    TP_FRAG_NONE = 0,
    TP_FRAG_FIRST = 1,      /* offset 0 (more fragments follow, or an IPv6 atomic fragment) */
    TP_FRAG_LATER = 2,      /* a non-zero offset: no transport header in it */
};

/* Offsets count from the start of the buffer. A field is meaningful only
 * when the status says so; the rest are 0. */
struct tp_parsed {
    uint32_t l3;            /* the IP header: 0 (TUN), 14 (Ethernet), +4 per VLAN tag */
    uint32_t l4;            /* the transport header (OK) or the fragment's data (FRAGMENT) */
    uint32_t end;           /* just past the IP packet by its length field (OK, FRAGMENT,
                               UNPARSED unless the length did not fit); bytes after it are padding */
    uint16_t ethertype;     /* the innermost EtherType; TUN: from the IP version nibble, 0 if not 4/6 */
    uint16_t vlan;          /* the innermost VLAN id, 0 when untagged */
    uint8_t ip_version;     /* 4 or 6 once the fixed IP header fits (addresses readable), else 0 */
    uint8_t proto;          /* the transport protocol after the extension headers */
    uint8_t frag;           /* enum tp_frag */
    uint8_t n_ext;          /* IPv6 extension headers walked (0 for IPv4) */
};

/* Parse p[0..len) with the link layer l2 (enum tp_l2). Returns enum
 * tp_parse_status and fills *out. O(TP_PARSE_MAX_EXT); no allocation. */
int tp_parse(const uint8_t *p, uint32_t len, int l2, struct tp_parsed *out);

#endif
