/* Workers: one thread per queue, a poll loop over the device queue, the
 * endpoint and a stop eventfd, batched reads and writes, nothing allocated
 * per packet. */
#define _GNU_SOURCE
#include "tp_pump.h"
#include "tp_pump_internal.h"
#include "tp_netns.h"
#include "tp_compat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

const char *const tp_drop_names[TP_DROP__COUNT] = {
    [TP_DROP_ENOBUFS] = "enobufs",
    [TP_DROP_TOO_BIG] = "too_big",
    [TP_DROP_MALFORMED] = "malformed",
    [TP_DROP_UNKNOWN_PEER] = "unknown_peer",
    [TP_DROP_NO_PEER] = "no_peer",
    [TP_DROP_NO_CONNECTION] = "no_connection",
    [TP_DROP_WRITE_ERROR] = "write_error",
    [TP_DROP_OFFLOAD] = "offload_mismatch",
    [TP_DROP_STOPPED] = "stopped",
    [TP_DROP_VERDICT] = "verdict",
    [TP_DROP_PENDING_FULL] = "pending_full",
    [TP_DROP_PUNT_FULL] = "punt_full",
};

int64_t tp__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the control plane (worker side) ---------------------------------------- */

static void tp__post(struct tp__worker *w, const struct tp_event *ev)
{
    struct tp_event *slot = tp_ring_reserve(&w->events);

    if (!slot) {
        TP__ADD(w->st.events_lost, 1);
        return;
    }
    *slot = *ev;
    slot->worker = (uint16_t)w->idx;
    tp_ring_publish(&w->events);
    w->events_posted = 1;
}

/* One eventfd write per loop turn, however many events it posted. */
static void tp__notify(struct tp__worker *w)
{
    uint64_t one = 1;

    if (w->events_posted) {
        (void)!write(w->pump->event_fd, &one, sizeof(one));
        w->events_posted = 0;
    }
}

void tp__post_peer(struct tp__worker *w, int type, const struct sockaddr_storage *ss)
{
    struct tp_event ev;

    if (!w->events.slots)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.type = (uint8_t)type;
    ev.family = (uint8_t)ss->ss_family;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        memcpy(ev.addr, &a->sin_addr, 4);
        ev.port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        memcpy(ev.addr, &a->sin6_addr, 16);
        ev.port = ntohs(a->sin6_port);
    }
    tp__post(w, &ev);
}

static void tp__post_flow(struct tp__worker *w, int type, int reason, int32_t i, const struct tp_flow *f)
{
    struct tp_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = (uint8_t)type;
    ev.reason = (uint8_t)reason;
    ev.flow = i;
    ev.gen = f->gen;
    ev.key = f->key;
    ev.packets = f->packets;
    ev.bytes = f->bytes;
    ev.age_ns = w->now - f->created_ns;
    tp__post(w, &ev);
}

static void tp__evict(struct tp__worker *w, int32_t i, int reason)
{
    tp__post_flow(w, TP_EV_EVICTED, reason, i, &w->flows.e[i]);
    tp_flow_remove(&w->flows, i);
    TP__ADD(w->st.flows_evicted, 1);
    TP__ADD(w->st.flows_active, -1);
}

/* Ask Python about flow i; when the ring is full the default applies. */
static void tp__ask(struct tp__worker *w, int32_t i)
{
    struct tp_flow *f = &w->flows.e[i];
    uint64_t lost = w->st.events_lost;

    f->verdict = TP_VERDICT_NONE;
    f->pending_since_ns = w->now;
    f->expires_ns = 0;
    tp__post_flow(w, TP_EV_FLOW, 0, i, f);
    if (w->st.events_lost != lost)
        f->verdict = w->pump->cfg.ctl.default_verdict;
}

static void tp__pend(struct tp__worker *w, const struct tp__pkt *r, int32_t flow, uint32_t gen,
                     struct tp_dir_stats *st)
{
    if (w->nfree == 0) {
        TP__ADD(st->pkts_in, 1);
        TP__ADD(st->drops[TP_DROP_PENDING_FULL], 1);
        return;
    }
    int32_t slot = w->pend_free[--w->nfree];
    uint32_t total = r->prelen + r->len;
    uint8_t *dst = w->pend_bufs + (size_t)slot * TP__BUF_SIZE + TP__HEADROOM - r->prelen;

    memcpy(dst, r->pre ? r->pre : r->data, total);
    w->pend[w->npend++] = (struct tp__pending){ .flow = flow, .gen = gen, .len = total, .slot = slot };
}

