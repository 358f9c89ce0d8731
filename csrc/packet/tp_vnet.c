#include "tp_vnet.h"
#include "tp_compat.h"

#include <string.h>

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_URG 0x20
#define TCP_ECE 0x40
#define TCP_CWR 0x80

static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t rd32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void wr32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static void wle16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

void tp_vnet_hdr_read(const uint8_t *p, struct tp_vnet_hdr *h)
{
    h->flags = p[0];
    h->gso_type = p[1];
    h->hdr_len = le16(p + 2);
    h->gso_size = le16(p + 4);
    h->csum_start = le16(p + 6);
    h->csum_offset = le16(p + 8);
}

void tp_vnet_hdr_write(uint8_t *p, const struct tp_vnet_hdr *h, int size)
{
    memset(p, 0, (size_t)size);
    p[0] = h->flags;
    p[1] = h->gso_type;
    wle16(p + 2, h->hdr_len);
    wle16(p + 4, h->gso_size);
    wle16(p + 6, h->csum_start);
    wle16(p + 8, h->csum_offset);
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

    wr16(b, v);
    memcpy(&w, b, 2);
    return w;
}

static void tp__store_csum(uint8_t *at, uint16_t folded_native)
{
    memcpy(at, &folded_native, 2);
}

/* ---- parsing -------------------------------------------------------------- */

struct tp__l34 {
    int l3, v6, iphl, proto, l4, l4hl;
    uint32_t end;      /* offset just past the IP packet */
};

