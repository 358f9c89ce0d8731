#include "tp_vnet.h"
#include "tp_bytes.h"
#include "tp_parse.h"
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

/* ---- checksums ------------------------------------------------------------ */

uint64_t tp_csum_add(uint64_t sum, const void *data, size_t len)
{
    const uint8_t *p = data;

    /* 32-bit words into a 64-bit accumulator: no carry handling in the loop. */
    while (len >= 16) {
        uint32_t a, b, c, d;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        memcpy(&c, p + 8, 4);
        memcpy(&d, p + 12, 4);
        sum += (uint64_t)a + b + c + d;
        p += 16;
        len -= 16;
    }
    while (len >= 4) {
        uint32_t a;
        memcpy(&a, p, 4);
        sum += a;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t a;
        memcpy(&a, p, 2);
        sum += a;
        p += 2;
        len -= 2;
    }
    if (len) {
        uint8_t last[2] = { p[0], 0 };   /* pad the odd byte on the right */
        uint16_t a;
        memcpy(&a, last, 2);
        sum += a;
    }
    return sum;
}

uint16_t tp_csum_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* A 16-bit value in network order as the checksum code adds words. */
static uint64_t tp__word(uint16_t v)
{
    uint8_t b[2];
    uint16_t w;

    tp_wr16(b, v);
    memcpy(&w, b, 2);
    return w;
}

static void tp__store_csum(uint8_t *at, uint16_t folded_native)
{
    memcpy(at, &folded_native, 2);
}

/* A completed UDP checksum of 0 goes out as 0xffff: 0 means "none" in UDP
 * (RFC 768), and IPv6 receivers drop it. Same value in one's complement. */
static uint16_t tp__udp_csum(uint16_t c)
{
    return c == 0 ? 0xffff : c;
}

/* ---- the headers offloads work on ----------------------------------------- */

struct tp__l34 {
    uint32_t l3, iphl, l4, l4hl;
    uint32_t end;      /* offset just past the IP packet */
    int v6, proto;
};

/* IP (no fragment, no IPv6 extension header) with a complete TCP or UDP header. */
static int tp__parse_l34(const uint8_t *p, uint32_t len, int l2, struct tp__l34 *o)
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

/* Pseudo-header sum without the length. */
static uint64_t tp__pseudo(const uint8_t *p, const struct tp__l34 *o)
{
    uint64_t sum = tp__word((uint16_t)o->proto);

    if (o->v6)
        return tp_csum_add(sum, p + o->l3 + TP_IPV6_SADDR, 32);
    return tp_csum_add(sum, p + o->l3 + TP_IPV4_SADDR, 8);
}

static void tp__ipv4_csum(uint8_t *ip, uint32_t iphl)
{
    ip[TP_IPV4_CSUM] = ip[TP_IPV4_CSUM + 1] = 0;
    tp__store_csum(ip + TP_IPV4_CSUM, (uint16_t)~tp_csum_fold(tp_csum_add(0, ip, iphl)));
}

static void tp__set_ip_len(uint8_t *p, const struct tp__l34 *o, uint32_t l4len)
{
    if (o->v6) {
        tp_wr16(p + o->l3 + TP_IPV6_PLEN, (uint16_t)l4len);
    } else {
        tp_wr16(p + o->l3 + TP_IPV4_LEN, (uint16_t)(o->iphl + l4len));
        tp__ipv4_csum(p + o->l3, o->iphl);
    }
}

static int tp__l4_csum_off(int proto)
{
    return proto == TP_IPPROTO_TCP ? TP_TCP_CSUM_OFF : TP_UDP_CSUM_OFF;
}

/* ---- split ---------------------------------------------------------------- */

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
        c = tp__udp_csum(c);
    tp__store_csum(pkt + at, c);
    return 0;
}

int tp_vnet_split_begin(struct tp_vnet_splitter *s, const struct tp_vnet_hdr *h,
                        uint8_t *pkt, uint32_t len, int l2)
{
    struct tp__l34 o;
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
    if ((rc = tp__parse_l34(pkt, len, l2, &o)) < 0)
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
    s->base = tp__pseudo(pkt, &o);
    s->id0 = o.v6 ? 0 : tp_rd16(pkt + o.l3 + TP_IPV4_ID);
    s->seq0 = o.proto == TP_IPPROTO_TCP ? tp_rd32(pkt + o.l4 + TP_TCP_SEQ) : 0;
    return (int)s->nseg;
}