static void tp__punt(struct tp__worker *w, struct tp__pkt *r, struct tp_dir_stats *st, int32_t flow)
{
    const struct tp_fmt *src = &w->pump->cfg.dev.fmt;
    struct tp_seg segs[TP_VNET_MAX_SEGS];
    int nseg = 1;

    segs[0] = (struct tp_seg){ NULL, 0, r->data, r->len };
    if (src->vnet_hdr_sz) {
        /* Python gets wire packets with complete checksums, not super-packets. */
        struct tp_vnet_hdr vh;
        tp_vnet_hdr_read(r->pre + tp_fmt_vnet_off(src), &vh);
        nseg = tp_vnet_split(&vh, r->data, r->len, src->tap ? 14 : 0, w->punt_hdrs, segs, TP_VNET_MAX_SEGS);
        if (nseg < 0) {
            TP__ADD(st->pkts_in, 1);
            TP__ADD(st->drops[TP_DROP_MALFORMED], 1);
            return;
        }
    }
    for (int k = 0; k < nseg; k++) {
        struct tp_event *ev = tp_ring_reserve(&w->events);
        uint8_t *slot = tp_ring_reserve(&w->punts);
        TP__ADD(st->pkts_in, 1);
        TP__ADD(st->bytes_in, segs[k].hdr_len + segs[k].len);
        if (!ev || !slot) {
            TP__ADD(st->drops[TP_DROP_PUNT_FULL], 1);
            continue;
        }
        if (segs[k].hdr_len)   /* an unsplit packet has no separate header (hdr is NULL) */
            memcpy(slot, segs[k].hdr, segs[k].hdr_len);
        memcpy(slot + segs[k].hdr_len, segs[k].data, segs[k].len);
        memset(ev, 0, sizeof(*ev));
        ev->type = TP_EV_PACKET;
        ev->worker = (uint16_t)w->idx;
        ev->flow = flow;
        ev->gen = w->flows.e[flow].gen;
        ev->key = w->flows.e[flow].key;
        ev->packets = w->flows.e[flow].packets;
        ev->bytes = w->flows.e[flow].bytes;
        ev->len = segs[k].hdr_len + segs[k].len;
        tp_ring_publish(&w->punts);   /* the slot before the event that names it */
        tp_ring_publish(&w->events);
        w->events_posted = 1;
        TP__ADD(w->st.punted, 1);
    }
}

/* Look the packet's flow up (making it on first sight) and apply its verdict.
 * Returns 1 when the packet stays in the batch, 0 when it was taken. */
static int tp__classify(struct tp__worker *w, struct tp__pkt *r, struct tp_dir_stats *st)
{
    const struct tp_pump_cfg *c = &w->pump->cfg;
    struct tp_flow_key k;
    uint32_t h;
    int32_t i;
    struct tp_flow *f;

    tp_flow_parse(r->data, r->len, c->dev.fmt.tap, &k);
    h = tp_flow_hash(&k);
    i = tp_flow_lookup(&w->flows, &k, h);
    if (i >= 0 && w->flows.e[i].verdict != TP_VERDICT_NONE && w->now - w->flows.e[i].last_ns > c->ctl.idle_ns) {
        tp__evict(w, i, TP_EVICT_IDLE);
        i = -1;
    }
    if (i < 0) {
        struct tp_flow old;
        int32_t ev;
        i = tp_flow_insert(&w->flows, &k, h, w->now, &old, &ev);
        if (ev >= 0) {
            tp__post_flow(w, TP_EV_EVICTED, TP_EVICT_FULL, ev, &old);
            TP__ADD(w->st.flows_evicted, 1);
        } else {
            TP__ADD(w->st.flows_active, 1);
        }
        TP__ADD(w->st.flows_new, 1);
        tp__ask(w, i);
    } else if (w->flows.e[i].expires_ns && w->now >= w->flows.e[i].expires_ns) {
        tp__ask(w, i);   /* the verdict's TTL ran out: ask again */
    }
    f = &w->flows.e[i];
    if (!r->released) {
        f->packets++;
        f->bytes += r->len;
    }
    f->last_ns = w->now;
    tp_flow_touch(&w->flows, i);
    switch (f->verdict) {
    case TP_VERDICT_FORWARD:
        r->route = 0;
        return 1;
    case TP_VERDICT_ROUTE:
        r->route = f->route;
        return 1;
    case TP_VERDICT_DROP:
        TP__ADD(st->pkts_in, 1);
        TP__ADD(st->drops[TP_DROP_VERDICT], 1);
        return 0;
    case TP_VERDICT_PUNT:
        tp__punt(w, r, st, i);
        return 0;
    default:
        tp__pend(w, r, i, f->gen, st);
        return 0;
    }
}

static void tp__take_verdicts(struct tp__worker *w)
{
    struct tp__verdict *v;
    uint64_t junk;

    (void)!read(w->ctl_fd, &junk, sizeof(junk));
    while ((v = tp_ring_peek(&w->verdicts))) {
        if (v->flow >= 0 && (uint32_t)v->flow < w->flows.cap && w->flows.e[v->flow].gen == v->gen) {
            struct tp_flow *f = &w->flows.e[v->flow];
            f->verdict = v->verdict;
            f->route = v->route;
            f->expires_ns = v->ttl_ms ? w->now + (int64_t)v->ttl_ms * 1000000 : 0;
        }
        TP__ADD(w->st.verdicts, 1);
        tp_ring_release(&w->verdicts);
    }
}

