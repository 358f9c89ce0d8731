/* The transform stage (see tp_xform.h and tunpump.h). */
#define _GNU_SOURCE
#include "tp_xform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

_Static_assert(TP_XF_MAX_DROP_REASONS == TUNPUMP_MAX_DROP_REASONS,
               "tp_dir_stats.xf_drops holds every reason a transform may name");

void tp__xf_init(struct tp__xf *x, const struct tunpump_transform *t, int queue, int udp, int npeers,
                 struct tp__ctl *ctl)
{
    memset(x, 0, sizeof(*x));
    x->ops = t ? t->ops : NULL;
    x->queue = queue;
    x->udp = udp;
    x->npeers = npeers;
    x->ctl = ctl;
    x->msg_fd = -1;
    x->in_place_in = x->ops && (x->ops->flags & TUNPUMP_IN_PLACE_TO_DEVICE);
    x->gather_out = x->ops && (x->ops->flags & TUNPUMP_GATHER_TO_ENDPOINT);
    if (x->ops && x->ops->drop_reasons)
        while (x->ndrop_reasons < TUNPUMP_MAX_DROP_REASONS && x->ops->drop_reasons[x->ndrop_reasons])
            x->ndrop_reasons++;
}

int tp__xf_alloc(struct tp__xf *x, const struct tunpump_transform *t, int cap, int nqueues, const char **err)
{
    int rc;

    *err = "malloc";
    x->desc = malloc(sizeof(*x->desc) * (size_t)cap);
    x->rooms = malloc(sizeof(*x->rooms) * (size_t)cap);
    if (!x->desc || !x->rooms || tp_ring_init(&x->msgs, TP__XF_MSG_RING, sizeof(struct tp__xf_msg)) < 0 ||
        tp_ring_init(&x->injects, TP__XF_INJECT_RING, sizeof(struct tp__xf_inject)) < 0)
        return -ENOMEM;
    *err = "eventfd";
    x->msg_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (x->msg_fd < 0)
        return -errno;
    *err = "transform create";
    if (x->ops->create) {
        rc = x->ops->create(t->config, t->config_len, x->queue, nqueues, &x->state);
        if (rc < 0)
            return rc;
        if (rc > 0)
            return -EINVAL;   /* not -errno: a broken transform */
    }
    x->created = 1;
    return 0;
}

void tp__xf_free(struct tp__xf *x)
{
    if (x->created && x->ops->destroy)
        x->ops->destroy(x->state);
    x->created = 0;
    free(x->desc);
    free(x->rooms);
    x->desc = NULL;
    x->rooms = NULL;
    tp_ring_free(&x->msgs);
    tp_ring_free(&x->injects);
    if (x->msg_fd >= 0)
        close(x->msg_fd);
    x->msg_fd = -1;
}

/* The descriptor of packet p, bar where its bytes are (tp__xf_place). */
static void tp__xf_describe(const struct tp__dir *d, enum tp_dir dir, const struct tp__pkt *p,
                            struct tunpump_pkt *x, const struct tp__xf *xf)
{
    memset(x, 0, sizeof(*x));
    x->queue = (uint16_t)xf->queue;
    x->peer = (int16_t)(xf->udp && (dir == TP_DIR_TO_EP || p->src >= 0) && p->route < TP_MAX_PEERS ? p->route : -1);
    x->flow = p->flow;
    if (dir == TP_DIR_TO_DEV && p->src >= 0) {
        x->src = (const struct sockaddr *)&d->names[p->src];
        x->src_len = sizeof(d->names[p->src]);
    }
    if (p->pre && d->src_fmt && d->src_fmt->vnet_hdr_sz && !p->hdrlen) {
        struct tp_vnet_hdr vh;
        tp_vnet_hdr_read(p->pre + tp_fmt_vnet_off(d->src_fmt), &vh);
        x->gso = vh.gso_type != TP_VNET_GSO_NONE;
        x->gso_size = x->gso ? vh.gso_size : 0;
    }
}

