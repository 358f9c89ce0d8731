/* The control plane, worker side (see tp_ctl_worker.h). */
#define _GNU_SOURCE
#include "tp_ctl_worker.h"
#include "tunpump.h"

#include <errno.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define TP__PUNT_SLOT (TP__PKT_MAX + 64)  /* a wire packet (L2 included) */
#define TP__SWEEP_PER_TURN 16      /* idle flows evicted per loop turn at most */
#define TP__PENDING_POLL_MS 5      /* how often decision timeouts are looked at */
#define TP__IDLE_POLL_MIN_MS 10
#define TP__IDLE_POLL_MAX_MS 1000

void tp__ctl_init(struct tp__ctl *c, const struct tp_ctl_cfg *cfg, const struct tp_fmt *dev_fmt,
                  struct tp_worker_stats *st, int idx, int event_fd)
{
    memset(c, 0, sizeof(*c));
    c->cfg = cfg;
    c->dev_fmt = dev_fmt;
    c->st = st;
    c->idx = idx;
    c->event_fd = event_fd;
    c->ctl_fd = -1;
}

void tp__ctl_free(struct tp__ctl *c)
{
    tp_flow_table_free(&c->flows);
    tp_ring_free(&c->events);
    tp_ring_free(&c->verdicts);
    tp_ring_free(&c->punts);
    free(c->pend_bufs);
    free(c->pend);
    free(c->pend_free);
    free(c->punt_hdrs);
    c->pend_bufs = c->punt_hdrs = NULL;
    c->pend = NULL;
    c->pend_free = NULL;
    if (c->ctl_fd >= 0)
        close(c->ctl_fd);
    c->ctl_fd = -1;
}

int tp__ctl_alloc(struct tp__ctl *c)
{
    uint32_t limit = c->cfg->pending_limit;
    uint32_t n = limit ? limit : 1;
    uint32_t table = c->cfg->table_size ? c->cfg->table_size : 1;

    c->ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->ctl_fd < 0)
        return -errno;
    if (tp_flow_table_init(&c->flows, table) < 0 ||
        tp_ring_init(&c->events, TP__EVENT_RING, sizeof(struct tp_event)) < 0 ||
        tp_ring_init(&c->verdicts, TP__VERDICT_RING, sizeof(struct tp__verdict)) < 0 ||
        tp_ring_init(&c->punts, c->cfg->punt_ring ? c->cfg->punt_ring : TP_DEFAULT_PUNT_RING, TP__PUNT_SLOT) < 0)
        return -ENOMEM;
    c->pend_bufs = malloc((size_t)n * TP__BUF_SIZE);
    c->pend = malloc(sizeof(*c->pend) * n);
    c->pend_free = malloc(sizeof(*c->pend_free) * n);
    c->punt_hdrs = malloc((size_t)TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM);
    if (!c->pend_bufs || !c->pend || !c->pend_free || !c->punt_hdrs)
        return -ENOMEM;
    c->nfree = (int)limit;
    for (uint32_t i = 0; i < limit; i++)
        c->pend_free[i] = (int32_t)(limit - 1 - i);
    return 0;
}

/* ---- events ---------------------------------------------------------------- */

static void tp__ctl_post(struct tp__ctl *c, const struct tp_event *ev)
{
    struct tp_event *slot = tp_ring_reserve(&c->events);

    if (!slot) {
        TP__ADD(c->st->events_lost, 1);
        return;
    }
    *slot = *ev;
    slot->worker = (uint16_t)c->idx;
    tp_ring_publish(&c->events);
    c->events_posted = 1;
}

void tp__ctl_notify(struct tp__ctl *c)
{
    uint64_t one = 1;

    if (c->events_posted) {
        (void)!write(c->event_fd, &one, sizeof(one));
        c->events_posted = 0;
    }
}

static void tp__ctl_event_addr(struct tp_event *ev, const struct sockaddr_storage *ss)
{
    ev->family = (uint8_t)ss->ss_family;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        memcpy(ev->addr, &a->sin_addr, sizeof(a->sin_addr));
        ev->port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        memcpy(ev->addr, &a->sin6_addr, sizeof(a->sin6_addr));
        ev->port = ntohs(a->sin6_port);
    }
}

