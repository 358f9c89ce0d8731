#include "tp_flow_key.h"
#include "tp_bytes.h"
#include "tp_parse.h"
#include "tp_proto.h"

#include <string.h>

static int tp__has_ports(uint8_t proto)
{
    return proto == TP_IPPROTO_TCP || proto == TP_IPPROTO_UDP || proto == TP_IPPROTO_SCTP ||
           proto == TP_IPPROTO_UDPLITE;
}

/* Ports, the ICMP echo id, or the neighbour-discovery class. */
static void tp__flow_l4(const uint8_t *p, const struct tp_parsed *pp, int l2, struct tp_flow_key *k)
{
    const uint8_t *l4 = p + pp->l4;
    uint32_t avail = pp->end - pp->l4;

    if (tp__has_ports(pp->proto) && avail >= 4) {
        k->sport = tp_rd16(l4);
        k->dport = tp_rd16(l4 + 2);
    } else if ((pp->proto == TP_IPPROTO_ICMP || pp->proto == TP_IPPROTO_ICMPV6) && avail >= TP_ICMP_HLEN) {
        uint8_t type = l4[0];
        if (pp->proto == TP_IPPROTO_ICMPV6 && l2 != TP_L2_NONE &&
            type >= TP_ICMPV6_ND_FIRST && type <= TP_ICMPV6_ND_LAST) {
            /* neighbour discovery on a TAP link: a control packet, one flow per VLAN */
            memset(k->src, 0, sizeof(k->src));
            memset(k->dst, 0, sizeof(k->dst));
            k->cls = TP_FLOW_ND;
            return;
        }
        if (type == TP_ICMP_ECHO || type == TP_ICMP_ECHOREPLY ||
            type == TP_ICMPV6_ECHO_REQUEST || type == TP_ICMPV6_ECHO_REPLY)
            k->sport = k->dport = tp_rd16(l4 + TP_ICMP_ECHO_ID);   /* echo: the identifier */
    }
}

void tp_flow_parse(const uint8_t *p, uint32_t len, int l2, struct tp_flow_key *k)
{
    struct tp_parsed pp;
    int st = tp_parse(p, len, l2, &pp);

    memset(k, 0, sizeof(*k));
    k->cls = TP_FLOW_OTHER;
    k->vlan = pp.vlan;
    k->ethertype = pp.ethertype;
    if (st == TP_PARSE_NOT_IP && pp.ethertype == TP_ETH_P_ARP)
        k->cls = TP_FLOW_ARP;
    if (!pp.ip_version)
        return;   /* not IP, or an IP header too broken to have addresses */
    k->ip_version = pp.ip_version;
    k->proto = pp.proto;
    if (pp.ip_version == 4) {
        memcpy(k->src, p + pp.l3 + TP_IPV4_SADDR, 4);
        memcpy(k->dst, p + pp.l3 + TP_IPV4_DADDR, 4);
    } else {
        memcpy(k->src, p + pp.l3 + TP_IPV6_SADDR, 16);
        memcpy(k->dst, p + pp.l3 + TP_IPV6_DADDR, 16);
    }
    if (st == TP_PARSE_FRAGMENT) {
        k->cls = TP_FLOW_FRAGMENT;
    } else if (st == TP_PARSE_UNPARSED) {
        k->cls = TP_FLOW_UNPARSED;
    } else {
        k->cls = TP_FLOW_IP;
        tp__flow_l4(p, &pp, l2, k);
    }
}

uint32_t tp_flow_hash(const struct tp_flow_key *k)
{
    const uint8_t *b = (const uint8_t *)k;
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    size_t i;

    for (i = 0; i + 8 <= sizeof(*k); i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    for (; i < sizeof(*k); i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    return (uint32_t)h;
}