/* Where the transform gets packet p's bytes, and the room it may leave
 * them in (*room):
 *  - TUNPUMP_IN_PLACE_TO_DEVICE, a packet in one piece: where they lie,
 *    with no room (it may only shrink);
 *  - TUNPUMP_GATHER_TO_ENDPOINT: where they lie, in their one or two pieces,
 *    read-only; the room is out, arena space of the size a copy would take;
 *  - otherwise copied into the arena at *off with room around them.
 * 0, or -1 when the arena is full (cannot happen within its bound; counted
 * as too_big if it does). */
static int tp__xf_place(struct tp__dir *d, enum tp_dir dir, const struct tp__pkt *p, size_t *off,
                        struct tunpump_pkt *x, struct tp__xf_room *room, const struct tp__xf *xf)
{
    uint32_t len = p->hdrlen + p->len;
    size_t need = TUNPUMP_MIN_HEADROOM + (size_t)len + TUNPUMP_MIN_TAILROOM;
    uint8_t *at;

    if (dir == TP_DIR_TO_DEV && xf->in_place_in && !p->hdrlen) {
        x->data = p->data;
        x->len = len;
        room->lo = p->data;
        room->hi = p->data + len;
        return 0;
    }
    need = (need + TP__XF_ALIGN - 1) & ~(size_t)(TP__XF_ALIGN - 1);
    if (*off + need > d->xf_arena_size)
        return -1;
    at = d->xf_arena + *off;
    *off += need;
    room->lo = at;
    room->hi = at + need;
    if (dir == TP_DIR_TO_EP && xf->gather_out) {
        x->head = p->hdrlen ? p->hdr : NULL;
        x->head_len = p->hdrlen;
        x->data = p->data;
        x->len = p->len;
        x->out = at;
        x->out_size = (uint32_t)need;
        return 0;
    }
    if (p->hdrlen)
        memcpy(at + TUNPUMP_MIN_HEADROOM, p->hdr, p->hdrlen);
    memcpy(at + TUNPUMP_MIN_HEADROOM + p->hdrlen, p->data, p->len);
    x->data = at + TUNPUMP_MIN_HEADROOM;
    x->len = len;
    x->headroom = TUNPUMP_MIN_HEADROOM;
    x->tailroom = (uint32_t)(need - TUNPUMP_MIN_HEADROOM - len);
    return 0;
}

enum tp__xf_left { TP__XF_OUTSIDE, TP__XF_IN_ROOM, TP__XF_AS_GIVEN };

/* Where the transform left x (packet p before the stage): in one piece
 * inside the room it was given, or (TUNPUMP_GATHER_TO_ENDPOINT) untouched
 * where it lies, or anywhere else. */
static enum tp__xf_left tp__xf_where(const struct tp__xf *xf, enum tp_dir dir, const struct tunpump_pkt *x,
                                     const struct tp__pkt *p, const struct tp__xf_room *room)
{
    /* As integers: the transform's pointer may point anywhere, and comparing
     * pointers into different objects is undefined. */
    uintptr_t d = (uintptr_t)x->data, l = (uintptr_t)room->lo, h = (uintptr_t)room->hi;

    if (dir == TP_DIR_TO_EP && xf->gather_out && x->data == p->data && x->len == p->len &&
        x->head_len == p->hdrlen && (!p->hdrlen || x->head == p->hdr))
        return TP__XF_AS_GIVEN;
    if (x->head_len == 0 && x->len <= TUNPUMP_MAX_PACKET && d >= l && d <= h && h - d >= x->len)
        return TP__XF_IN_ROOM;
    return TP__XF_OUTSIDE;
}

/* pkt->roam (tunpump.h): the transform authenticated datagram p as coming
 * from peer x->peer, which moves to the datagram's source (whatever the
 * outcome: a keepalive the transform drops still moves its peer). The
 * source is the one the socket gave (d->names), never x->src, which the
 * transform could have changed. A request that cannot apply is counted. */