void tp__ctl_post_peer(struct tp__ctl *c, int type, const struct sockaddr_storage *ss)
{
    struct tp_event ev;

    if (!c->events.slots)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.type = (uint8_t)type;
    tp__ctl_event_addr(&ev, ss);
    tp__ctl_post(c, &ev);
}

void tp__ctl_peer_moved(struct tp__ctl *c, int peer, const struct sockaddr_storage *ss)
{
    struct tp_event ev;

    TP__ADD(c->st->peers_moved, 1);
    if (!c->events.slots)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.type = TP_EV_PEER_MOVED;
    ev.peer = (int16_t)peer;
    tp__ctl_event_addr(&ev, ss);
    tp__ctl_post(c, &ev);
}

void tp__ctl_post_unreachable(struct tp__ctl *c, int reason, const struct sockaddr_storage *ss, int err)
{
    struct tp_event ev;

    if (!c->events.slots)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.type = TP_EV_UNREACHABLE;
    ev.reason = (uint8_t)reason;
    ev.err = err;
    if (ss)
        tp__ctl_event_addr(&ev, ss);
    tp__ctl_post(c, &ev);
}

void tp__ctl_post_error(struct tp__ctl *c, int err, const char *where)
{
    struct tp_event ev;

    if (!c->events.slots)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.type = TP_EV_ERROR;
    ev.err = err;
    ev.where = where;
    tp__ctl_post(c, &ev);
    tp__ctl_notify(c);
}

static void tp__ctl_post_flow(struct tp__ctl *c, int type, int reason, int32_t i, const struct tp_flow *f)
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
    ev.age_ns = c->now - f->created_ns;
    tp__ctl_post(c, &ev);
}

/* ---- flows ----------------------------------------------------------------- */

static void tp__ctl_evict(struct tp__ctl *c, int32_t i, int reason)
{
    tp__ctl_post_flow(c, TP_EV_EVICTED, reason, i, &c->flows.e[i]);
    tp_flow_remove(&c->flows, i);
    TP__ADD(c->st->flows_evicted, 1);
    TP__ADD(c->st->flows_active, -1);
}

/* Ask Python about flow i; when the ring is full the default applies. */
static void tp__ctl_ask(struct tp__ctl *c, int32_t i)
{
    struct tp_flow *f = &c->flows.e[i];
    uint64_t lost = c->st->events_lost;

    f->verdict = TP_VERDICT_NONE;
    f->pending_since_ns = c->now;
    f->expires_ns = 0;
    tp__ctl_post_flow(c, TP_EV_FLOW, 0, i, f);
    if (c->st->events_lost != lost)
        f->verdict = c->cfg->default_verdict;
}

/* A flow has a verdict from now on: it counts as seen now, so the idle
 * sweep or the packet's own re-classification cannot evict it before its
 * waiting packets went out (they would be asked about again, forever, when
 * verdicts come later than the idle timeout). */
static void tp__ctl_decided(struct tp__ctl *c, int32_t i)
{
    c->flows.e[i].last_ns = c->now;
    tp_flow_touch(&c->flows, i);
}

/* The wire packets a device packet (prefix at pre) stands for: a GSO
 * super-packet counts its segments, as everywhere ("packets" are segments). */
static unsigned tp__ctl_segs(const struct tp__ctl *c, const uint8_t *pre, const uint8_t *data, uint32_t len)
{
    struct tp_vnet_hdr vh;

    if (!c->dev_fmt->vnet_hdr_sz || !pre)
        return 1;
    tp_vnet_hdr_read(pre + tp_fmt_vnet_off(c->dev_fmt), &vh);
    return (unsigned)tp_vnet_count_segs(&vh, data, len, c->dev_fmt->tap ? TP_L2_ETH : TP_L2_NONE);
}

static void tp__ctl_pend(struct tp__ctl *c, const struct tp__pkt *r, int32_t flow, uint32_t gen,
                         struct tp_dir_stats *st)
{
    if (c->nfree == 0) {
        unsigned n = tp__ctl_segs(c, r->pre, r->data, r->len);
        TP__ADD(st->pkts_in, n);
        TP__ADD(st->drops[TP_DROP_PENDING_FULL], n);
        return;
    }
    int32_t slot = c->pend_free[--c->nfree];
    uint32_t total = r->prelen + r->len;
    uint8_t *dst = c->pend_bufs + (size_t)slot * TP__BUF_SIZE + TP__HEADROOM - r->prelen;