/* Move packets whose flow has been decided (or timed out) back into the
 * device batch, oldest first; later packets of the same flow are behind them
 * in the queue, so order holds. Returns the number moved. */
static int tp__release(struct tp__worker *w)
{
    const struct tp_pump_cfg *c = &w->pump->cfg;
    struct tp__dir *d = &w->d[0];
    int prelen = tp_fmt_prefix_len(&c->dev.fmt);
    int kept = 0, waiting = 0;

    d->n = d->next = d->nunits = 0;
    d->off = 0;
    for (int j = 0; j < w->npend; j++) {
        struct tp__pending *pe = &w->pend[j];
        struct tp_flow *f = &w->flows.e[pe->flow];
        int decided = f->gen != pe->gen || f->verdict != TP_VERDICT_NONE;

        if (!decided && w->now - f->pending_since_ns >= c->ctl.decision_ns) {
            f->verdict = c->ctl.default_verdict;
            TP__ADD(w->st.decision_timeouts, 1);
            decided = 1;
        }
        if (decided && d->n < c->batch) {
            uint8_t *src = w->pend_bufs + (size_t)pe->slot * TP__BUF_SIZE + TP__HEADROOM - prelen;
            uint8_t *dst = d->bufs + (size_t)d->n * TP__BUF_SIZE + TP__HEADROOM - prelen;
            struct tp__pkt *p = &d->pkts[d->n];
            memcpy(dst, src, pe->len);
            p->pre = dst;
            p->prelen = (uint32_t)prelen;
            p->data = dst + prelen;
            p->len = pe->len - (uint32_t)prelen;
            p->hdr = NULL;
            p->hdrlen = 0;
            p->group = d->n;
            p->route = 0;
            p->released = 1;
            d->n++;
            w->pend_free[w->nfree++] = pe->slot;
            continue;
        }
        if (decided)
            waiting = 1;
        w->pend[kept++] = *pe;
    }
    w->npend = kept;
    w->releasing = waiting;
    return d->n;
}

static void tp__sweep_idle(struct tp__worker *w)
{
    for (int n = 0; n < 16; n++) {
        int32_t i = tp_flow_oldest(&w->flows);
        if (i < 0 || w->flows.e[i].verdict == TP_VERDICT_NONE ||
            w->now - w->flows.e[i].last_ns <= w->pump->cfg.ctl.idle_ns)
            return;
        tp__evict(w, i, TP_EVICT_IDLE);
    }
}

/* ---- one direction -------------------------------------------------------- */

static const struct tp_fmt *tp__src_fmt(const struct tp_pump_cfg *c, int dir)
{
    if (dir == 0)
        return &c->dev.fmt;
    return c->kind == TP_KIND_TUN ? &c->peer_dev.fmt : NULL;
}

static const struct tp_fmt *tp__dst_fmt(const struct tp_pump_cfg *c, int dir)
{
    if (dir == 1)
        return &c->dev.fmt;
    return c->kind == TP_KIND_TUN ? &c->peer_dev.fmt : NULL;
}

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

/* What a device lets us build by coalescing (TP_GRO_*). */
static unsigned tp__gro_what(const struct tp_fmt *dst)
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

/* Between a read and a write: super-packets from a vnet_hdr device pass
 * through when the sink takes them and are split otherwise; for a device
 * sink the packets are grouped into writes, coalescing plain packets into
 * super-packets when the device takes them. */