static void tp__xf_roam(struct tp__xf *xf, struct tp__dir *d, enum tp_dir dir, const struct tp__pkt *p,
                        const struct tunpump_pkt *x)
{
    const struct tp_ep *far = xf->far;
    int rc = -EINVAL;

    if (!far || !xf->ctl)
        return;   /* no endpoint behind the stage (the fuzz target) */
    if (dir == TP_DIR_TO_DEV && p->src >= 0 && far->ops->roam)
        rc = far->ops->roam(xf->far, x->peer, &d->names[p->src]);
    if (rc < 0)
        TP__ADD(xf->ctl->st->roams_refused, 1);
    else if (rc > 0)
        tp__ctl_peer_moved(xf->ctl, x->peer, &d->names[p->src]);
}

/* A TUNPUMP_DROP counted under the reason the transform named, or the
 * generic "transform" for 0 or a number it does not name. */
static void tp__xf_count_drop(const struct tp__xf *xf, const struct tunpump_pkt *x, struct tp_dir_stats *st,
                              uint32_t segs)
{
    unsigned r = x->drop_reason;

    if (r >= 1 && r <= xf->ndrop_reasons)
        TP__ADD(st->xf_drops[r - 1], segs);
    else
        TP__ADD(st->drops[TP_DROP_TRANSFORM], segs);
}

/* After the batch function: keep what passes, count and take out the rest. */
static void tp__xf_apply(struct tp__dir *d, enum tp_dir dir, struct tp_dir_stats *st, int n)
{
    struct tp__xf *xf = d->xf;
    int out = 0;

    for (int i = 0; i < n; i++) {
        struct tunpump_pkt *x = &xf->desc[i];
        struct tp__pkt *p = &d->pkts[i];
        enum tp__xf_left left = tp__xf_where(xf, dir, x, p, &xf->rooms[i]);

        if (x->roam)
            tp__xf_roam(xf, d, dir, p, x);
        if (x->outcome == TUNPUMP_DROP) {
            tp__xf_count_drop(xf, x, st, p->segs);
        } else if (x->outcome == TUNPUMP_TO_PYTHON) {
            if (left == TP__XF_OUTSIDE)
                TP__ADD(st->drops[TP_DROP_TRANSFORM_OVERFLOW], p->segs);
            else
                tp__ctl_punt_xf(xf->ctl, dir, x, st, p->segs);
        } else if (x->outcome != TUNPUMP_PASS) {
            TP__ADD(st->drops[TP_DROP_TRANSFORM], p->segs);   /* not an outcome: fail closed */
        } else if (left == TP__XF_OUTSIDE) {
            TP__ADD(st->drops[TP_DROP_TRANSFORM_OVERFLOW], p->segs);
        } else if (dir == TP_DIR_TO_DEV && d->dst_fmt && !tp__plausible(d->dst_fmt, x->data, x->len)) {
            TP__ADD(st->drops[TP_DROP_MALFORMED], p->segs);   /* the endpoint skipped this check for us */
        } else if (dir == TP_DIR_TO_EP && xf->udp && (x->peer < 0 || x->peer >= xf->npeers)) {
            TP__ADD(st->drops[TP_DROP_NO_PEER], p->segs);     /* routed to a peer the endpoint lacks */
        } else {
            struct tp__pkt *q = &d->pkts[out++];
            *q = *p;
            if (dir == TP_DIR_TO_EP && xf->udp)
                q->route = (uint8_t)x->peer;              /* the transform may choose the peer */
            if (left == TP__XF_IN_ROOM) {                 /* else it leaves as it came */
                q->data = x->data;
                q->len = x->len;
                q->hdr = NULL;
                q->hdrlen = 0;
            }
        }
    }
    d->n = out;
}