    memcpy(dst, r->pre ? r->pre : r->data, total);
    c->pend[c->npend++] = (struct tp__pending){ .flow = flow, .gen = gen, .len = total, .slot = slot };
}

/* One wire packet to Python: the punt slot first, then the event naming it. */
static void tp__ctl_punt_one(struct tp__ctl *c, const struct tp_seg *s, int32_t flow, struct tp_dir_stats *st)
{
    struct tp_event *ev = tp_ring_reserve(&c->events);
    uint8_t *slot = tp_ring_reserve(&c->punts);
    const struct tp_flow *f = &c->flows.e[flow];

    TP__ADD(st->pkts_in, 1);
    TP__ADD(st->bytes_in, s->hdr_len + s->len);
    if (!ev || !slot) {
        TP__ADD(st->drops[TP_DROP_PUNT_FULL], 1);
        return;
    }
    if (s->hdr_len)   /* an unsplit packet has no separate header (hdr is NULL) */
        memcpy(slot, s->hdr, s->hdr_len);
    memcpy(slot + s->hdr_len, s->data, s->len);
    memset(ev, 0, sizeof(*ev));
    ev->type = TP_EV_PACKET;
    ev->worker = (uint16_t)c->idx;
    ev->flow = flow;
    ev->gen = f->gen;
    ev->key = f->key;
    ev->packets = f->packets;
    ev->bytes = f->bytes;
    ev->len = s->hdr_len + s->len;
    tp_ring_publish(&c->punts);
    tp_ring_publish(&c->events);
    c->events_posted = 1;
    TP__ADD(c->st->punted, 1);
    TP__ADD(st->punted, 1);
}

void tp__ctl_punt_xf(struct tp__ctl *c, enum tp_dir dir, const struct tunpump_pkt *x, struct tp_dir_stats *st,
                     unsigned segs)
{
    struct tp_event *ev = c->events.slots ? tp_ring_reserve(&c->events) : NULL;
    uint8_t *slot = ev ? tp_ring_reserve(&c->punts) : NULL;
    uint32_t len = x->head_len + x->len;   /* in two pieces with TUNPUMP_GATHER_TO_ENDPOINT */

    if (!ev || !slot || len > TP__PUNT_SLOT) {
        TP__ADD(st->drops[TP_DROP_PUNT_FULL], segs);
        return;
    }
    if (x->head_len)
        memcpy(slot, x->head, x->head_len);
    memcpy(slot + x->head_len, x->data, x->len);
    memset(ev, 0, sizeof(*ev));
    ev->type = TP_EV_PUNT;
    ev->worker = (uint16_t)c->idx;
    ev->flow = x->flow;
    if (x->flow >= 0 && (uint32_t)x->flow < c->flows.cap)
        ev->gen = c->flows.e[x->flow].gen;   /* Python's flow id holds the slot's generation */
    ev->len = len;
    ev->dir = (uint8_t)dir;
    ev->peer = x->peer;
    if (x->src)
        tp__ctl_event_addr(ev, (const struct sockaddr_storage *)x->src);
    tp_ring_publish(&c->punts);
    tp_ring_publish(&c->events);
    c->events_posted = 1;
    TP__ADD(c->st->punted, segs);
    TP__ADD(st->punted, segs);
}

static void tp__ctl_punt(struct tp__ctl *c, struct tp__pkt *r, struct tp_dir_stats *st, int32_t flow)
{
    const struct tp_fmt *src = c->dev_fmt;
    struct tp_seg segs[TP_VNET_MAX_SEGS];
    struct tp_vnet_splitter sp;
    struct tp_vnet_hdr vh = { 0 };
    int n;

    if (src->vnet_hdr_sz)   /* Python gets wire packets with complete checksums, not super-packets. */
        tp_vnet_hdr_read(r->pre + tp_fmt_vnet_off(src), &vh);
    if (tp_vnet_split_begin(&sp, &vh, r->data, r->len, src->tap ? TP_L2_ETH : TP_L2_NONE) < 0) {
        TP__ADD(st->pkts_in, 1);
        TP__ADD(st->drops[TP_DROP_MALFORMED], 1);
        return;
    }
    while ((n = tp_vnet_split_next(&sp, c->punt_hdrs, segs, TP_VNET_MAX_SEGS)) > 0)
        for (int k = 0; k < n; k++)
            tp__ctl_punt_one(c, &segs[k], flow, st);
}