static void tp__prepare(struct tp__worker *w, int dir)
{
    const struct tp_pump_cfg *c = &w->pump->cfg;
    const struct tp_fmt *src = tp__src_fmt(c, dir), *dst = tp__dst_fmt(c, dir);
    struct tp__dir *d = &w->d[dir];
    struct tp_dir_stats *st = &w->st.dir[dir];
    int i;

    if (src && !src->vnet_hdr_sz && !(dir == 0 && c->ctl.enabled)) {
        /* Plain packets nobody classifies: nothing to split or take out. */
        for (i = 0; i < d->n; i++) {
            TP__ADD(st->pkts_in, 1);
            TP__ADD(st->bytes_in, d->pkts[i].len);
        }
    } else if (src) {
        int nraw = d->n, out = 0;
        int l2 = src->tap ? 14 : 0;

        memcpy(d->raw, d->pkts, sizeof(d->pkts[0]) * (size_t)nraw);
        for (i = 0; i < nraw; i++) {
            struct tp__pkt *r = &d->raw[i];
            struct tp_vnet_hdr vh;
            struct tp_seg segs[TP_VNET_MAX_SEGS];
            int nseg;

            if (dir == 0 && c->ctl.enabled && !tp__classify(w, r, st))
                continue;

            if (!src->vnet_hdr_sz) {
                d->pkts[out++] = *r;
                TP__ADD(st->pkts_in, 1);
                TP__ADD(st->bytes_in, r->len);
                continue;
            }
            tp_vnet_hdr_read(r->pre + tp_fmt_vnet_off(src), &vh);
            if ((vh.gso_type == TP_VNET_GSO_NONE && !(vh.flags & TP_VNET_F_NEEDS_CSUM)) ||
                (dst && tp__takes(dst, &vh))) {
                d->pkts[out++] = *r;
                TP__ADD(st->pkts_in, 1);
                TP__ADD(st->bytes_in, r->len);
                if (vh.gso_type != TP_VNET_GSO_NONE)
                    TP__ADD(st->gso_passed, 1);
                continue;
            }
            nseg = tp_vnet_split(&vh, r->data, r->len, l2, d->seg_hdrs + (size_t)out * TP_VNET_HDR_ROOM,
                                 segs, TP_VNET_MAX_SEGS);
            if (nseg < 0) {
                TP__ADD(st->pkts_in, 1);
                TP__ADD(st->drops[nseg == TP_VNET_ETOOMANY ? TP_DROP_TOO_BIG : TP_DROP_MALFORMED], 1);
                continue;
            }
            if (vh.gso_type != TP_VNET_GSO_NONE)
                TP__ADD(st->gso_split, 1);
            TP__ADD(st->pkts_in, nseg);
            for (int k = 0; k < nseg; k++) {
                struct tp__pkt *p = &d->pkts[out++];
                p->data = segs[k].data;
                p->len = segs[k].len;
                p->hdr = segs[k].hdr;
                p->hdrlen = segs[k].hdr_len;
                p->pre = NULL;       /* now a plain packet: the sink's prefix is made anew */
                p->prelen = 0;
                p->group = r->group;
                p->route = r->route;
                p->released = r->released;
                TP__ADD(st->bytes_in, p->hdrlen + p->len);
            }
        }
        d->n = out;
    }
    if (!dst)
        return;
    unsigned what = (src && src->vnet_hdr_sz) ? 0 : tp__gro_what(dst);
    if (what) {
        for (i = 0; i < d->n; i++) {
            d->gro[i].data = d->pkts[i].data;
            d->gro[i].len = d->pkts[i].len;
        }
        d->nunits = tp_gro_coalesce(d->gro, d->n, dst->tap ? 14 : 0, what, d->chain, d->skip, d->units);
    } else {
        for (i = 0; i < d->n; i++) {
            memset(&d->units[i], 0, sizeof(d->units[i]));
            d->units[i].first = d->units[i].last = i;
            d->units[i].count = 1;
            d->chain[i] = -1;
            d->skip[i] = 0;
        }
        d->nunits = d->n;
    }
}

/* Send what is left of direction 0's batch (device -> endpoint). */
static int tp__flush0(struct tp__worker *w)
{
    const struct tp_pump_cfg *c = &w->pump->cfg;
    struct tp__dir *d = &w->d[0];
    struct tp_dir_stats *st = &w->st.dir[0];

    switch (c->kind) {
    case TP_KIND_TUN:
        return tp__tun_write(w->peer_fd, &c->peer_dev.fmt, &c->dev.fmt, d, st);
    case TP_KIND_UDP:
        return tp__udp_write(w, d, st);
    default:
        return tp__tcp_write(w, d, st);
    }
}

/* Send what is left of direction 1's batch (endpoint -> device). */
static int tp__flush1(struct tp__worker *w)
{
    const struct tp_pump_cfg *c = &w->pump->cfg;
    const struct tp_fmt *src = c->kind == TP_KIND_TUN ? &c->peer_dev.fmt : NULL;
    int rc = tp__tun_write(w->dev_fd, &c->dev.fmt, src, &w->d[1], &w->st.dir[1]);

    if (rc >= 0 && !w->d[1].pending && c->kind == TP_KIND_TCP && w->tcp == TP__TCP_UP)
        tp__tcp_consumed(w);
    return rc;
}

static int tp__fill1(struct tp__worker *w)
{
    const struct tp_pump_cfg *c = &w->pump->cfg;
    struct tp_dir_stats *st = &w->st.dir[1];

    switch (c->kind) {
    case TP_KIND_TUN:
        return tp__tun_read(w->peer_fd, &c->peer_dev.fmt, &w->d[1], c->batch, st);
    case TP_KIND_UDP:
        return tp__udp_read(w, &c->dev.fmt, &w->d[1], c->batch, st);
    default:
        /* Frames already buffered come first; read more only when none are. */
        if (tp__tcp_has_frame(w))
            return tp__tcp_frames(w, &c->dev.fmt, &w->d[1], c->batch, st);
        return tp__tcp_read(w, &c->dev.fmt, &w->d[1], c->batch, st);
    }
}

static void tp__post(struct tp__worker *w, const struct tp_event *ev);
static void tp__notify(struct tp__worker *w);

static void tp__fail(struct tp__worker *w, int err, const char *where)
{
    uint64_t one = 1;

    if (w->events.slots) {
        struct tp_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.type = TP_EV_ERROR;
        ev.err = err;
        ev.where = where;
        tp__post(w, &ev);
        tp__notify(w);
    }

    w->err_where = where;
    __atomic_store_n(&w->err, err, __ATOMIC_RELEASE);
    (void)!write(w->pump->exit_fd, &one, sizeof(one));
}

/* ---- the loop ------------------------------------------------------------- */