void tp__xf_run(struct tp__dir *d, enum tp_dir dir, struct tp_dir_stats *st)
{
    struct tp__xf *xf = d->xf;
    size_t off = 0;
    int n = 0;

    for (int i = 0; i < d->n; i++) {
        struct tp__pkt *p = &d->pkts[i];
        tp__xf_describe(d, dir, p, &xf->desc[n], xf);
        if (tp__xf_place(d, dir, p, &off, &xf->desc[n], &xf->rooms[n], xf) < 0) {
            TP__ADD(st->drops[TP_DROP_TOO_BIG], p->segs);
            continue;
        }
        d->pkts[n++] = *p;
    }
    if (n)
        xf->ops->batch(xf->state, (enum tunpump_dir)dir, xf->desc, (unsigned)n);
    tp__xf_apply(d, dir, st, n);
}

/* The control messages posted so far, in order. */
static void tp__xf_run_control(struct tp__xf *x)
{
    struct tp__xf_msg *m;

    while ((m = tp_ring_peek(&x->msgs))) {
        x->ops->control(x->state, m->data, m->len);
        explicit_bzero(m->data, m->len);   /* messages carry keys: none stays in the ring */
        tp_ring_release(&x->msgs);
    }
}

void tp__xf_take_control(struct tp__xf *x)
{
    uint64_t junk;

    (void)!read(x->msg_fd, &junk, sizeof(junk));
    tp__xf_run_control(x);
}

int tp__xf_post(struct tp__xf *x, const uint8_t *msg, size_t len)
{
    struct tp__xf_msg *m = tp_ring_reserve(&x->msgs);
    uint64_t one = 1;

    if (!m)
        return -EAGAIN;
    m->len = (uint32_t)len;
    if (len)
        memcpy(m->data, msg, len);
    tp_ring_publish(&x->msgs);
    (void)!write(x->msg_fd, &one, sizeof(one));
    return 0;
}

int tp__xf_post_inject(struct tp__xf *x, int peer, const uint8_t *data, size_t len)
{
    struct tp__xf_inject *m = tp_ring_reserve(&x->injects);
    uint64_t one = 1;

    if (!m)
        return -EAGAIN;
    m->len = (uint32_t)len;
    m->peer = (uint8_t)peer;
    if (len)   /* an empty packet (a keepalive) may come with data NULL */
        memcpy(m->data, data, len);
    tp_ring_publish(&x->injects);
    (void)!write(x->msg_fd, &one, sizeof(one));
    return 0;
}

/* The PI header of an injected packet: the protocol from the packet. */
static void tp__xf_pi(uint8_t *pi, const struct tp_fmt *fmt, const uint8_t *p, uint32_t len)
{
    if (fmt->tap) {
        if (len >= 14)
            memcpy(pi + 2, p + 12, 2);   /* the EtherType */
    } else if (len && (p[0] >> 4) == 6) {
        pi[2] = 0x86, pi[3] = 0xdd;
    } else {
        pi[2] = 0x08, pi[3] = 0x00;
    }
}

int tp__xf_take_injects(struct tp__xf *x, struct tp__dir *d, const struct tp_fmt *fmt, int batch)
{
    int prelen = tp_fmt_prefix_len(fmt);
    struct tp__xf_inject *m;

    /* A message Python posted before these packets runs before them (new
     * keys, then the first packet under them), even when this turn's
     * wakeup came before the message: both rings have one producer, which
     * published the message before the packet, so a packet seen here
     * brings every message posted before it into view. */
    tp__xf_run_control(x);
    tp__dir_reset(d);
    while (d->n < batch && (m = tp_ring_peek(&x->injects))) {
        uint8_t *pre = d->bufs + (size_t)d->n * TP__BUF_SIZE + TP__HEADROOM - prelen;
        struct tp__pkt *p = &d->pkts[d->n];

        memset(pre, 0, (size_t)prelen);   /* a plain packet: no offload in its vnet_hdr */
        if (fmt->pi)
            tp__xf_pi(pre, fmt, m->data, m->len);
        memcpy(pre + prelen, m->data, m->len);
        tp__pkt_set(p, pre + prelen, m->len, d->n);
        p->pre = pre;
        p->prelen = (uint32_t)prelen;
        p->route = m->peer;
        d->n++;
        tp_ring_release(&x->injects);
    }
    return d->n;
}
