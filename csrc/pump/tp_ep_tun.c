/* A TUN/TAP queue as an endpoint: one read() per packet, one writev() per
 * packet or coalesced super-packet, each with the device's PI / vnet_hdr
 * prefix. The queue fd belongs to the caller and is never closed here. */
#define _GNU_SOURCE
#include "tp_endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define TP__PI_LEN 4
#define TP__VNET_COMMON 10            /* the fields both vnet_hdr sizes share */

struct tp_ep_tun {
    struct tp_ep base;
    int fd;
    struct tp_fmt fmt;
};

static int tun_open(const struct tp_ep_args *a, struct tp_ep **out)
{
    struct tp_ep_tun *t = calloc(1, sizeof(*t));

    if (!t)
        return -ENOMEM;
    t->fd = a->fd;
    t->fmt = *a->fmt;
    t->base.fmt = &t->fmt;
    t->base.ops = &tp_ep_tun_ops;
    t->base.sink = a->sink;
    *out = &t->base;
    return 0;
}

static void tun_close(struct tp_ep *ep)
{
    (void)ep;   /* the queue fd is the caller's */
}

static void tun_poll(struct tp_ep *ep, struct pollfd *pfd, short want, int *timeout_ms)
{
    (void)timeout_ms;
    pfd[0].fd = ((struct tp_ep_tun *)ep)->fd;
    pfd[0].events = want;
}

static int tun_ready(struct tp_ep *ep, const struct pollfd *pfd)
{
    (void)ep;
    return (pfd[0].revents & (POLLIN | POLLERR | POLLHUP) ? TP_EP_READ : 0) |
           (pfd[0].revents & (POLLOUT | POLLERR | POLLHUP) ? TP_EP_WRITE : 0);
}