/* The flow of key k, made (and asked about) on first sight or after idling. */
static int32_t tp__ctl_flow(struct tp__ctl *c, const struct tp_flow_key *k)
{
    uint32_t h = tp_flow_hash(k);
    int32_t i = tp_flow_lookup(&c->flows, k, h);

    if (i >= 0 && c->flows.e[i].verdict != TP_VERDICT_NONE && c->now - c->flows.e[i].last_ns > c->cfg->idle_ns) {
        tp__ctl_evict(c, i, TP_EVICT_IDLE);
        i = -1;
    }
    if (i < 0) {
        struct tp_flow old;
        int32_t ev;
        i = tp_flow_insert(&c->flows, k, h, c->now, &old, &ev);
        if (ev >= 0) {
            tp__ctl_post_flow(c, TP_EV_EVICTED, TP_EVICT_FULL, ev, &old);
            TP__ADD(c->st->flows_evicted, 1);
        } else {
            TP__ADD(c->st->flows_active, 1);
        }
        TP__ADD(c->st->flows_new, 1);
        tp__ctl_ask(c, i);
    } else if (c->flows.e[i].expires_ns && c->now >= c->flows.e[i].expires_ns) {
        tp__ctl_ask(c, i);   /* the verdict's TTL ran out: ask again */
    }
    return i;
}

int tp__ctl_classify(struct tp__ctl *c, struct tp__pkt *r, struct tp_dir_stats *st)
{
    struct tp_flow_key k;
    struct tp_flow *f;
    int32_t i;

    tp_flow_parse(r->data, r->len, c->dev_fmt->tap, &k);
    i = tp__ctl_flow(c, &k);
    f = &c->flows.e[i];
    r->flow = i;
    if (!r->released) {
        f->packets++;
        f->bytes += r->len;
    }
    f->last_ns = c->now;
    tp_flow_touch(&c->flows, i);
    switch (f->verdict) {
    case TP_VERDICT_FORWARD:
        r->route = 0;
        return 1;
    case TP_VERDICT_ROUTE:
        r->route = f->route;
        return 1;
    case TP_VERDICT_DROP: {
        unsigned n = tp__ctl_segs(c, r->pre, r->data, r->len);
        TP__ADD(st->pkts_in, n);
        TP__ADD(st->drops[TP_DROP_VERDICT], n);
        return 0;
    }
    case TP_VERDICT_PUNT:
        tp__ctl_punt(c, r, st, i);
        return 0;
    default:
        tp__ctl_pend(c, r, i, f->gen, st);
        return 0;
    }
}

/* ---- once per turn --------------------------------------------------------- */

static void tp__ctl_take_verdicts(struct tp__ctl *c)
{
    struct tp__verdict *v;
    uint64_t junk;

    (void)!read(c->ctl_fd, &junk, sizeof(junk));
    while ((v = tp_ring_peek(&c->verdicts))) {
        if (v->flow >= 0 && (uint32_t)v->flow < c->flows.cap && c->flows.e[v->flow].gen == v->gen) {
            struct tp_flow *f = &c->flows.e[v->flow];
            f->verdict = v->verdict;
            f->route = v->route;
            f->expires_ns = v->ttl_ms ? c->now + (int64_t)v->ttl_ms * TP__NS_PER_MS : 0;
            tp__ctl_decided(c, v->flow);
        }
        TP__ADD(c->st->verdicts, 1);
        tp_ring_release(&c->verdicts);
    }
}

static void tp__ctl_sweep_idle(struct tp__ctl *c)
{
    for (int n = 0; n < TP__SWEEP_PER_TURN; n++) {
        int32_t i = tp_flow_oldest(&c->flows);
        if (i < 0 || c->flows.e[i].verdict == TP_VERDICT_NONE ||
            c->now - c->flows.e[i].last_ns <= c->cfg->idle_ns)
            return;
        tp__ctl_evict(c, i, TP_EVICT_IDLE);
    }
}