enum { FD_STOP, FD_DEV, FD_PEER, FD_LISTEN, FD_CTL, FD__N };

static void *tp__worker_main(void *arg)
{
    struct tp__worker *w = arg;
    struct tp_pump *p = w->pump;
    const struct tp_pump_cfg *c = &p->cfg;
    int rc;

    /* Reconnect sockets must be made in the endpoint's namespace. */
    if (p->netns_fd >= 0) {
        int saved;
        if ((rc = tp_netns_enter(p->netns_fd, &saved)) < 0) {
            tp__fail(w, rc, "setns");
            return NULL;
        }
        close(saved);
    }
    if (c->kind == TP_KIND_TCP && !c->sock.listen)
        tp__tcp_connect(w);

    for (;;) {
        struct pollfd pfd[FD__N];
        int timeout = -1, n;
        int buffered = c->kind == TP_KIND_TCP && !w->d[1].pending && tp__tcp_has_frame(w);

        memset(pfd, 0, sizeof(pfd));
        pfd[FD_STOP].fd = p->stop_fd;
        pfd[FD_STOP].events = POLLIN;
        pfd[FD_DEV].fd = w->dev_fd;
        pfd[FD_DEV].events = (short)((w->d[0].pending ? 0 : POLLIN) | (w->d[1].pending ? POLLOUT : 0));
        pfd[FD_PEER].fd = w->peer_fd;   /* -1 is ignored by poll */
        if (c->kind == TP_KIND_TCP && w->tcp == TP__TCP_CONNECTING)
            pfd[FD_PEER].events = POLLOUT;
        else
            pfd[FD_PEER].events = (short)((w->d[1].pending ? 0 : POLLIN) | (w->d[0].pending ? POLLOUT : 0));
        pfd[FD_LISTEN].fd = w->listen_fd;
        pfd[FD_LISTEN].events = POLLIN;
        pfd[FD_CTL].fd = c->ctl.enabled ? w->ctl_fd : -1;
        pfd[FD_CTL].events = POLLIN;
        if (buffered || w->releasing) {
            timeout = 0;
        } else {
            if (c->kind == TP_KIND_TCP && !c->sock.listen && w->tcp == TP__TCP_DOWN) {
                int64_t ms = (w->next_connect_ns - tp__now_ns()) / 1000000;
                timeout = ms < 0 ? 0 : (int)ms + 1;
            }
            if (w->npend && (timeout < 0 || timeout > 5))
                timeout = 5;   /* look at decision timeouts while packets wait */
            if (c->ctl.enabled && w->flows.count) {
                /* wake now and then to evict idle flows even when no packet comes */
                int64_t ms = c->ctl.idle_ns / 4000000;
                int t = ms < 10 ? 10 : ms > 1000 ? 1000 : (int)ms;
                if (timeout < 0 || timeout > t)
                    timeout = t;
            }
        }
        n = poll(pfd, FD__N, timeout);
        TP__ADD(w->st.wakeups, 1);
        if (n < 0 && errno != EINTR) {
            tp__fail(w, -errno, "poll");
            break;
        }
        if (n < 0)
            continue;
        if (pfd[FD_STOP].revents)
            break;
        if (c->ctl.enabled) {
            w->now = tp__now_ns();
            if (pfd[FD_CTL].revents & POLLIN)
                tp__take_verdicts(w);
            tp__sweep_idle(w);
            if (w->npend && !w->d[0].pending) {
                /* Packets whose verdict came go first, before any newer ones. */
                if (tp__release(w) > 0) {
                    tp__prepare(w, 0);
                    if ((rc = tp__flush0(w)) < 0) {
                        tp__fail(w, rc, "endpoint write");
                        break;
                    }
                }
                if (w->releasing) {
                    tp__notify(w);
                    continue;
                }
            }
        }

        if (pfd[FD_LISTEN].revents & POLLIN)
            tp__tcp_accept(w);
        if (c->kind == TP_KIND_TCP && w->tcp == TP__TCP_CONNECTING && pfd[FD_PEER].revents) {
            tp__tcp_connected(w);
            continue;
        }
        if (c->kind == TP_KIND_TCP && !c->sock.listen && w->tcp == TP__TCP_DOWN &&
            tp__now_ns() >= w->next_connect_ns)
            tp__tcp_connect(w);

        /* An error or hang-up on a TCP stream: read finds out which. */
        short prev = pfd[FD_PEER].revents;
        if (c->kind == TP_KIND_TCP && (prev & (POLLERR | POLLHUP)))
            prev |= POLLIN;

        /* Finish batches that were waiting for room first, then read anew. */
        if (w->d[0].pending && (prev & (POLLOUT | POLLERR | POLLHUP))) {
            if ((rc = tp__flush0(w)) < 0) {
                tp__fail(w, rc, "endpoint write");
                break;
            }
        }
        if (w->d[1].pending && (pfd[FD_DEV].revents & (POLLOUT | POLLERR))) {
            if ((rc = tp__flush1(w)) < 0) {
                tp__fail(w, rc, "device write");
                break;
            }
        }
        if (!w->d[0].pending && (pfd[FD_DEV].revents & (POLLIN | POLLERR | POLLHUP))) {
            rc = tp__tun_read(w->dev_fd, &c->dev.fmt, &w->d[0], c->batch, &w->st.dir[0]);
            if (rc < 0) {
                tp__fail(w, rc, "device read");
                break;
            }
            if (rc > 0)
                tp__prepare(w, 0);
            if (rc > 0 && (rc = tp__flush0(w)) < 0) {
                tp__fail(w, rc, "endpoint write");
                break;
            }
        }
        if (!w->d[1].pending && w->peer_fd >= 0 && ((prev & POLLIN) || buffered)) {
            rc = tp__fill1(w);
            if (rc < 0) {
                tp__fail(w, rc, c->kind == TP_KIND_TUN ? "peer device read" : "endpoint read");
                break;
            }
            if (rc > 0 || w->stream_bad)
                tp__prepare(w, 1);
            if ((rc > 0 || w->stream_bad) && (rc = tp__flush1(w)) < 0) {
                tp__fail(w, rc, "device write");
                break;
            }
        }
        tp__notify(w);
    }
    if (w->npend) {
        TP__ADD(w->st.dir[0].pkts_in, w->npend);
        TP__ADD(w->st.dir[0].drops[TP_DROP_STOPPED], w->npend);
        w->npend = 0;
    }
    /* Whatever is still queued is lost with the stop: count it. */
    tp__dir_drop_rest(&w->d[0], c->kind == TP_KIND_TUN, &w->st.dir[0], TP_DROP_STOPPED);
    tp__dir_drop_rest(&w->d[1], 1, &w->st.dir[1], TP_DROP_STOPPED);
    return NULL;
}

