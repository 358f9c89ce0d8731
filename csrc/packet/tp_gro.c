/* GRO: coalescing plain packets into super-packets a device takes (declared
 * in tp_vnet.h). */
#include "tp_vnet.h"
#include "tp_bytes.h"
#include "tp_l34.h"
#include "tp_proto.h"

#include <string.h>

/* A packet as coalescing sees it. parsed: the headers were found (the flow
 * can be compared); ok: it may join or start a super-packet. */
struct tp__cand {
    struct tp_l34 o;
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
    const struct tp_l34 *o = &c->o;
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
    /* The checksum must verify: merging must not launder a corrupt packet
     * (unless the bytes were authenticated end to end). */
    if (what & TP_GRO_CSUM_TRUSTED)
        return 1;
    uint64_t sum = tp_l34_pseudo(p, o) + tp_csum_word((uint16_t)l4len);
    return tp_csum_fold(tp_csum_add(sum, l4, l4len)) == 0xffff;
}

static void tp__gro_classify(const uint8_t *p, uint32_t len, int l2, unsigned what, struct tp__cand *c)
{
    struct tp_l34 *o = &c->o;

    memset(c, 0, sizeof(*c));
    if (tp_l34_parse(p, len, l2, o) < 0)
        return;
    c->parsed = 1;
    if (o->l3 != (l2 != TP_L2_NONE ? TP_ETH_HLEN : 0u))
        return;   /* VLAN-tagged frames are not built into super-packets */
    if (o->end != len)
        return;   /* trailing bytes (padding) would land inside the super-packet */
    if (!o->v6 && (o->iphl != TP_IPV4_HLEN || (!(what & TP_GRO_CSUM_TRUSTED) && !tp__ipv4_hdr_ok(p + o->l3))))
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
    struct tp_l34 o;
    uint32_t mss, payload, next_seq;
    uint16_t id0;
};

#define TP__MAX_OPEN 32

/* The same flow: link header, addresses, protocol, ports. */
static int tp__same_flow(const uint8_t *a, const uint8_t *b, const struct tp_l34 *o, const struct tp_l34 *ob)
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
    const struct tp_l34 *o = &op->o;
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
    const struct tp_l34 *o = &op->o;
    uint32_t l4len = o->l4hl + op->payload;
    int at = tp_l34_csum_off(o->proto);

    if (u->count < 2)
        return;
    tp_l34_set_ip_len(p, o, l4len);
    if (o->proto == TP_IPPROTO_TCP) {
        if (op->last_psh)
            p[o->l4 + TP_TCP_FLAGS] |= TP_TCP_PSH;
    } else {
        tp_wr16(p + o->l4 + TP_UDP_LEN, (uint16_t)l4len);
    }
    /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented. */
    p[o->l4 + at] = p[o->l4 + at + 1] = 0;
    tp_csum_store(p + o->l4 + at, tp_csum_fold(tp_l34_pseudo(p, o) + tp_csum_word((uint16_t)l4len)));
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