/* Pending packet pe back into d as a released packet. */
static void tp__ctl_unpend(struct tp__ctl *c, const struct tp__pending *pe, struct tp__dir *d)
{
    int prelen = tp_fmt_prefix_len(c->dev_fmt);
    uint8_t *src = c->pend_bufs + (size_t)pe->slot * TP__BUF_SIZE + TP__HEADROOM - prelen;
    uint8_t *dst = d->bufs + (size_t)d->n * TP__BUF_SIZE + TP__HEADROOM - prelen;
    struct tp__pkt *p = &d->pkts[d->n];

    memcpy(dst, src, pe->len);
    tp__pkt_set(p, dst + prelen, pe->len - (uint32_t)prelen, d->n);
    p->pre = dst;
    p->prelen = (uint16_t)prelen;
    p->released = 1;
    d->n++;
    c->pend_free[c->nfree++] = pe->slot;
}

/* Move packets whose flow has been decided (or timed out) back into the
 * device batch, oldest first; later packets of the same flow are behind them
 * in the queue, so order holds. Returns the number moved. */
static int tp__ctl_release(struct tp__ctl *c, struct tp__dir *d, int batch)
{
    int kept = 0, waiting = 0;

    tp__dir_reset(d);
    for (int j = 0; j < c->npend; j++) {
        struct tp__pending *pe = &c->pend[j];
        struct tp_flow *f = &c->flows.e[pe->flow];
        int decided = f->gen != pe->gen || f->verdict != TP_VERDICT_NONE;

        if (!decided && c->now - f->pending_since_ns >= c->cfg->decision_ns) {
            f->verdict = c->cfg->default_verdict;
            tp__ctl_decided(c, pe->flow);
            TP__ADD(c->st->decision_timeouts, 1);
            decided = 1;
        }
        if (decided && d->n < batch) {
            tp__ctl_unpend(c, pe, d);
            continue;
        }
        if (decided)
            waiting = 1;
        c->pend[kept++] = *pe;
    }
    c->npend = kept;
    c->releasing = waiting;
    return d->n;
}

int tp__ctl_turn(struct tp__ctl *c, int ctl_ready, struct tp__dir *d, int batch)
{
    c->now = tp__now_ns();
    if (ctl_ready)
        tp__ctl_take_verdicts(c);
    tp__ctl_sweep_idle(c);
    if (!c->npend || d->pending)
        return -1;
    return tp__ctl_release(c, d, batch);
}

int tp__ctl_timeout(const struct tp__ctl *c, int timeout_ms)
{
    if (c->npend && (timeout_ms < 0 || timeout_ms > TP__PENDING_POLL_MS))
        timeout_ms = TP__PENDING_POLL_MS;   /* look at decision timeouts while packets wait */
    if (c->flows.count) {
        /* wake now and then to evict idle flows even when no packet comes */
        int64_t ms = c->cfg->idle_ns / 4 / TP__NS_PER_MS;   /* a quarter of the idle timeout */
        int t = ms < TP__IDLE_POLL_MIN_MS ? TP__IDLE_POLL_MIN_MS : ms > TP__IDLE_POLL_MAX_MS ? TP__IDLE_POLL_MAX_MS : (int)ms;
        if (timeout_ms < 0 || timeout_ms > t)
            timeout_ms = t;
    }
    return timeout_ms;
}

void tp__ctl_drop_pending(struct tp__ctl *c, struct tp_dir_stats *st)
{
    int prelen = tp_fmt_prefix_len(c->dev_fmt);
    uint64_t n = 0;

    for (int j = 0; j < c->npend; j++) {
        const uint8_t *pre = c->pend_bufs + (size_t)c->pend[j].slot * TP__BUF_SIZE + TP__HEADROOM - prelen;
        n += tp__ctl_segs(c, pre, pre + prelen, c->pend[j].len - (uint32_t)prelen);
    }
    if (n) {
        TP__ADD(st->pkts_in, n);
        TP__ADD(st->drops[TP_DROP_STOPPED], n);
    }
    c->npend = 0;
}