/* ---- lifetime ------------------------------------------------------------- */

static int tp__check_cfg(const struct tp_pump_cfg *c, const char **err)
{
    if (c->nworkers < 1 || c->nworkers > TP_MAX_WORKERS || c->dev.nfds < c->nworkers) {
        *err = "nworkers";
        return -EINVAL;
    }
    if (c->batch < 1 || c->batch > TP_MAX_BATCH) {
        *err = "batch";
        return -EINVAL;
    }
    if (c->kind == TP_KIND_TUN && c->peer_dev.nfds < c->nworkers) {
        *err = "peer device queues";
        return -EINVAL;
    }
    if (c->kind != TP_KIND_TUN && c->kind != TP_KIND_UDP && c->kind != TP_KIND_TCP) {
        *err = "kind";
        return -EINVAL;
    }
    if (c->ctl.enabled && (c->ctl.table_size < 1 || c->ctl.pending_limit > 65536 ||
                           (c->ctl.default_verdict != TP_VERDICT_FORWARD && c->ctl.default_verdict != TP_VERDICT_DROP))) {
        *err = "control settings";
        return -EINVAL;
    }
    if (c->sock.nremotes < 0 || c->sock.nremotes > TP_MAX_PEERS) {
        *err = "remotes";
        return -EINVAL;
    }
    if (c->kind != TP_KIND_TUN) {
        if (c->sock.family != AF_INET && c->sock.family != AF_INET6) {
            *err = "family";
            return -EINVAL;
        }
        if (c->kind == TP_KIND_TCP && !c->sock.listen && !c->sock.has_remote) {
            *err = "remote";
            return -EINVAL;
        }
        if (c->kind == TP_KIND_TCP && (c->sock.max_frame < 1 || c->sock.max_frame > TP__PKT_MAX)) {
            *err = "max_frame";
            return -EINVAL;
        }
        if (c->kind == TP_KIND_UDP && !c->sock.has_remote && !c->sock.learn_peer) {
            *err = "remote";
            return -EINVAL;
        }
    }
    return 0;
}

static void tp__close_owned(struct tp_pump *p)
{
    for (int i = 0; i < p->nworkers; i++) {
        struct tp__worker *w = &p->w[i];
        if (w->own_peer_fd && w->peer_fd >= 0)
            close(w->peer_fd);
        w->peer_fd = -1;
        if (w->listen_fd >= 0)
            close(w->listen_fd);
        w->listen_fd = -1;
    }
}

static void tp__ctl_free(struct tp__worker *w)
{
    tp_flow_table_free(&w->flows);
    tp_ring_free(&w->events);
    tp_ring_free(&w->verdicts);
    tp_ring_free(&w->punts);
    free(w->pend_bufs);
    free(w->pend);
    free(w->pend_free);
    free(w->punt_hdrs);
    if (w->ctl_fd >= 0)
        close(w->ctl_fd);
    w->ctl_fd = -1;
}

