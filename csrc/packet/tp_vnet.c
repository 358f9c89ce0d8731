#include "tp_vnet.h"
#include "tp_bytes.h"
#include "tp_l34.h"
#include "tp_proto.h"

#include <string.h>

void tp_vnet_hdr_read(const uint8_t *p, struct tp_vnet_hdr *h)
{
    h->flags = p[0];
    h->gso_type = p[1];
    h->hdr_len = tp_rd16le(p + 2);
    h->gso_size = tp_rd16le(p + 4);
    h->csum_start = tp_rd16le(p + 6);
    h->csum_offset = tp_rd16le(p + 8);
}

void tp_vnet_hdr_write(uint8_t *p, const struct tp_vnet_hdr *h, int size)
{
    memset(p, 0, (size_t)size);
    p[0] = h->flags;
    p[1] = h->gso_type;
    tp_wr16le(p + 2, h->hdr_len);
    tp_wr16le(p + 4, h->gso_size);
    tp_wr16le(p + 6, h->csum_start);
    tp_wr16le(p + 8, h->csum_offset);
}

/* NEEDS_CSUM without GSO: the field holds the pseudo-header sum; add the
 * rest and complement, in place. */
static int tp__complete_csum(const struct tp_vnet_hdr *h, uint8_t *pkt, uint32_t len, int l2)
{
    uint32_t start = h->csum_start, at = start + h->csum_offset;
    struct tp_parsed pp;
    uint16_t c;

    if (start >= len || len < 2 || at > len - 2)
        return TP_VNET_EMALFORMED;
    c = (uint16_t)~tp_csum_fold(tp_csum_add(0, pkt + start, len - start));
    if (tp_parse(pkt, len, l2, &pp) == TP_PARSE_OK && pp.l4 == start &&
        (pp.proto == TP_IPPROTO_UDP || pp.proto == TP_IPPROTO_UDPLITE))
        c = tp_csum_udp(c);
    tp_csum_store(pkt + at, c);
    return 0;
}

int tp_vnet_count_segs(const struct tp_vnet_hdr *h, const uint8_t *pkt, uint32_t len, int l2)
{
    struct tp_l34 o;
    uint8_t gso = h->gso_type & (uint8_t)~TP_VNET_GSO_ECN;
    uint32_t payload;

    if (gso == TP_VNET_GSO_NONE || h->gso_size == 0 || tp_l34_parse(pkt, len, l2, &o) < 0)
        return 1;
    payload = o.end - (o.l4 + o.l4hl);
    return payload > h->gso_size ? (int)((payload + h->gso_size - 1u) / h->gso_size) : 1;
}

int tp_vnet_split_begin(struct tp_vnet_splitter *s, const struct tp_vnet_hdr *h,
                        uint8_t *pkt, uint32_t len, int l2)
{
    struct tp_l34 o;
    uint8_t gso = h->gso_type & (uint8_t)~TP_VNET_GSO_ECN;
    int rc;

    memset(s, 0, sizeof(*s));
    s->pkt = pkt;
    s->len = len;
    if (gso == TP_VNET_GSO_NONE) {
        if ((h->flags & TP_VNET_F_NEEDS_CSUM) && (rc = tp__complete_csum(h, pkt, len, l2)) < 0)
            return rc;
        s->nseg = 1;   /* the packet as it is (hl 0: no separate header) */
        return 1;
    }
    if (gso != TP_VNET_GSO_TCPV4 && gso != TP_VNET_GSO_TCPV6 && gso != TP_VNET_GSO_UDP_L4)
        return TP_VNET_EUNSUPPORTED;
    if ((rc = tp_l34_parse(pkt, len, l2, &o)) < 0)
        return rc;
    if ((gso == TP_VNET_GSO_UDP_L4) != (o.proto == TP_IPPROTO_UDP) ||
        (gso == TP_VNET_GSO_TCPV4 && o.v6) || (gso == TP_VNET_GSO_TCPV6 && !o.v6))
        return TP_VNET_EMALFORMED;   /* the header and the packet disagree */
    s->hl = o.l4 + o.l4hl;
    s->payload = o.end - s->hl;
    s->mss = h->gso_size;
    if (s->mss == 0 || s->payload == 0)
        return TP_VNET_EMALFORMED;
    if (s->hl > TP_VNET_HDR_ROOM)
        return TP_VNET_EUNSUPPORTED;
    s->nseg = (s->payload + s->mss - 1) / s->mss;
    if (s->nseg > TP_VNET_SPLIT_MAX_SEGS)
        return TP_VNET_ETOOMANY;
    s->l3 = o.l3;
    s->l4 = o.l4;
    s->l4hl = (uint8_t)o.l4hl;
    s->v6 = (uint8_t)o.v6;
    s->proto = (uint8_t)o.proto;
    s->base = tp_l34_pseudo(pkt, &o);
    s->id0 = o.v6 ? 0 : tp_rd16(pkt + o.l3 + TP_IPV4_ID);
    s->seq0 = o.proto == TP_IPPROTO_TCP ? tp_rd32(pkt + o.l4 + TP_TCP_SEQ) : 0;
    return (int)s->nseg;
}

