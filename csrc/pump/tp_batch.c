/* The batch's arrays and the small helpers every stage of a direction uses. */
#define _GNU_SOURCE
#include "tp_batch.h"
#include "tunpump.h"

#include <errno.h>
#include <linux/if_ether.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t tp__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * TP__NS_PER_S + ts.tv_nsec;
}

void tp__dir_free(struct tp__dir *d)
{
    free(d->bufs);
    free(d->pkts);
    free(d->raw);
    free(d->prefix);
    free(d->lenbe);
    free(d->seg_hdrs);
    free(d->units);
    free(d->gro);
    free(d->chain);
    free(d->skip);
    free(d->iov);
    free(d->msgs);
    free(d->cmsgs);
    free(d->xf_arena);
}

/* malloc, not calloc: pages are touched only as traffic needs them. */
int tp__dir_alloc(struct tp__dir *d, int batch, int with_bufs)
{
    /* room for a batch of typical super-packets plus one of the most segments */
    size_t cap = (size_t)batch * TP_VNET_MAX_SEGS + TP_VNET_SPLIT_MAX_SEGS;

    d->cap = (int)cap;
    d->bufs = with_bufs ? malloc((size_t)batch * TP__BUF_SIZE) : NULL;
    d->pkts = malloc(sizeof(*d->pkts) * cap);
    d->raw = malloc(sizeof(*d->raw) * (size_t)batch);
    d->prefix = malloc(sizeof(*d->prefix) * cap);
    d->lenbe = malloc(sizeof(*d->lenbe) * cap);
    d->seg_hdrs = malloc((size_t)TP_VNET_HDR_ROOM * cap);
    d->units = malloc(sizeof(*d->units) * cap);
    d->gro = malloc(sizeof(*d->gro) * cap);
    d->chain = malloc(sizeof(*d->chain) * cap);
    d->skip = malloc(sizeof(*d->skip) * cap);
    d->iov = malloc(sizeof(*d->iov) * 3 * cap);
    d->msgs = malloc(sizeof(*d->msgs) * cap);
    d->cmsgs = malloc((size_t)TP__CMSG_SPACE * cap);
    return (with_bufs && !d->bufs) || !d->pkts || !d->raw || !d->prefix || !d->lenbe || !d->seg_hdrs ||
           !d->units || !d->gro || !d->chain || !d->skip || !d->iov || !d->msgs || !d->cmsgs ? -ENOMEM : 0;
}

int tp__dir_alloc_xf(struct tp__dir *d, int batch)
{
    size_t room = TUNPUMP_MIN_HEADROOM + TUNPUMP_MIN_TAILROOM + TP_VNET_HDR_ROOM + TP__XF_ALIGN;

    d->xf_arena_size = (size_t)batch * TP__BUF_SIZE + (size_t)d->cap * room;
    d->xf_arena = malloc(d->xf_arena_size);
    return d->xf_arena ? 0 : -ENOMEM;
}

void tp__dir_reset(struct tp__dir *d)
{
    d->n = d->next = d->nunits = 0;
    d->off = 0;
}

void tp__dir_drop_rest(struct tp__dir *d, struct tp_dir_stats *st, enum tp_drop reason)
{
    uint64_t left = 0;

    if (d->dst_fmt) {
        for (int u = d->next; u < d->nunits; u++)
            left += (uint64_t)d->units[u].count;   /* wire packets (tp__plan_units) */
    } else if (d->next < d->n) {
        left = (uint64_t)(d->n - d->next);
    }
    if (left)
        TP__ADD(st->drops[reason], left);
    tp__dir_reset(d);
    d->pending = 0;
}

void tp__pkt_set(struct tp__pkt *p, uint8_t *data, uint32_t len, int32_t group)
{
    p->route = 0;
    p->released = 0;
    p->data = data;
    p->len = len;
    p->hdr = NULL;
    p->hdrlen = 0;
    p->pre = NULL;
    p->prelen = 0;
    p->segs = 1;
    p->group = group;
    p->src = -1;
    p->flow = -1;
}

int tp__plausible(const struct tp_fmt *dev, const uint8_t *p, uint32_t len)
{
    if (dev->tap)
        return len >= ETH_HLEN;
    if (len >= sizeof(struct iphdr) && (p[0] >> 4) == 4)
        return 1;
    return len >= sizeof(struct ip6_hdr) && (p[0] >> 4) == 6;
}
