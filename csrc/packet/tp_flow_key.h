/* The flow key of a packet: what a worker's flow table is indexed by and
 * what Python's tunpump.control.Flow decodes (keep its layout in step). */
#ifndef TP_FLOW_KEY_H
#define TP_FLOW_KEY_H

#include <stdint.h>

#include "tp_parse.h"   /* enum tp_l2 */

enum tp_flow_class {
    TP_FLOW_IP = 0,        /* an IPv4/IPv6 flow: protocol, addresses, ports or ICMP id */
    TP_FLOW_FRAGMENT = 1,  /* IP fragments: addresses and protocol only */
    TP_FLOW_ARP = 2,       /* TAP: ARP, one flow per VLAN */
    TP_FLOW_ND = 3,        /* TAP: IPv6 neighbour discovery, one flow per VLAN */
    TP_FLOW_OTHER = 4,     /* not IP: by EtherType (TAP) or IP version (TUN); no addresses */
    TP_FLOW_UNPARSED = 5,  /* an IP packet whose transport header was not found (more than
                              TP_PARSE_MAX_EXT IPv6 extension headers, a header chain or a
                              length running past the packet): addresses and the last
                              next-header only, no ports. Policy must decide on these
                              explicitly: a port-based rule cannot see them. */
};

struct tp_flow_key {
    uint8_t cls;           /* enum tp_flow_class */
    uint8_t ip_version;    /* 4, 6 or 0 */
    uint8_t proto;         /* IP protocol after extension headers */
    uint8_t pad;
    uint16_t sport, dport; /* ports; ICMP echo: id in both */
    uint16_t vlan;         /* 802.1Q id, 0 for none */
    uint16_t ethertype;    /* TAP; for TUN the IP EtherType */
    uint8_t src[16], dst[16];
};

/* Parse the flow key of a packet; l2 is an enum tp_l2 (TP_L2_ETH for TAP). */
void tp_flow_parse(const uint8_t *p, uint32_t len, int l2, struct tp_flow_key *k);
uint32_t tp_flow_hash(const struct tp_flow_key *k);

#endif
