#include "tp_l34.h"
#include "tp_bytes.h"
#include "tp_proto.h"

int tp_l34_parse(const uint8_t *p, uint32_t len, int l2, struct tp_l34 *o)
{
    struct tp_parsed pp;

    switch (tp_parse(p, len, l2, &pp)) {
    case TP_PARSE_OK: break;
    case TP_PARSE_UNPARSED: return pp.end ? TP_VNET_EUNSUPPORTED : TP_VNET_EMALFORMED;
    case TP_PARSE_FRAGMENT: case TP_PARSE_NOT_IP: return TP_VNET_EUNSUPPORTED;
    default: return TP_VNET_EMALFORMED;
    }
    if (pp.n_ext)
        return TP_VNET_EUNSUPPORTED;
    o->l3 = pp.l3;
    o->l4 = pp.l4;
    o->iphl = pp.l4 - pp.l3;
    o->end = pp.end;
    o->v6 = pp.ip_version == 6;
    o->proto = pp.proto;
    if (o->proto == TP_IPPROTO_TCP) {
        if (o->end - o->l4 < TP_TCP_HLEN)
            return TP_VNET_EMALFORMED;
        o->l4hl = (uint32_t)(p[o->l4 + TP_TCP_DOFF] >> 4) * 4;
        if (o->l4hl < TP_TCP_HLEN || o->end - o->l4 < o->l4hl)
            return TP_VNET_EMALFORMED;
    } else if (o->proto == TP_IPPROTO_UDP) {
        if (o->end - o->l4 < TP_UDP_HLEN)
            return TP_VNET_EMALFORMED;
        o->l4hl = TP_UDP_HLEN;
    } else {
        return TP_VNET_EUNSUPPORTED;
    }
    return 0;
}

uint64_t tp_l34_pseudo(const uint8_t *p, const struct tp_l34 *o)
{
    uint64_t sum = tp_csum_word((uint16_t)o->proto);

    if (o->v6)
        return tp_csum_add(sum, p + o->l3 + TP_IPV6_SADDR, 32);
    return tp_csum_add(sum, p + o->l3 + TP_IPV4_SADDR, 8);
}

static void tp__ipv4_csum(uint8_t *ip, uint32_t iphl)
{
    ip[TP_IPV4_CSUM] = ip[TP_IPV4_CSUM + 1] = 0;
    tp_csum_store(ip + TP_IPV4_CSUM, (uint16_t)~tp_csum_fold(tp_csum_add(0, ip, iphl)));
}

void tp_l34_set_ip_len(uint8_t *p, const struct tp_l34 *o, uint32_t l4len)
{
    if (o->v6) {
        tp_wr16(p + o->l3 + TP_IPV6_PLEN, (uint16_t)l4len);
    } else {
        tp_wr16(p + o->l3 + TP_IPV4_LEN, (uint16_t)(o->iphl + l4len));
        tp__ipv4_csum(p + o->l3, o->iphl);
    }
}

int tp_l34_csum_off(int proto)
{
    return proto == TP_IPPROTO_TCP ? TP_TCP_CSUM_OFF : TP_UDP_CSUM_OFF;
}