/* Segment i's header into hdr, with its checksum. */
static void tp__make_seg(const struct tp_vnet_splitter *s, uint32_t i, uint8_t *hdr, uint32_t plen)
{
    const struct tp_l34 o = { .l3 = s->l3, .iphl = s->l4 - s->l3, .l4 = s->l4, .l4hl = s->l4hl,
                               .v6 = s->v6, .proto = s->proto };
    uint8_t *l4 = hdr + s->l4;
    uint32_t l4len = s->l4hl + plen;
    int at = tp_l34_csum_off(s->proto);

    memcpy(hdr, s->pkt, s->hl);
    if (!s->v6)
        tp_wr16(hdr + s->l3 + TP_IPV4_ID, (uint16_t)(s->id0 + i));
    tp_l34_set_ip_len(hdr, &o, l4len);
    if (s->proto == TP_IPPROTO_TCP) {
        tp_wr32(l4 + TP_TCP_SEQ, s->seq0 + i * s->mss);
        if (i > 0)
            l4[TP_TCP_FLAGS] &= (uint8_t)~TP_TCP_CWR;
        if (i + 1 < s->nseg)
            l4[TP_TCP_FLAGS] &= (uint8_t)~(TP_TCP_FIN | TP_TCP_PSH);
    } else {
        tp_wr16(l4 + TP_UDP_LEN, (uint16_t)l4len);
    }
    l4[at] = l4[at + 1] = 0;
    uint64_t sum = s->base + tp_csum_word((uint16_t)l4len);
    sum = tp_csum_add(sum, l4, s->l4hl);
    sum = tp_csum_add(sum, s->pkt + s->hl + (size_t)i * s->mss, plen);
    uint16_t c = (uint16_t)~tp_csum_fold(sum);
    tp_csum_store(l4 + at, s->proto == TP_IPPROTO_UDP ? tp_csum_udp(c) : c);
}

int tp_vnet_split_next(struct tp_vnet_splitter *s, uint8_t *scratch, struct tp_seg *segs, int max_segs)
{
    int n = 0;

    if (s->hl == 0 && s->done < s->nseg && max_segs > 0) {   /* not a super-packet */
        segs[0] = (struct tp_seg){ NULL, 0, s->pkt, s->len };
        s->done = 1;
        return 1;
    }
    for (; s->done < s->nseg && n < max_segs; s->done++, n++) {
        uint32_t i = s->done;
        uint32_t plen = i + 1 < s->nseg ? s->mss : s->payload - i * s->mss;
        uint8_t *hdr = scratch + (size_t)n * TP_VNET_HDR_ROOM;

        tp__make_seg(s, i, hdr, plen);
        segs[n].hdr = hdr;
        segs[n].hdr_len = s->hl;
        segs[n].data = s->pkt + s->hl + (size_t)i * s->mss;
        segs[n].len = plen;
    }
    return n;
}

int tp_vnet_split(const struct tp_vnet_hdr *h, uint8_t *pkt, uint32_t len, int l2,
                  uint8_t *scratch, struct tp_seg *segs, int max_segs)
{
    struct tp_vnet_splitter s;
    int n = tp_vnet_split_begin(&s, h, pkt, len, l2);

    if (n < 0)
        return n;
    if (n > max_segs)
        return TP_VNET_ETOOMANY;
    return tp_vnet_split_next(&s, scratch, segs, max_segs);
}