static int tp__ctl_alloc(struct tp__worker *w, const struct tp_ctl_cfg *c)
{
    uint32_t n = c->pending_limit ? c->pending_limit : 1;
    uint32_t table = c->table_size ? c->table_size : 1;

    w->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->ctl_fd < 0)
        return -errno;
    if (tp_flow_table_init(&w->flows, table) < 0 ||
        tp_ring_init(&w->events, TP__EVENT_RING, sizeof(struct tp_event)) < 0 ||
        tp_ring_init(&w->verdicts, TP__VERDICT_RING, sizeof(struct tp__verdict)) < 0 ||
        tp_ring_init(&w->punts, TP__PUNT_RING, TP__PKT_MAX + 64) < 0)
        return -ENOMEM;
    w->pend_bufs = malloc((size_t)n * TP__BUF_SIZE);
    w->pend = malloc(sizeof(*w->pend) * n);
    w->pend_free = malloc(sizeof(*w->pend_free) * n);
    w->punt_hdrs = malloc((size_t)TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM);
    if (!w->pend_bufs || !w->pend || !w->pend_free || !w->punt_hdrs)
        return -ENOMEM;
    w->nfree = (int)c->pending_limit;
    for (uint32_t i = 0; i < c->pending_limit; i++)
        w->pend_free[i] = (int32_t)(c->pending_limit - 1 - i);
    return 0;
}

static void tp__dir_free(struct tp__dir *d)
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
}

/* Everything a direction needs, made once: nothing is allocated per packet.
 * malloc, not calloc: pages are touched only as traffic needs them. */