/* Segment i's header into hdr, with its checksum. */
static void tp__make_seg(const struct tp_vnet_splitter *s, uint32_t i, uint8_t *hdr, uint32_t plen)
{
    const struct tp__l34 o = { .l3 = s->l3, .iphl = s->l4 - s->l3, .l4 = s->l4, .l4hl = s->l4hl,
                               .v6 = s->v6, .proto = s->proto };
    uint8_t *l4 = hdr + s->l4;
    uint32_t l4len = s->l4hl + plen;
    int at = tp__l4_csum_off(s->proto);

    memcpy(hdr, s->pkt, s->hl);
    if (!s->v6)
        tp_wr16(hdr + s->l3 + TP_IPV4_ID, (uint16_t)(s->id0 + i));
    tp__set_ip_len(hdr, &o, l4len);
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
    uint64_t sum = s->base + tp__word((uint16_t)l4len);
    sum = tp_csum_add(sum, l4, s->l4hl);
    sum = tp_csum_add(sum, s->pkt + s->hl + (size_t)i * s->mss, plen);
    uint16_t c = (uint16_t)~tp_csum_fold(sum);
    tp__store_csum(l4 + at, s->proto == TP_IPPROTO_UDP ? tp__udp_csum(c) : c);
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

/* ---- coalesce ------------------------------------------------------------- */

/* A packet as coalescing sees it. parsed: the headers were found (the flow
 * can be compared); ok: it may join or start a super-packet. */
struct tp__cand {
    struct tp__l34 o;
    uint32_t payload, seq;
    uint16_t id;
    int parsed, ok, psh;
};

static int tp__ipv4_hdr_ok(const uint8_t *ip)
{
    return tp_csum_fold(tp_csum_add(0, ip, TP_IPV4_HLEN)) == 0xffff;
}

static int tp__l4_ok(const uint8_t *p, const struct tp__cand *c, unsigned what)
{
    const struct tp__l34 *o = &c->o;
    const uint8_t *l4 = p + o->l4;
    uint32_t l4len = o->end - o->l4;

    if (o->proto == TP_IPPROTO_TCP) {
        uint8_t f = l4[TP_TCP_FLAGS];
        if (!(what & TP_GRO_TCP) || !(f & TP_TCP_ACK) ||
            (f & (TP_TCP_SYN | TP_TCP_FIN | TP_TCP_RST | TP_TCP_URG | TP_TCP_CWR | TP_TCP_ECE)))
            return 0;
    } else if (!(what & TP_GRO_UDP) || tp_rd16(l4 + TP_UDP_CSUM_OFF) == 0 || tp_rd16(l4 + TP_UDP_LEN) != l4len) {
        return 0;
    }
    /* The checksum must verify: merging must not launder a corrupt packet. */
    uint64_t sum = tp__pseudo(p, o) + tp__word((uint16_t)l4len);
    return tp_csum_fold(tp_csum_add(sum, l4, l4len)) == 0xffff;
}

static void tp__gro_classify(const uint8_t *p, uint32_t len, int l2, unsigned what, struct tp__cand *c)
{
    struct tp__l34 *o = &c->o;

    memset(c, 0, sizeof(*c));
    if (tp__parse_l34(p, len, l2, o) < 0)
        return;
    c->parsed = 1;
    if (o->l3 != (l2 != TP_L2_NONE ? TP_ETH_HLEN : 0u))
        return;   /* VLAN-tagged frames are not built into super-packets */
    if (o->end != len)
        return;   /* trailing bytes (padding) would land inside the super-packet */
    if (!o->v6 && (o->iphl != TP_IPV4_HLEN || !tp__ipv4_hdr_ok(p + o->l3)))
        return;   /* options, or a header checksum we would overwrite unverified */
    c->payload = o->end - o->l4 - o->l4hl;
    if (c->payload == 0 || !tp__l4_ok(p, c, what))
        return;
    c->seq = o->proto == TP_IPPROTO_TCP ? tp_rd32(p + o->l4 + TP_TCP_SEQ) : 0;
    c->psh = o->proto == TP_IPPROTO_TCP && (p[o->l4 + TP_TCP_FLAGS] & TP_TCP_PSH);
    c->id = o->v6 ? 0 : tp_rd16(p + o->l3 + TP_IPV4_ID);
    c->ok = 1;
}

/* A run being built: its unit, the first packet's headers, what the next
 * packet must match. id_mode: IPv4 IDs seen so far (0 one packet, 1 +1
 * each, 2 all equal). */
struct tp__open {
    int unit, last_psh, id_mode;
    struct tp__l34 o;
    uint32_t mss, payload, next_seq;
    uint16_t id0;
};

#define TP__MAX_OPEN 32

/* The same flow: link header, addresses, protocol, ports. */
static int tp__same_flow(const uint8_t *a, const uint8_t *b, const struct tp__l34 *o, const struct tp__l34 *ob)
{
    if (o->v6 != ob->v6 || o->proto != ob->proto || o->l3 != ob->l3 || o->l4 != ob->l4)
        return 0;
    if (o->l3 && memcmp(a, b, o->l3) != 0)
        return 0;
    if (o->v6 ? memcmp(a + o->l3 + TP_IPV6_SADDR, b + o->l3 + TP_IPV6_SADDR, 32) != 0
              : memcmp(a + o->l3 + TP_IPV4_SADDR, b + o->l3 + TP_IPV4_SADDR, 8) != 0)
        return 0;
    return memcmp(a + o->l4, b + o->l4, 4) == 0;
}

/* IP fields a packet must share with its run (inet_gro_flush, ipv6_gro_receive). */
static int tp__ip_joins(const struct tp__open *op, const uint8_t *x, const uint8_t *y,
                        const struct tp__cand *c, int count, int *id_mode)
{
    if (op->o.v6)   /* version, traffic class, flow label; hop limit */
        return memcmp(x, y, 4) == 0 && x[TP_IPV6_HOPS] == y[TP_IPV6_HOPS];
    if (x[TP_IPV4_TOS] != y[TP_IPV4_TOS] || x[TP_IPV4_TTL] != y[TP_IPV4_TTL] ||
        ((x[TP_IPV4_FRAG] ^ y[TP_IPV4_FRAG]) & (TP_IP_DF >> 8)))
        return 0;   /* TOS, TTL, DF */
    int inc = (uint16_t)(c->id - op->id0) == (uint16_t)count;
    int fixed = c->id == op->id0 && (y[TP_IPV4_FRAG] & (TP_IP_DF >> 8));
    *id_mode = inc && op->id_mode != 2 ? 1 : fixed && op->id_mode != 1 ? 2 : 0;
    return *id_mode != 0;
}

/* TCP fields (tcp_gro_receive): ACK number, header length, flags but PSH,
 * window, options; in sequence. */
static int tp__tcp_joins(const struct tp__open *op, const uint8_t *s, const uint8_t *t, const struct tp__cand *c)
{
    return memcmp(s + TP_TCP_ACK_SEQ, t + TP_TCP_ACK_SEQ, 4) == 0 && s[TP_TCP_DOFF] == t[TP_TCP_DOFF] &&
           ((s[TP_TCP_FLAGS] ^ t[TP_TCP_FLAGS]) & (uint8_t)~TP_TCP_PSH) == 0 &&
           memcmp(s + TP_TCP_WINDOW, t + TP_TCP_WINDOW, 2) == 0 &&
           memcmp(s + TP_TCP_HLEN, t + TP_TCP_HLEN, op->o.l4hl - TP_TCP_HLEN) == 0 &&
           c->seq == op->next_seq;
}

static int tp__joins(const struct tp__open *op, const struct tp_gro_unit *u, const uint8_t *first,
                     const uint8_t *p, const struct tp__cand *c, int *id_mode)
{
    const struct tp__l34 *o = &op->o;
    uint32_t iphl = o->v6 ? 0 : TP_IPV4_HLEN;

    if (!c->ok || c->o.l4hl != o->l4hl || c->payload > op->mss || u->count >= TP_VNET_MAX_SEGS ||
        iphl + o->l4hl + op->payload + c->payload > TP_IPV4_MAX_LEN)
        return 0;
    if (!tp__ip_joins(op, first + o->l3, p + o->l3, c, u->count, id_mode))
        return 0;
    return o->proto != TP_IPPROTO_TCP || tp__tcp_joins(op, first + o->l4, p + o->l4, c);
}

static void tp__gro_finish(struct tp_gro_pkt *pkts, struct tp_gro_unit *u, const struct tp__open *op)
{
    uint8_t *p = pkts[u->first].data;
    const struct tp__l34 *o = &op->o;
    uint32_t l4len = o->l4hl + op->payload;
    int at = tp__l4_csum_off(o->proto);

    if (u->count < 2)
        return;
    tp__set_ip_len(p, o, l4len);
    if (o->proto == TP_IPPROTO_TCP) {
        if (op->last_psh)
            p[o->l4 + TP_TCP_FLAGS] |= TP_TCP_PSH;
    } else {
        tp_wr16(p + o->l4 + TP_UDP_LEN, (uint16_t)l4len);
    }
    /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented. */
    p[o->l4 + at] = p[o->l4 + at + 1] = 0;
    tp__store_csum(p + o->l4 + at, tp_csum_fold(tp__pseudo(p, o) + tp__word((uint16_t)l4len)));
    u->vh.flags = TP_VNET_F_NEEDS_CSUM;
    u->vh.gso_type = o->proto == TP_IPPROTO_UDP ? TP_VNET_GSO_UDP_L4 : o->v6 ? TP_VNET_GSO_TCPV6 : TP_VNET_GSO_TCPV4;
    u->vh.hdr_len = (uint16_t)(o->l4 + o->l4hl);
    u->vh.gso_size = (uint16_t)op->mss;
    u->vh.csum_start = (uint16_t)o->l4;
    u->vh.csum_offset = (uint16_t)at;
}

struct tp__gro {
    struct tp_gro_pkt *pkts;
    struct tp_gro_unit *units;
    struct tp__open open[TP__MAX_OPEN];
    int nopen, nunits;
};

static void tp__close(struct tp__gro *g, int j)
{
    tp__gro_finish(g->pkts, &g->units[g->open[j].unit], &g->open[j]);
    memmove(g->open + j, g->open + j + 1, sizeof(g->open[0]) * (size_t)(g->nopen - j - 1));
    g->nopen--;
}

static int tp__new_unit(struct tp__gro *g, int i)
{
    struct tp_gro_unit *u = &g->units[g->nunits];

    memset(u, 0, sizeof(*u));
    u->first = u->last = i;
    u->count = 1;
    return g->nunits++;
}

/* Packet i starts a unit; a run when it can be continued. */
static void tp__start(struct tp__gro *g, int i, const struct tp__cand *c)
{
    int unit = tp__new_unit(g, i);

    if (!c->ok || c->psh)
        return;
    if (g->nopen == TP__MAX_OPEN)
        tp__close(g, 0);   /* make room: close the oldest */
    g->open[g->nopen++] = (struct tp__open){ .unit = unit, .o = c->o, .mss = c->payload,
                                             .payload = c->payload, .next_seq = c->seq + c->payload,
                                             .id0 = c->id };
}

int tp_gro_coalesce(struct tp_gro_pkt *pkts, int n, int l2, unsigned what,
                    int *next, uint32_t *skip, struct tp_gro_unit *units)
{
    struct tp__gro g = { .pkts = pkts, .units = units };

    for (int i = 0; i < n; i++) {
        struct tp__cand c;
        uint8_t *p = pkts[i].data;
        int j, id_mode = 0;

        next[i] = -1;
        skip[i] = 0;
        tp__gro_classify(p, pkts[i].len, l2, what, &c);
        for (j = g.nopen - 1; j >= 0 && c.parsed; j--)
            if (tp__same_flow(pkts[units[g.open[j].unit].first].data, p, &g.open[j].o, &c.o))
                break;
        if (j < 0 || !c.parsed) {
            tp__start(&g, i, &c);
            continue;
        }
        struct tp__open *op = &g.open[j];
        struct tp_gro_unit *u = &units[op->unit];
        if (!tp__joins(op, u, pkts[u->first].data, p, &c, &id_mode)) {
            tp__close(&g, j);   /* the flow's run ends here: order within a flow is kept */
            tp__start(&g, i, &c);
            continue;
        }
        next[u->last] = i;
        u->last = i;
        u->count++;
        skip[i] = c.o.l4 + c.o.l4hl;
        op->payload += c.payload;
        op->next_seq = c.seq + c.payload;
        op->last_psh = c.psh;
        op->id_mode = id_mode;
        if (c.psh || c.payload < op->mss)
            tp__close(&g, j);   /* PSH or a short segment ends a run */
    }
    while (g.nopen)
        tp__close(&g, g.nopen - 1);
    return g.nunits;
}