static int tp__parse(const uint8_t *p, uint32_t len, int l2, struct tp__l34 *o)
{
    uint32_t l3 = (uint32_t)l2;

    if (l2) {
        if (len < 14)
            return TP_VNET_EMALFORMED;
        uint16_t et = rd16(p + 12);
        if (et != 0x0800 && et != 0x86DD)
            return TP_VNET_EUNSUPPORTED;
    }
    o->l3 = (int)l3;
    if (len < l3 + 1)
        return TP_VNET_EMALFORMED;
    if ((p[l3] >> 4) == 4) {
        if (len < l3 + 20)
            return TP_VNET_EMALFORMED;
        o->v6 = 0;
        o->iphl = (p[l3] & 0xf) * 4;
        uint32_t tot = rd16(p + l3 + 2);
        if (o->iphl < 20 || tot < (uint32_t)o->iphl || l3 + tot > len)
            return TP_VNET_EMALFORMED;
        if (rd16(p + l3 + 6) & 0x3fff)
            return TP_VNET_EUNSUPPORTED;    /* a fragment */
        o->proto = p[l3 + 9];
        o->end = l3 + tot;
    } else if ((p[l3] >> 4) == 6) {
        if (len < l3 + 40)
            return TP_VNET_EMALFORMED;
        o->v6 = 1;
        o->iphl = 40;
        uint32_t plen = rd16(p + l3 + 4);
        if (plen == 0)
            return TP_VNET_EUNSUPPORTED;    /* jumbogram */
        if (l3 + 40 + plen > len)
            return TP_VNET_EMALFORMED;
        o->proto = p[l3 + 6];               /* extension headers are not walked */
        o->end = l3 + 40 + plen;
    } else {
        return TP_VNET_EMALFORMED;
    }
    o->l4 = o->l3 + o->iphl;
    if (o->proto == 6) {
        if ((uint32_t)o->l4 + 20 > o->end)
            return TP_VNET_EMALFORMED;
        o->l4hl = (p[o->l4 + 12] >> 4) * 4;
        if (o->l4hl < 20 || (uint32_t)(o->l4 + o->l4hl) > o->end)
            return TP_VNET_EMALFORMED;
    } else if (o->proto == 17) {
        if ((uint32_t)o->l4 + 8 > o->end)
            return TP_VNET_EMALFORMED;
        o->l4hl = 8;
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
        return tp_csum_add(sum, p + o->l3 + 8, 32);
    return tp_csum_add(sum, p + o->l3 + 12, 8);
}

static void tp__ipv4_csum(uint8_t *ip, int iphl)
{
    ip[10] = ip[11] = 0;
    tp__store_csum(ip + 10, (uint16_t)~tp_csum_fold(tp_csum_add(0, ip, (size_t)iphl)));
}

static void tp__set_ip_len(uint8_t *p, const struct tp__l34 *o, uint32_t l4len)
{
    if (o->v6) {
        wr16(p + o->l3 + 4, (uint16_t)l4len);
    } else {
        wr16(p + o->l3 + 2, (uint16_t)(o->iphl + l4len));
        tp__ipv4_csum(p + o->l3, o->iphl);
    }
}

/* ---- split ---------------------------------------------------------------- */

int tp_vnet_split(const struct tp_vnet_hdr *h, uint8_t *pkt, uint32_t len, int l2,
                  uint8_t *scratch, struct tp_seg *segs, int max_segs)
{
    struct tp__l34 o;
    uint8_t gso = h->gso_type & (uint8_t)~TP_VNET_GSO_ECN;
    int rc;

    if (gso == TP_VNET_GSO_NONE) {
        if (h->flags & TP_VNET_F_NEEDS_CSUM) {
            uint32_t start = h->csum_start, at = start + h->csum_offset;
            if (at + 2 > len || start >= len)
                return TP_VNET_EMALFORMED;
            /* The field holds the pseudo-header sum; add the rest, complement. */
            tp__store_csum(pkt + at, (uint16_t)~tp_csum_fold(tp_csum_add(0, pkt + start, len - start)));
        }
        segs[0].hdr = NULL;
        segs[0].hdr_len = 0;
        segs[0].data = pkt;
        segs[0].len = len;
        return 1;
    }
    if (gso != TP_VNET_GSO_TCPV4 && gso != TP_VNET_GSO_TCPV6 && gso != TP_VNET_GSO_UDP_L4)
        return TP_VNET_EUNSUPPORTED;
    if ((rc = tp__parse(pkt, len, l2, &o)) < 0)
        return rc;
    if ((gso == TP_VNET_GSO_UDP_L4) != (o.proto == 17) ||
        (gso == TP_VNET_GSO_TCPV4 && o.v6) || (gso == TP_VNET_GSO_TCPV6 && !o.v6))
        return TP_VNET_EMALFORMED;   /* the header and the packet disagree */

    uint32_t hl = (uint32_t)(o.l4 + o.l4hl);
    uint32_t payload = o.end - hl, mss = h->gso_size;
    if (mss == 0 || payload == 0)
        return TP_VNET_EMALFORMED;
    if (hl > TP_VNET_HDR_ROOM)
        return TP_VNET_EUNSUPPORTED;
    uint32_t nseg = (payload + mss - 1) / mss;
    if (nseg > (uint32_t)max_segs)
        return TP_VNET_ETOOMANY;

    uint64_t base = tp__pseudo(pkt, &o);
    uint16_t id0 = o.v6 ? 0 : rd16(pkt + o.l3 + 4);
    uint32_t seq0 = o.proto == 6 ? rd32(pkt + o.l4 + 4) : 0;
    int csum_at = o.proto == 6 ? 16 : 6;

    for (uint32_t i = 0; i < nseg; i++) {
        uint32_t plen = i + 1 < nseg ? mss : payload - i * mss;
        uint8_t *hdr = scratch + (size_t)i * TP_VNET_HDR_ROOM;
        uint8_t *l4 = hdr + o.l4;
        uint32_t l4len = (uint32_t)o.l4hl + plen;

        memcpy(hdr, pkt, hl);
        if (!o.v6)
            wr16(hdr + o.l3 + 4, (uint16_t)(id0 + i));
        tp__set_ip_len(hdr, &o, l4len);
        if (o.proto == 6) {
            wr32(l4 + 4, seq0 + i * mss);
            if (i > 0)
                l4[13] &= (uint8_t)~TCP_CWR;
            if (i + 1 < nseg)
                l4[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
        } else {
            wr16(l4 + 4, (uint16_t)l4len);
        }
        l4[csum_at] = l4[csum_at + 1] = 0;
        uint64_t sum = base + tp__word((uint16_t)l4len);
        sum = tp_csum_add(sum, l4, (size_t)o.l4hl);
        sum = tp_csum_add(sum, pkt + hl + i * mss, plen);
        uint16_t c = (uint16_t)~tp_csum_fold(sum);
        if (o.proto == 17 && c == 0)
            c = 0xffff;   /* 0 means "no checksum" in UDP */
        tp__store_csum(l4 + csum_at, c);
        segs[i].hdr = hdr;
        segs[i].hdr_len = hl;
        segs[i].data = pkt + hl + i * mss;
        segs[i].len = plen;
    }
    return (int)nseg;
}

/* ---- coalesce ------------------------------------------------------------- */

/* A packet that may join a super-packet: parsed, a plain data segment, and
 * its checksum verifies (merging must not launder a corrupt packet). */
static int tp__gro_candidate(const uint8_t *p, uint32_t len, int l2, unsigned what, struct tp__l34 *o)
{
    if (tp__parse(p, len, l2, o) < 0)
        return 0;
    if (!o->v6 && o->iphl != 20)
        return 0;
    uint32_t l4len = o->end - (uint32_t)o->l4;
    uint32_t payload = l4len - (uint32_t)o->l4hl;
    if (payload == 0)
        return 0;
    if (o->proto == 6) {
        uint8_t f = p[o->l4 + 13];
        if (!(what & TP_GRO_TCP) || !(f & TCP_ACK) ||
            (f & (TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_CWR | TCP_ECE)))
            return 0;
    } else {
        if (!(what & TP_GRO_UDP) || rd16(p + o->l4 + 6) == 0 || rd16(p + o->l4 + 4) != l4len)
            return 0;
    }
    uint64_t sum = tp__pseudo(p, o) + tp__word((uint16_t)l4len);
    sum = tp_csum_add(sum, p + o->l4, l4len);
    return tp_csum_fold(sum) == 0xffff;
}

struct tp__open {
    int unit;
    struct tp__l34 o;
    uint32_t mss, payload, next_seq;
};

#define TP__MAX_OPEN 32

static int tp__same_flow(const uint8_t *a, const uint8_t *b, const struct tp__l34 *o, const struct tp__l34 *ob)
{
    if (o->v6 != ob->v6 || o->proto != ob->proto || o->l4hl != ob->l4hl || o->l3 != ob->l3)
        return 0;
    if (o->l3 && memcmp(a, b, 14) != 0)
        return 0;
    const uint8_t *x = a + o->l3, *y = b + o->l3;
    if (o->v6) {
        /* version, traffic class, flow label, next header, hop limit, addresses */
        if (memcmp(x, y, 4) != 0 || memcmp(x + 6, y + 6, 34) != 0)
            return 0;
    } else {
        if (x[1] != y[1] || x[8] != y[8] || x[9] != y[9] || (x[6] & 0x40) != (y[6] & 0x40) ||
            memcmp(x + 12, y + 12, 8) != 0)
            return 0;
    }
    const uint8_t *s = a + o->l4, *t = b + o->l4;
    if (memcmp(s, t, 4) != 0)   /* ports */
        return 0;
    if (o->proto == 6) {
        /* same ACK, same flags but PSH, same options (timestamps included) */
        if (memcmp(s + 8, t + 8, 4) != 0 || ((s[13] ^ t[13]) & (uint8_t)~TCP_PSH) != 0 ||
            memcmp(s + 20, t + 20, (size_t)o->l4hl - 20) != 0)
            return 0;
    }
    return 1;
}

static void tp__gro_finish(struct tp_gro_pkt *pkts, struct tp_gro_unit *u, const struct tp__open *op,
                           int last_psh)
{
    uint8_t *p = pkts[u->first].data;
    const struct tp__l34 *o = &op->o;
    uint32_t l4len = (uint32_t)o->l4hl + op->payload;
    int csum_at = o->proto == 6 ? 16 : 6;

    tp__set_ip_len(p, o, l4len);
    if (o->proto == 6) {
        if (last_psh)
            p[o->l4 + 13] |= TCP_PSH;
    } else {
        wr16(p + o->l4 + 4, (uint16_t)l4len);
    }
    /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented. */
    p[o->l4 + csum_at] = p[o->l4 + csum_at + 1] = 0;
    tp__store_csum(p + o->l4 + csum_at, tp_csum_fold(tp__pseudo(p, o) + tp__word((uint16_t)l4len)));
    u->vh.flags = TP_VNET_F_NEEDS_CSUM;
    u->vh.gso_type = o->proto == 17 ? TP_VNET_GSO_UDP_L4 : o->v6 ? TP_VNET_GSO_TCPV6 : TP_VNET_GSO_TCPV4;
    u->vh.hdr_len = (uint16_t)(o->l4 + o->l4hl);
    u->vh.gso_size = (uint16_t)op->mss;
    u->vh.csum_start = (uint16_t)o->l4;
    u->vh.csum_offset = (uint16_t)csum_at;
}

int tp_gro_coalesce(struct tp_gro_pkt *pkts, int n, int l2, unsigned what,
                    int *next, uint32_t *skip, struct tp_gro_unit *units)
{
    struct tp__open open[TP__MAX_OPEN];
    int last_psh[TP__MAX_OPEN];
    int nopen = 0, nunits = 0;

    for (int i = 0; i < n; i++) {
        struct tp__l34 o;
        uint8_t *p = pkts[i].data;
        int j;

        next[i] = -1;
        skip[i] = 0;
        if (!tp__gro_candidate(p, pkts[i].len, l2, what, &o)) {
            struct tp_gro_unit *u = &units[nunits++];
            memset(u, 0, sizeof(*u));
            u->first = u->last = i;
            u->count = 1;
            continue;
        }
        uint32_t hl = (uint32_t)(o.l4 + o.l4hl);
        uint32_t payload = o.end - hl;
        uint32_t seq = o.proto == 6 ? rd32(p + o.l4 + 4) : 0;
        int psh = o.proto == 6 && (p[o.l4 + 13] & TCP_PSH);

        for (j = nopen - 1; j >= 0; j--)
            if (tp__same_flow(pkts[units[open[j].unit].first].data, p, &open[j].o, &o))
                break;
        if (j >= 0) {
            struct tp__open *op = &open[j];
            struct tp_gro_unit *u = &units[op->unit];
            int fits = payload <= op->mss && u->count < TP_VNET_MAX_SEGS &&
                       (uint32_t)op->o.l4hl + op->payload + payload + (op->o.v6 ? 0 : 20) <= 65535 &&
                       (o.proto != 6 || seq == op->next_seq);
            if (fits) {
                next[u->last] = i;
                u->last = i;
                u->count++;
                skip[i] = hl;
                op->payload += payload;
                op->next_seq = seq + payload;
                last_psh[j] = psh;
                if (psh || payload < op->mss) {   /* the run ends here */
                    if (u->count > 1)
                        tp__gro_finish(pkts, u, op, last_psh[j]);
                    open[j] = open[nopen - 1];
                    last_psh[j] = last_psh[nopen - 1];
                    nopen--;
                }
                continue;
            }
            /* Out of step: close that run; this packet starts another. */
            if (u->count > 1)
                tp__gro_finish(pkts, u, op, last_psh[j]);
            open[j] = open[nopen - 1];
            last_psh[j] = last_psh[nopen - 1];
            nopen--;
        }
        struct tp_gro_unit *u = &units[nunits];
        memset(u, 0, sizeof(*u));
        u->first = u->last = i;
        u->count = 1;
        if (!psh) {
            if (nopen == TP__MAX_OPEN) {   /* make room: close the oldest */
                struct tp_gro_unit *old = &units[open[0].unit];
                if (old->count > 1)
                    tp__gro_finish(pkts, old, &open[0], last_psh[0]);
                memmove(open, open + 1, sizeof(open[0]) * (TP__MAX_OPEN - 1));
                memmove(last_psh, last_psh + 1, sizeof(last_psh[0]) * (TP__MAX_OPEN - 1));
                nopen--;
            }
            open[nopen].unit = nunits;
            open[nopen].o = o;
            open[nopen].mss = payload;
            open[nopen].payload = payload;
            open[nopen].next_seq = seq + payload;
            last_psh[nopen] = 0;
            nopen++;
        }
        nunits++;
    }
    for (int j = 0; j < nopen; j++) {
        struct tp_gro_unit *u = &units[open[j].unit];
        if (u->count > 1)
            tp__gro_finish(pkts, u, &open[j], last_psh[j]);
    }
    return nunits;
}
