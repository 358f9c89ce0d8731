/* Batch preparation (see tp_prepare.h): super-packets from a vnet_hdr device
 * pass through when the sink takes them and are split otherwise; for a
 * device sink the packets are grouped into writes, coalescing plain packets
 * into super-packets when the device takes them. */
#define _GNU_SOURCE
#include "tp_prepare.h"
#include "tp_compat.h"
#include "tp_xform.h"

#include <linux/if_ether.h>
#include <string.h>

/* Whether a device takes a packet with this vnet header as it is. */
static int tp__takes(const struct tp_fmt *dst, const struct tp_vnet_hdr *vh)
{
    unsigned need = 0;

    if (!dst->vnet_hdr_sz)
        return 0;
    switch (vh->gso_type & (uint8_t)~TP_VNET_GSO_ECN) {
    case TP_VNET_GSO_NONE: break;
    case TP_VNET_GSO_TCPV4: need = TUN_F_TSO4; break;
    case TP_VNET_GSO_TCPV6: need = TUN_F_TSO6; break;
    case TP_VNET_GSO_UDP_L4: need = TUN_F_USO4 | TUN_F_USO6; break;
    default: return 0;
    }
    if (need || (vh->flags & TP_VNET_F_NEEDS_CSUM))
        need |= TUN_F_CSUM;
    return (dst->offloads & need) == need;
}

unsigned tp__gro_what(const struct tp_fmt *dst)
{
    unsigned what = 0, o = dst->offloads;

    if (!dst->vnet_hdr_sz || !(o & TUN_F_CSUM))
        return 0;
    if ((o & (TUN_F_TSO4 | TUN_F_TSO6)) == (TUN_F_TSO4 | TUN_F_TSO6))
        what |= TP_GRO_TCP;
    if ((o & (TUN_F_USO4 | TUN_F_USO6)) == (TUN_F_USO4 | TUN_F_USO6))
        what |= TP_GRO_UDP;
    return what;
}

static void tp__count_in(struct tp_dir_stats *st, uint32_t len)
{
    TP__ADD(st->pkts_in, 1);
    TP__ADD(st->bytes_in, len);
}

/* Packet r of a vnet_hdr source: into d as it is, or as its segments. */
static void tp__split_one(struct tp__dir *d, const struct tp__pkt *r, struct tp_dir_stats *st, int *out)
{
    const struct tp_fmt *src = d->src_fmt, *dst = d->dst_fmt;
    struct tp_seg segs[TP_VNET_MAX_SEGS];
    struct tp_vnet_hdr vh;
    int nseg;

    tp_vnet_hdr_read(r->pre + tp_fmt_vnet_off(src), &vh);
    if ((vh.gso_type == TP_VNET_GSO_NONE && !(vh.flags & TP_VNET_F_NEEDS_CSUM)) ||
        (dst && !d->xf_segments && tp__takes(dst, &vh))) {
        struct tp__pkt *p = &d->pkts[(*out)++];
        *p = *r;
        tp__count_in(st, r->len);
        if (vh.gso_type != TP_VNET_GSO_NONE) {
            /* Passed whole, it still counts as the wire packets it carries
             * ("packets" are segments on every path); the sink counts the same. */
            p->segs = (uint16_t)tp_vnet_count_segs(&vh, r->data, r->len, src->tap ? TP_L2_ETH : TP_L2_NONE);
            TP__ADD(st->pkts_in, p->segs - 1u);
            TP__ADD(st->gso_passed, 1);
        }
        return;
    }
    struct tp_vnet_splitter sp;
    nseg = tp_vnet_split_begin(&sp, &vh, r->data, r->len, src->tap ? TP_L2_ETH : TP_L2_NONE);
    if (nseg > d->cap - *out)
        nseg = TP_VNET_ETOOMANY;   /* no room left in this batch */
    if (nseg < 0) {
        TP__ADD(st->pkts_in, 1);
        TP__ADD(st->drops[nseg == TP_VNET_ETOOMANY ? TP_DROP_TOO_BIG : TP_DROP_MALFORMED], 1);
        return;
    }
    if (vh.gso_type != TP_VNET_GSO_NONE)
        TP__ADD(st->gso_split, 1);
    TP__ADD(st->pkts_in, nseg);
    for (int n; (n = tp_vnet_split_next(&sp, d->seg_hdrs + (size_t)*out * TP_VNET_HDR_ROOM, segs,
                                        TP_VNET_MAX_SEGS)) > 0;)
    for (int k = 0; k < n; k++) {
        struct tp__pkt *p = &d->pkts[(*out)++];
        *p = *r;             /* group, route, flow, ... */
        p->data = segs[k].data;
        p->len = segs[k].len;
        p->hdr = segs[k].hdr;
        p->hdrlen = segs[k].hdr_len;
        p->pre = NULL;       /* now a plain packet: the sink's prefix is made anew */
        p->prelen = 0;
        p->segs = 1;
        TP__ADD(st->bytes_in, p->hdrlen + p->len);
    }
}

/* The packets read from a device: classified, split, counted. */
static void tp__take_in(struct tp__dir *d, struct tp_dir_stats *st, struct tp__ctl *ctl)
{
    int nraw = d->n, out = 0;

    if (!d->src_fmt->vnet_hdr_sz && !ctl) {
        /* Plain packets nobody classifies: nothing to split or take out. */
        for (int i = 0; i < d->n; i++)
            tp__count_in(st, d->pkts[i].len);
        return;
    }
    memcpy(d->raw, d->pkts, sizeof(d->pkts[0]) * (size_t)nraw);
    for (int i = 0; i < nraw; i++) {
        struct tp__pkt *r = &d->raw[i];

        if (ctl && !tp__ctl_classify(ctl, r, st))
            continue;
        if (!d->src_fmt->vnet_hdr_sz) {
            d->pkts[out++] = *r;
            tp__count_in(st, r->len);
            continue;
        }
        tp__split_one(d, r, st, &out);
    }
    d->n = out;
}

/* The writes a device sink will make: coalesced units, or one per packet. */
static void tp__plan_units(struct tp__dir *d)
{
    const struct tp_fmt *src = d->src_fmt, *dst = d->dst_fmt;
    unsigned what = (src && src->vnet_hdr_sz) ? 0 : tp__gro_what(dst);

    if (what) {
        if (d->xf_trusted)   /* every packet left here passed the transform's authentication */
            what |= TP_GRO_CSUM_TRUSTED;
        for (int i = 0; i < d->n; i++) {
            d->gro[i].data = d->pkts[i].data;
            d->gro[i].len = d->pkts[i].len;
        }
        d->nunits = tp_gro_coalesce(d->gro, d->n, dst->tap ? ETH_HLEN : 0, what, d->chain, d->skip, d->units);
        return;
    }
    for (int i = 0; i < d->n; i++) {
        memset(&d->units[i], 0, sizeof(d->units[i]));
        d->units[i].first = d->units[i].last = i;
        d->units[i].count = d->pkts[i].segs;   /* a super-packet passed whole: its segments */
        d->chain[i] = -1;
        d->skip[i] = 0;
    }
    d->nunits = d->n;
}

void tp__prepare(struct tp__dir *d, enum tp_dir dir, struct tp_dir_stats *st, struct tp__ctl *ctl)
{
    if (d->src_fmt)
        tp__take_in(d, st, ctl);
    if (d->xf)   /* the only branch a pump without a transform pays */
        tp__xf_run(d, dir, st);
    if (d->dst_fmt)
        tp__plan_units(d);
}