static int tp__dir_alloc(struct tp__dir *d, int batch, int with_bufs)
{
    size_t cap = (size_t)batch * TP_VNET_MAX_SEGS;

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

void tp_pump_free(struct tp_pump *p)
{
    if (!p)
        return;
    tp_pump_stop(p);
    for (int i = 0; i < p->nworkers; i++) {
        tp__dir_free(&p->w[i].d[0]);
        tp__dir_free(&p->w[i].d[1]);
        free(p->w[i].stream);
        tp__ctl_free(&p->w[i]);
    }
    free(p->w);
    if (p->stop_fd >= 0)
        close(p->stop_fd);
    if (p->exit_fd >= 0)
        close(p->exit_fd);
    if (p->netns_fd >= 0)
        close(p->netns_fd);
    if (p->event_fd >= 0)
        close(p->event_fd);
    free(p);
}

int tp_pump_start(const struct tp_pump_cfg *cfg, struct tp_pump **out, const char **err)
{
    struct tp_pump *p;
    sigset_t all, old;
    int rc, i, saved = -1;

    *out = NULL;
    if ((rc = tp__check_cfg(cfg, err)) < 0)
        return rc;
    p = calloc(1, sizeof(*p));
    if (!p) {
        *err = "malloc";
        return -ENOMEM;
    }
    p->cfg = *cfg;
    p->cfg.dev.fds = NULL;        /* the caller's arrays are not kept */
    p->cfg.peer_dev.fds = NULL;
    p->nworkers = cfg->nworkers;
    p->netns_fd = -1;
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (posix_memalign((void **)&p->w, 64, sizeof(*p->w) * (size_t)p->nworkers) != 0)
        p->w = NULL;
    if (p->stop_fd < 0 || p->exit_fd < 0 || p->event_fd < 0 || !p->w) {
        *err = "eventfd/malloc";
        rc = p->stop_fd < 0 || p->exit_fd < 0 || p->event_fd < 0 ? -errno : -ENOMEM;
        p->nworkers = 0;
        tp_pump_free(p);
        return rc;
    }
    memset(p->w, 0, sizeof(*p->w) * (size_t)p->nworkers);
    for (i = 0; i < p->nworkers; i++) {
        struct tp__worker *w = &p->w[i];
        w->pump = p;
        w->idx = i;
        w->dev_fd = cfg->dev.fds[i];
        w->peer_fd = cfg->kind == TP_KIND_TUN ? cfg->peer_dev.fds[i] : -1;
        w->listen_fd = -1;
        w->ctl_fd = -1;
        w->backoff_ms = 100;
        if (cfg->kind == TP_KIND_TCP)
            w->stream = malloc(TP__STREAM_SIZE);
        if (tp__dir_alloc(&w->d[0], cfg->batch, 1) < 0 ||
            tp__dir_alloc(&w->d[1], cfg->batch, cfg->kind != TP_KIND_TCP) < 0 ||
            (cfg->kind == TP_KIND_TCP && !w->stream) ||
            ((cfg->ctl.enabled || cfg->ctl.events) && tp__ctl_alloc(w, &cfg->ctl) < 0)) {
            *err = "malloc";
            tp_pump_free(p);
            return -ENOMEM;
        }
    }

    if (cfg->kind != TP_KIND_TUN) {
        if (cfg->sock.netns_fd >= 0) {
            p->netns_fd = fcntl(cfg->sock.netns_fd, F_DUPFD_CLOEXEC, 0);
            if (p->netns_fd < 0 || (rc = tp_netns_enter(p->netns_fd, &saved)) < 0) {
                rc = p->netns_fd < 0 ? -errno : rc;
                *err = "setns";
                tp_pump_free(p);
                return rc;
            }
        }
        for (i = 0; i < p->nworkers; i++) {
            if ((rc = tp__sock_setup(&p->w[i], tp__gro_what(&cfg->dev.fmt) != 0)) < 0) {
                *err = cfg->kind == TP_KIND_UDP ? "UDP socket bind" : "TCP listen";
                break;
            }
        }
        if (saved >= 0)
            tp_netns_restore(saved);
        if (rc < 0) {
            tp_pump_free(p);
            return rc;
        }
    }

    /* Workers take no signals: Python handles them on its main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (i = 0; i < p->nworkers; i++) {
        rc = -pthread_create(&p->w[i].thread, NULL, tp__worker_main, &p->w[i]);
        if (rc < 0)
            break;
        p->w[i].thread_started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        *err = "pthread_create";
        tp_pump_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int tp_pump_stop(struct tp_pump *p)
{
    uint64_t one = 1;

    if (p->stopped)
        return 0;
    p->stopped = 1;
    (void)!write(p->stop_fd, &one, sizeof(one));
    for (int i = 0; i < p->nworkers; i++) {
        if (p->w[i].thread_started)
            pthread_join(p->w[i].thread, NULL);
        p->w[i].thread_started = 0;
    }
    tp__close_owned(p);
    return 0;
}

int tp_pump_wait(struct tp_pump *p, int timeout_ms)
{
    struct pollfd pfd = { .fd = p->exit_fd, .events = POLLIN };
    int n = poll(&pfd, 1, timeout_ms);

    return n > 0 ? 1 : 0;
}

int tp_pump_error(const struct tp_pump *p, int *worker, const char **where)
{
    for (int i = 0; i < p->nworkers; i++) {
        int err = __atomic_load_n(&p->w[i].err, __ATOMIC_ACQUIRE);
        if (err) {
            *worker = i;
            *where = p->w[i].err_where;
            return err;
        }
    }
    return 0;
}

int tp_pump_nworkers(const struct tp_pump *p)
{
    return p->nworkers;
}

void tp_pump_stats(const struct tp_pump *p, int worker, struct tp_worker_stats *out)
{
    const uint64_t *src = (const uint64_t *)&p->w[worker].st;
    uint64_t *dst = (uint64_t *)out;

    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* ---- the control side ------------------------------------------------------ */

int tp_pump_event_fd(const struct tp_pump *p)
{
    return p->event_fd;
}

const struct tp_event *tp_pump_next_event(struct tp_pump *p, int *worker, const uint8_t **data)
{
    for (int n = 0; n < p->nworkers; n++) {
        int i = (p->rr + n) % p->nworkers;
        struct tp__worker *w = &p->w[i];
        const struct tp_event *ev;
        if (!w->events.slots || !(ev = tp_ring_peek(&w->events)))
            continue;
        p->rr = (i + 1) % p->nworkers;
        *worker = i;
        *data = ev->type == TP_EV_PACKET ? tp_ring_peek(&w->punts) : NULL;
        return ev;
    }
    return NULL;
}

void tp_pump_event_done(struct tp_pump *p, int worker, int type)
{
    struct tp__worker *w = &p->w[worker];

    if (type == TP_EV_PACKET)
        tp_ring_release(&w->punts);
    tp_ring_release(&w->events);
}

int tp_pump_verdict(struct tp_pump *p, int worker, int32_t flow, uint32_t gen, int verdict,
                    int route, uint32_t ttl_ms)
{
    struct tp__worker *w;
    struct tp__verdict *v;

    if (worker < 0 || worker >= p->nworkers || !p->w[worker].verdicts.slots)
        return -EINVAL;
    if (verdict < TP_VERDICT_FORWARD || verdict > TP_VERDICT_ROUTE || route < 0 || route > 255)
        return -EINVAL;
    w = &p->w[worker];
    v = tp_ring_reserve(&w->verdicts);
    if (!v)
        return -EAGAIN;
    v->flow = flow;
    v->gen = gen;
    v->verdict = (uint8_t)verdict;
    v->route = (uint8_t)route;
    v->ttl_ms = ttl_ms;
    tp_ring_publish(&w->verdicts);
    w->kicked = 1;
    return 0;
}

void tp_pump_kick(struct tp_pump *p)
{
    uint64_t one = 1;

    for (int i = 0; i < p->nworkers; i++) {
        if (p->w[i].kicked) {
            p->w[i].kicked = 0;
            (void)!write(p->w[i].ctl_fd, &one, sizeof(one));
        }
    }
}

int tp_pump_inject_udp(struct tp_pump *p, int worker, int route, const uint8_t *data, size_t len)
{
    struct tp__worker *w;
    ssize_t r;

    if (p->cfg.kind != TP_KIND_UDP || worker < 0 || worker >= p->nworkers)
        return -EINVAL;
    w = &p->w[worker];
    if (route < 0 || route >= w->npeers || w->peer_fd < 0)
        return -EDESTADDRREQ;
    /* sendto is safe next to the worker's own sends: each is one datagram. */
    r = sendto(w->peer_fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&w->peers[route], w->peer_lens[route]);
    return r < 0 ? -errno : 0;
}