static int tun_read(struct tp_ep *ep, struct tp__dir *d, int batch, struct tp_dir_stats *st)
{
    struct tp_ep_tun *t = (struct tp_ep_tun *)ep;
    int prelen = tp_fmt_prefix_len(&t->fmt);

    tp__dir_reset(d);
    /* At most `batch` reads per call, whatever they bring: reads that yield
     * no packet (malformed) must not keep the worker from its stop fd. */
    for (int tries = 0; d->n < batch && tries < batch; tries++) {
        uint8_t *start = d->bufs + (size_t)d->n * TP__BUF_SIZE + TP__HEADROOM - prelen;
        size_t room = TP__BUF_SIZE - (TP__HEADROOM - prelen);
        ssize_t r = read(t->fd, start, room);

        TP__ADD(st->read_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        /* A TUN/TAP queue never reads 0 bytes; a socket standing in for a
         * device does once its other end closed: the device is gone. */
        if (r == 0) {
            if (d->n)
                break;   /* hand on what was read; the next read ends the worker */
            return -EPIPE;
        }
        TP__ADD(st->read_bytes, r);
        if ((size_t)r > room) {
            /* tun_put_user reports the whole packet even when it cut it to
             * the buffer: never take a length the buffer does not hold. */
            TP__ADD(st->pkts_in, 1);
            TP__ADD(st->drops[TP_DROP_TOO_BIG], 1);
            continue;
        }
        if (r <= prelen) {
            TP__ADD(st->pkts_in, 1);
            TP__ADD(st->drops[TP_DROP_MALFORMED], 1);
            continue;
        }
        struct tp__pkt *p = &d->pkts[d->n];
        tp__pkt_set(p, start + prelen, (uint32_t)(r - prelen), d->n);
        p->pre = start;
        p->prelen = (uint16_t)prelen;
        d->n++;
    }
    if (d->n)
        TP__ADD(st->batches, 1);
    return d->n;
}

/* The PI header's protocol for a packet going to dst. */
static uint16_t tun_pi_proto(const struct tp_fmt *dst, const struct tp_fmt *src, const struct tp__pkt *p)
{
    uint16_t proto = 0;
    const uint8_t *first = p->hdr ? p->hdr : p->data;

    if (p->pre && src && src->pi)
        memcpy(&proto, p->pre + 2, 2);
    else if (dst->tap && (p->hdr ? p->hdrlen : p->len) >= ETH_HLEN)
        memcpy(&proto, first + 12, 2);   /* the EtherType */
    else if (!dst->tap)
        proto = htons((first[0] >> 4) == 6 ? ETH_P_IPV6 : ETH_P_IP);
    return proto;
}

/* The sink device's prefix for one unit, in iov. Returns -1 when it is
 * there, or a drop reason. */
static int tun_make_prefix(const struct tp_fmt *dst, const struct tp_fmt *src,
                           const struct tp__pkt *p, const struct tp_gro_unit *u,
                           uint8_t *scratch, struct iovec *iov)
{
    int dlen = tp_fmt_prefix_len(dst);
    const uint8_t *svnet = NULL;
    uint8_t *o = scratch;

    if (p->pre && src && src->pi == dst->pi && src->vnet_hdr_sz == dst->vnet_hdr_sz &&
        p->prelen == (uint32_t)dlen && !p->hdr) {
        iov->iov_base = p->pre;        /* same format: pass through unchanged */
        iov->iov_len = p->prelen;
        return -1;
    }
    if (p->pre && src && src->vnet_hdr_sz && !p->hdr)
        svnet = p->pre + tp_fmt_vnet_off(src);
    /* A packet still needing a checksum or segmentation cannot go to a device
     * without a vnet_hdr (cannot happen once split; kept as a guard).
     * DATA_VALID alone (the kernel verified it) is a complete packet. */
    if (!dst->vnet_hdr_sz && (u->first != u->last || (svnet && ((svnet[0] & TP_VNET_F_NEEDS_CSUM) || svnet[1]))))
        return TP_DROP_OFFLOAD;
    if (dst->pi) {
        uint16_t proto = tun_pi_proto(dst, src, p);
        o[0] = o[1] = 0;
        memcpy(o + 2, &proto, 2);
        o += TP__PI_LEN;
    }
    if (dst->vnet_hdr_sz) {
        if (u->first != u->last)   /* coalesced (count alone may be one super-packet's segments) */
            tp_vnet_hdr_write(o, &u->vh, dst->vnet_hdr_sz);
        else {
            memset(o, 0, (size_t)dst->vnet_hdr_sz);
            if (svnet)
                memcpy(o, svnet, TP__VNET_COMMON);
        }
    }
    iov->iov_base = scratch;
    iov->iov_len = (size_t)dlen;
    return -1;
}

/* One unit's iovec: [prefix][header][data][payloads of the rest]. */
static int tun_unit_iov(const struct tp__dir *d, const struct tp__pkt *p, const struct tp_gro_unit *u,
                        struct iovec *iov, size_t *total)
{
    int niov = 1;

    if (p->hdrlen) {
        iov[niov].iov_base = p->hdr;
        iov[niov++].iov_len = p->hdrlen;
    }
    iov[niov].iov_base = p->data;
    iov[niov++].iov_len = p->len;
    for (int k = d->chain[u->first]; k >= 0; k = d->chain[k]) {
        iov[niov].iov_base = d->pkts[k].data + d->skip[k];
        iov[niov++].iov_len = d->pkts[k].len - d->skip[k];
    }
    *total = 0;
    for (int k = 1; k < niov; k++)
        *total += iov[k].iov_len;
    return niov;
}

static int tun_write(struct tp_ep *ep, struct tp__dir *d, struct tp_dir_stats *st)
{
    struct tp_ep_tun *t = (struct tp_ep_tun *)ep;
    int done = 0;

    while (d->next < d->nunits) {
        struct tp_gro_unit *u = &d->units[d->next];
        struct tp__pkt *p = &d->pkts[u->first];
        struct iovec iov[3 + TP_VNET_MAX_SEGS];
        int niov, reason;
        size_t total;

        reason = tun_make_prefix(&t->fmt, d->src_fmt, p, u, d->prefix[d->next], &iov[0]);
        if (reason >= 0) {
            TP__ADD(st->drops[reason], u->count);
            d->next++;
            continue;
        }
        niov = tun_unit_iov(d, p, u, iov, &total);
        ssize_t r = writev(t->fd, iov, niov);
        TP__ADD(st->write_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                d->pending = 1;
                return done;
            }
            if (errno == EBADFD || errno == EBADF)
                return -errno;     /* the queue or device is gone */
            TP__ADD(st->drops[errno == ENOBUFS ? TP_DROP_ENOBUFS :
                              errno == EINVAL ? TP_DROP_MALFORMED : TP_DROP_WRITE_ERROR], u->count);
            d->next++;
            continue;
        }
        TP__ADD(st->write_bytes, r);
        TP__ADD(st->pkts_out, u->count);
        TP__ADD(st->bytes_out, total);
        if (u->first != u->last)   /* packets joined (count alone may be one super-packet's segments) */
            TP__ADD(st->gro_built, 1);
        d->next++;
        done++;
    }
    d->pending = 0;
    return done;
}

const struct tp_ep_ops tp_ep_tun_ops = {
    .open = tun_open,
    .close = tun_close,
    .poll = tun_poll,
    .ready = tun_ready,
    .read = tun_read,
    .write = tun_write,
    .read_where = "peer device read",
};
