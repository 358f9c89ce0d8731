#include "tp_parse.h"
#include "tp_bytes.h"
#include "tp_proto.h"

#include <string.h>

/* Ethernet and VLAN tags: sets l3 and ethertype. */
static int tp__parse_eth(const uint8_t *p, uint32_t len, struct tp_parsed *o)
{
    uint32_t off = TP_ETH_HLEN;
    uint16_t et;

    if (len < TP_ETH_HLEN)
        return TP_PARSE_BAD_L2;
    et = tp_rd16(p + 2 * TP_ETH_ALEN);
    for (int tags = 0; (et == TP_ETH_P_8021Q || et == TP_ETH_P_8021AD) && tags < TP_VLAN_MAX_TAGS; tags++) {
        if (len < off + TP_VLAN_HLEN)
            return TP_PARSE_BAD_L2;
        o->vlan = tp_rd16(p + off) & TP_VLAN_VID_MASK;   /* the innermost tag wins */
        et = tp_rd16(p + off + 2);
        off += TP_VLAN_HLEN;
    }
    o->ethertype = et;
    o->l3 = off;
    return et == TP_ETH_P_IP || et == TP_ETH_P_IPV6 ? TP_PARSE_OK : TP_PARSE_NOT_IP;
}

static int tp__parse_ipv4(const uint8_t *p, uint32_t len, struct tp_parsed *o)
{
    const uint8_t *ip = p + o->l3;
    uint32_t ihl, tot;
    uint16_t frag;

    if (len - o->l3 < TP_IPV4_HLEN || (ip[0] >> 4) != 4)
        return TP_PARSE_BAD_IP;
    ihl = (uint32_t)(ip[0] & 0xf) * 4;
    if (ihl < TP_IPV4_HLEN || len - o->l3 < ihl)
        return TP_PARSE_BAD_IP;
    o->ip_version = 4;
    o->proto = ip[TP_IPV4_PROTO];
    tot = tp_rd16(ip + TP_IPV4_LEN);
    if (tot < ihl || tot > len - o->l3)
        return TP_PARSE_UNPARSED;
    o->end = o->l3 + tot;
    o->l4 = o->l3 + ihl;
    frag = tp_rd16(ip + TP_IPV4_FRAG);
    if (frag & (TP_IP_MF | TP_IP_OFFMASK)) {
        o->frag = (frag & TP_IP_OFFMASK) ? TP_FRAG_LATER : TP_FRAG_FIRST;
        return TP_PARSE_FRAGMENT;
    }
    return TP_PARSE_OK;
}

static int tp__is_ext(uint8_t nh)
{
    return nh == TP_IPPROTO_HOPOPTS || nh == TP_IPPROTO_ROUTING || nh == TP_IPPROTO_FRAGMENT ||
           nh == TP_IPPROTO_AH || nh == TP_IPPROTO_DSTOPTS;
}

/* The one walk over IPv6 extension headers, bounded by TP_PARSE_MAX_EXT and
 * by the packet's end. */
static int tp__parse_ipv6(const uint8_t *p, uint32_t len, struct tp_parsed *o)
{
    const uint8_t *ip = p + o->l3;
    uint32_t off, plen;
    uint8_t nh;

    if (len - o->l3 < TP_IPV6_HLEN || (ip[0] >> 4) != 6)
        return TP_PARSE_BAD_IP;
    o->ip_version = 6;
    nh = ip[TP_IPV6_NEXT];
    o->proto = nh;
    plen = tp_rd16(ip + TP_IPV6_PLEN);   /* 0 is a jumbogram's: its headers run past end, so UNPARSED */
    if (plen > len - o->l3 - TP_IPV6_HLEN)
        return TP_PARSE_UNPARSED;
    o->end = o->l3 + TP_IPV6_HLEN + plen;
    off = o->l3 + TP_IPV6_HLEN;
    while (tp__is_ext(nh)) {
        uint32_t hl;
        if (o->n_ext == TP_PARSE_MAX_EXT || o->end - off < 8)
            return TP_PARSE_UNPARSED;
        o->n_ext++;
        if (nh == TP_IPPROTO_FRAGMENT) {
            uint16_t fo = tp_rd16(p + off + 2);
            o->proto = p[off];
            o->l4 = off + TP_IPV6_FRAG_HLEN;
            o->frag = (fo & TP_IPV6_FRAG_OFFMASK) ? TP_FRAG_LATER : TP_FRAG_FIRST;
            return TP_PARSE_FRAGMENT;
        }
        hl = nh == TP_IPPROTO_AH ? ((uint32_t)p[off + 1] + 2) * 4 : ((uint32_t)p[off + 1] + 1) * 8;
        if (o->end - off < hl)
            return TP_PARSE_UNPARSED;
        nh = p[off];
        o->proto = nh;
        off += hl;
    }
    o->l4 = off;
    return TP_PARSE_OK;
}

int tp_parse(const uint8_t *p, uint32_t len, int l2, struct tp_parsed *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (l2 != TP_L2_NONE) {
        if ((rc = tp__parse_eth(p, len, out)) != TP_PARSE_OK)
            return rc;
    } else {
        if (len < 1)
            return TP_PARSE_BAD_IP;
        out->ethertype = (p[0] >> 4) == 4 ? TP_ETH_P_IP : (p[0] >> 4) == 6 ? TP_ETH_P_IPV6 : 0;
        if (!out->ethertype)
            return TP_PARSE_BAD_IP;
    }
    if (out->ethertype == TP_ETH_P_IP)
        rc = tp__parse_ipv4(p, len, out);
    else
        rc = tp__parse_ipv6(p, len, out);
    if (rc == TP_PARSE_BAD_IP)
        out->ip_version = 0;
    return rc;
}
