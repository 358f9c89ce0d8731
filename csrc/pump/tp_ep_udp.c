/* A UDP socket as an endpoint: recvmmsg / sendmmsg batches, UDP_SEGMENT to
 * send the segments of a split as one message, UDP_GRO to receive runs of
 * datagrams as one buffer. One socket per queue, not connected: each
 * datagram's source is compared with the peers, strangers are counted (or,
 * for a transform that asks, handed to it as no peer). Peers change while
 * the pump runs: from Python (set / remove, through a ring of changes the
 * worker applies between batches), by learning, and by roaming (a transform
 * authenticated a datagram from a new address). */
#define _GNU_SOURCE
#include "tp_compat.h"
#include "tp_dgram.h"
#include "tp_endpoint.h"
#include "tp_ring.h"
#include "tp_sockaddr.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#define TP__UDP_MAX_SEGS 64          /* segments we put in one UDP_SEGMENT message */
#define TP__UDP4_MAX_PAYLOAD 65507   /* 65535 - IPv4 header - UDP header */
#define TP__UDP6_MAX_PAYLOAD 65527   /* 65535 - UDP header (IPv6 payload length) */

/* A peer change from the control thread (len 0: remove the peer). */
struct tp__udp_peer_msg {
    int idx;
    socklen_t len;
    struct sockaddr_storage addr;
};

struct tp_ep_udp {
    struct tp_ep base;
    int fd;
    int family;
    int learn_peer;                 /* accept the first sender as the peer */
    int64_t peer_timeout_ns;        /* learn mode: re-learn after the peer was silent this long (0: never) */
    int64_t peer_seen_ns;           /* learn mode: the last datagram from the peer */
    unsigned peer_seq;              /* seqlock over peers[]: odd while the worker rewrites one */
    int udp_gso;                    /* UDP_SEGMENT usable: cleared when the kernel refuses */
    int udp_gro;                    /* UDP_GRO is on for the socket */
    int transform;                  /* a transform reads the datagrams first (tp_ep_args) */
    int unknown_sources;            /* strangers go on to the transform as TP_EP_NO_PEER */
    struct tp_fmt dev_fmt;          /* what a datagram must look like */
    struct tp_ring peer_msgs;       /* control -> worker: struct tp__udp_peer_msg */
    int msg_fd;                     /* eventfd: peer changes are waiting (polled as pfd[1]) */
    /* The peer table, owned by the worker: only the worker writes it (Python's
     * changes, learning, roaming), between batches or while reading one.
     * Peer k is present when peer_lens[k] != 0 (an absent one is all zero,
     * so no source matches it); npeers is one past the highest present index
     * (0: none), the bound of every loop over the table.
     * Publication to the control thread (inject, get_peer): each rewrite of
     * a slot happens under peer_seq (odd while writing), and readers copy the
     * slot under the same; npeers is stored with release after the slot is
     * written and loaded with acquire, a hint only: a slot read as absent
     * under the seqlock is absent. */
    int npeers;
    struct sockaddr_storage peers[TP_MAX_PEERS];
    socklen_t peer_lens[TP_MAX_PEERS];
};

static void udp_sockbuf(int fd, int bytes)
{
    if (bytes <= 0)
        return;
    /* The FORCE variants pass rmem_max / wmem_max as root; fall back without. */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

/* At tp_pump_free, when no control-thread call can run any more. */
static void udp_close(struct tp_ep *ep)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;

    if (u->fd >= 0)
        close(u->fd);
    u->fd = -1;
    tp_ring_free(&u->peer_msgs);
    if (u->msg_fd >= 0)
        close(u->msg_fd);
    u->msg_fd = -1;
}

static int udp_open(const struct tp_ep_args *a, struct tp_ep **out)
{
    const struct tp_sock_cfg *c = a->sock;
    struct tp_ep_udp *u = calloc(1, sizeof(*u));
    struct sockaddr_storage local;
    socklen_t local_len;
    int one = 1;

    if (!u)
        return -ENOMEM;
    u->base.ops = &tp_ep_udp_ops;
    u->base.sink = a->sink;
    u->family = c->family;
    u->learn_peer = c->learn_peer;
    u->peer_timeout_ns = c->learn_peer ? c->peer_timeout_ns : 0;
    u->dev_fmt = *a->dev_fmt;
    u->transform = a->transform;
    u->unknown_sources = a->transform && a->unknown_sources;
    u->fd = -1;
    u->msg_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u->msg_fd < 0 || tp_ring_init(&u->peer_msgs, TP_EP_PEER_RING, sizeof(struct tp__udp_peer_msg)) < 0) {
        int err = u->msg_fd < 0 ? errno : ENOMEM;
        udp_close(&u->base);
        free(u);
        return -err;
    }
    if (c->has_remote) {
        u->npeers = c->nremotes > 0 ? c->nremotes : 1;
        for (int r = 0; r < u->npeers; r++)
            u->peer_lens[r] = tp_sockaddr_make(&u->peers[r], c->family, c->remote_addr[r],
                                               c->remote_port[r] + (unsigned)a->idx);
    }
    local_len = tp_sockaddr_make(&local, c->family, c->local_addr,
                                 c->local_port ? c->local_port + (unsigned)a->idx : 0);
    u->fd = socket(c->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0 || (udp_sockbuf(u->fd, c->sock_buf), bind(u->fd, (struct sockaddr *)&local, local_len)) < 0) {
        int err = errno;
        udp_close(&u->base);
        free(u);
        return -err;
    }
    u->udp_gso = 1;
    /* Receive runs of datagrams as one buffer only when the device can take
     * them coalesced; otherwise they would only be cut up again. */
    u->udp_gro = a->want_gro && setsockopt(u->fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
    *out = &u->base;
    return 0;
}

static void udp_poll(struct tp_ep *ep, struct pollfd *pfd, short want, int *timeout_ms)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;

    (void)timeout_ms;
    pfd[0].fd = u->fd;
    pfd[0].events = want;
    pfd[1].fd = u->msg_fd;
    pfd[1].events = POLLIN;
}

static void udp_take_peers(struct tp_ep_udp *u);

static int udp_ready(struct tp_ep *ep, const struct pollfd *pfd)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;

    if (pfd[1].revents & POLLIN)   /* before this turn's batches: none sees half a change */
        udp_take_peers(u);
    return (pfd[0].revents & POLLIN ? TP_EP_READ : 0) |
           (pfd[0].revents & (POLLOUT | POLLERR | POLLHUP) ? TP_EP_WRITE : 0);
}

static int udp_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

static int udp_gro_size(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            return v;
        }
    }
    return 0;
}

/* Peer idx becomes `from` (len bytes), or absent (from NULL). Worker
 * thread only, the table's one writer: the slot is rewritten under the
 * seqlock, then npeers published (see struct tp_ep_udp). */
static void udp_write_peer(struct tp_ep_udp *u, int idx, const struct sockaddr_storage *from, socklen_t len)
{
    unsigned seq = u->peer_seq;
    int n = u->npeers;

    __atomic_store_n(&u->peer_seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (from) {
        memcpy(&u->peers[idx], from, sizeof(u->peers[idx]));
        u->peer_lens[idx] = len;
    } else {
        memset(&u->peers[idx], 0, sizeof(u->peers[idx]));
        u->peer_lens[idx] = 0;
    }
    __atomic_store_n(&u->peer_seq, seq + 2, __ATOMIC_RELEASE);
    if (from && idx >= n)
        n = idx + 1;
    while (n > 0 && u->peer_lens[n - 1] == 0)
        n--;
    __atomic_store_n(&u->npeers, n, __ATOMIC_RELEASE);   /* inject reads it on another thread */
}

/* Learn mode: `from` becomes the peer. */
static void udp_learn(struct tp_ep_udp *u, const struct sockaddr_storage *from, socklen_t len, int64_t now)
{
    udp_write_peer(u, 0, from, len);
    u->peer_seen_ns = now;
}

/* Which peer sent this datagram (its index), or -1 for a stranger. In
 * learn mode the first sender becomes the peer, and a new sender replaces
 * it only once it has been silent for the peer timeout: before that,
 * strangers cannot take the tunnel over (a restarted client comes back on a
 * new port). */
static int udp_accept_source(struct tp_ep_udp *u, const struct sockaddr_storage *from, socklen_t len,
                             int64_t now)
{
    struct sockaddr_storage old;

    if (u->npeers == 0) {
        if (!u->learn_peer)
            return -1;
        udp_learn(u, from, len, now);
        u->base.sink.note(u->base.sink.ctx, TP_EP_LEARNED, &u->peers[0]);
        return 0;
    }
    for (int k = 0; k < u->npeers; k++) {
        if (udp_same_addr(&u->peers[k], from)) {   /* an absent slot is zero: never the same */
            u->peer_seen_ns = now;
            return k;
        }
    }
    if (!u->learn_peer || !u->peer_timeout_ns || now - u->peer_seen_ns < u->peer_timeout_ns)
        return -1;   /* strangers cannot inject */
    old = u->peers[0];
    udp_learn(u, from, len, now);
    u->base.sink.note(u->base.sink.ctx, TP_EP_FORGOTTEN, &old);
    u->base.sink.note(u->base.sink.ctx, TP_EP_LEARNED, &u->peers[0]);
    return 0;
}

/* The peer changes Python posted, in order (worker thread, between batches). */
static void udp_take_peers(struct tp_ep_udp *u)
{
    struct tp__udp_peer_msg *m;
    uint64_t junk;

    (void)!read(u->msg_fd, &junk, sizeof(junk));
    while ((m = tp_ring_peek(&u->peer_msgs))) {
        udp_write_peer(u, m->idx, m->len ? &m->addr : NULL, m->len);
        tp_ring_release(&u->peer_msgs);   /* after the write: "applied" for peers_unapplied */
    }
}

static void udp_prepare_msgs(struct tp_ep_udp *u, struct tp__dir *d, int batch)
{
    memset(d->msgs, 0, sizeof(d->msgs[0]) * (size_t)batch);
    for (int i = 0; i < batch; i++) {
        struct msghdr *mh = &d->msgs[i].msg_hdr;
        d->iov[i].iov_base = d->bufs + (size_t)i * TP__BUF_SIZE + TP__HEADROOM;
        d->iov[i].iov_len = TP__PKT_MAX;
        mh->msg_iov = &d->iov[i];
        mh->msg_iovlen = 1;
        mh->msg_name = &d->names[i];
        mh->msg_namelen = sizeof(d->names[i]);
        if (u->udp_gro) {
            mh->msg_control = d->cmsgs + (size_t)i * TP__CMSG_SPACE;
            mh->msg_controllen = TP__CMSG_SPACE;
        }
    }
}

/* A received buffer into packets: its datagrams (several with UDP_GRO, see
 * tp_dgram.h) while the batch has room; the rest is dropped and counted,
 * never written past d->pkts. */
static void udp_cut(struct tp_ep_udp *u, struct tp__dir *d, uint8_t *base, const struct tp_dgram *g,
                    struct tp_dir_stats *st)
{
    struct tp_dgram_seg segs[TP_DGRAM_MAX_SEGS];
    uint32_t room = (uint32_t)(d->cap - d->n), n;

    if (g->len == 0) {
        TP__ADD(st->drops[TP_DROP_MALFORMED], 1);   /* an empty datagram: counted in as one */
        return;
    }
    n = tp_dgram_cut(g, segs, room < TP_DGRAM_MAX_SEGS ? room : TP_DGRAM_MAX_SEGS);
    if (n < g->nseg)
        TP__ADD(st->drops[TP_DROP_TOO_MANY_SEGS], g->nseg - n);
    for (uint32_t k = 0; k < n; k++) {
        if (!u->transform && !tp__plausible(&u->dev_fmt, base + segs[k].off, segs[k].len)) {
            TP__ADD(st->drops[TP_DROP_MALFORMED], 1);
            continue;
        }
        tp__pkt_set(&d->pkts[d->n++], base + segs[k].off, segs[k].len, -1);
    }
}

/* For a transform: packets first..d->n came from datagram i; which peer sent it. */
static void udp_tag(struct tp__dir *d, int first, int i, int peer)
{
    for (int k = first; k < d->n; k++) {
        d->pkts[k].src = (int16_t)i;
        d->pkts[k].route = (uint8_t)peer;
    }
}

static int udp_read(struct tp_ep *ep, struct tp__dir *d, int batch, struct tp_dir_stats *st)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;
    int64_t now;
    int i, r;

    tp__dir_reset(d);
    udp_prepare_msgs(u, d, batch);
    do {
        r = recvmmsg(u->fd, d->msgs, (unsigned)batch, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    TP__ADD(st->read_calls, 1);
    if (r < 0) {
        if (errno == EBADF || errno == ENOTSOCK || errno == EFAULT)
            return -errno;
        return 0;   /* EAGAIN, or an ICMP error the socket reported: nothing to read */
    }
    now = u->learn_peer ? tp__now_ns() : 0;
    for (i = 0; i < r; i++) {
        struct msghdr *mh = &d->msgs[i].msg_hdr;
        struct tp_dgram g = tp_dgram_of(d->msgs[i].msg_len, u->udp_gro ? udp_gro_size(mh) : 0);

        TP__ADD(st->read_bytes, g.len);
        TP__ADD(st->pkts_in, g.nseg);
        TP__ADD(st->bytes_in, g.len);
        if (mh->msg_flags & MSG_TRUNC) {
            TP__ADD(st->drops[TP_DROP_TOO_BIG], g.nseg);
            continue;
        }
        int peer = udp_accept_source(u, &d->names[i], mh->msg_namelen, now);
        if (peer < 0 && !u->unknown_sources) {
            TP__ADD(st->drops[TP_DROP_UNKNOWN_PEER], g.nseg);
            continue;
        }
        int first = d->n;
        udp_cut(u, d, d->iov[i].iov_base, &g, st);
        if (u->transform)
            udp_tag(d, first, i, peer < 0 ? TP_EP_NO_PEER : peer);
    }
    if (d->n)
        TP__ADD(st->batches, 1);
    return d->n;
}

/* How many packets from `i` on go out as one UDP_SEGMENT message: segments
 * of one split, all the same size but the last, within the kernel's limits. */
static int udp_group(const struct tp_ep_udp *u, const struct tp__dir *d, int i)
{
    const struct tp__pkt *p = &d->pkts[i];
    uint32_t size = p->hdrlen + p->len, total = size;
    uint32_t max = TP__UDP4_MAX_PAYLOAD;
    int k = i + 1;

    if (!u->udp_gso || p->group < 0)
        return 1;
    if (u->family == AF_INET6 &&   /* an IPv4 peer of a dual-stack socket: IPv4's limit */
        !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)&u->peers[p->route])->sin6_addr))
        max = TP__UDP6_MAX_PAYLOAD;
    while (k < d->n && k - i < TP__UDP_MAX_SEGS) {
        const struct tp__pkt *q = &d->pkts[k];
        uint32_t qs = q->hdrlen + q->len;
        if (q->group != p->group || q->route != p->route || qs > size || total + qs > max)
            break;
        total += qs;
        k++;
        if (qs < size)
            break;   /* a short segment ends the message */
    }
    return k - i;
}

/* Message m of a sendmmsg: packets i..i+g to their peer, with UDP_SEGMENT
 * when it carries several. *niov advances over the iovecs it takes. */
static void udp_build_msg(struct tp_ep_udp *u, struct tp__dir *d, int m, int i, int g, int *niov)
{
    struct msghdr *mh = &d->msgs[m].msg_hdr;
    int route = d->pkts[i].route;   /* present: udp_drop_absent */

    memset(&d->msgs[m], 0, sizeof(d->msgs[m]));
    mh->msg_iov = &d->iov[*niov];
    for (int k = i; k < i + g; k++) {
        if (d->pkts[k].hdrlen) {
            d->iov[*niov].iov_base = d->pkts[k].hdr;
            d->iov[(*niov)++].iov_len = d->pkts[k].hdrlen;
        }
        d->iov[*niov].iov_base = d->pkts[k].data;
        d->iov[(*niov)++].iov_len = d->pkts[k].len;
    }
    mh->msg_iovlen = (size_t)(&d->iov[*niov] - mh->msg_iov);
    mh->msg_name = &u->peers[route];
    mh->msg_namelen = u->peer_lens[route];
    if (g > 1) {
        uint8_t *buf = d->cmsgs + (size_t)m * TP__CMSG_SPACE;
        struct cmsghdr *c;
        uint16_t segsz = (uint16_t)(d->pkts[i].hdrlen + d->pkts[i].len);
        memset(buf, 0, TP__CMSG_SPACE);
        mh->msg_control = buf;
        mh->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        c = CMSG_FIRSTHDR(mh);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        memcpy(CMSG_DATA(c), &segsz, sizeof(segsz));
    }
}

/* What a refused sendmmsg means: 1 to try again (one datagram at a time),
 * 0 after dropping the first message, -errno to end the worker. */
static int udp_refused(struct tp_ep_udp *u, struct tp__dir *d, int count, struct tp_dir_stats *st)
{
    if (errno == EBADF || errno == ENOTSOCK)
        return -errno;
    if ((errno == EIO || errno == EINVAL || errno == EMSGSIZE) && count > 1 && u->udp_gso) {
        /* The kernel will not segment on this path (a segment above the path
         * MTU, xfrm, an old kernel): go one datagram at a time, which it can
         * still fragment. */
        u->udp_gso = 0;
        TP__ADD(st->gso_fallbacks, 1);
        return 1;
    }
    /* This message was refused (EMSGSIZE, ENOBUFS, unreachable, ...): drop it. */
    TP__ADD(st->drops[errno == EMSGSIZE ? TP_DROP_TOO_BIG :
                      errno == ENOBUFS ? TP_DROP_ENOBUFS : TP_DROP_WRITE_ERROR], count);
    d->next += count;
    return 0;
}

/* Packets from d->next on routed to a peer that is absent (removed, never
 * set, an index past the table) are dropped as no_peer; the others close
 * up in order. Run on every write: a batch parked on a full socket may see
 * the table change before it goes out. */
static void udp_drop_absent(const struct tp_ep_udp *u, struct tp__dir *d, struct tp_dir_stats *st)
{
    int out = d->next;

    for (int k = d->next; k < d->n; k++) {
        uint8_t r = d->pkts[k].route;
        if (r < u->npeers && u->peer_lens[r]) {
            if (out != k)
                d->pkts[out] = d->pkts[k];
            out++;
        } else {
            TP__ADD(st->drops[TP_DROP_NO_PEER], 1);
        }
    }
    d->n = out;
}

static int udp_write(struct tp_ep *ep, struct tp__dir *d, struct tp_dir_stats *st)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;
    int done = 0;

    if (u->npeers == 0) {
        tp__dir_drop_rest(d, st, TP_DROP_NO_PEER);
        return 0;
    }
    udp_drop_absent(u, d, st);
    while (d->next < d->n) {
        int nmsg = 0, niov = 0, r, i = d->next;
        int counts[TP_MAX_BATCH];

        while (i < d->n && nmsg < TP_MAX_BATCH) {
            int g = udp_group(u, d, i);
            udp_build_msg(u, d, nmsg, i, g, &niov);
            counts[nmsg++] = g;
            i += g;
        }
        r = sendmmsg(u->fd, d->msgs, (unsigned)nmsg, MSG_DONTWAIT);
        TP__ADD(st->write_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                d->pending = 1;
                return done;
            }
            if ((r = udp_refused(u, d, counts[0], st)) < 0)
                return r;
            continue;
        }
        for (int m = 0; m < r; m++) {
            for (int k = d->next; k < d->next + counts[m]; k++)
                TP__ADD(st->bytes_out, d->pkts[k].hdrlen + d->pkts[k].len);
            TP__ADD(st->write_bytes, d->msgs[m].msg_len);
            TP__ADD(st->pkts_out, counts[m]);
            d->next += counts[m];
            done += counts[m];
        }
    }
    d->pending = 0;
    return done;
}

/* Control thread: a copy of peer idx the worker was not rewriting. */
static socklen_t udp_peer_copy(struct tp_ep_udp *u, int idx, struct sockaddr_storage *to)
{
    socklen_t len;
    unsigned seq;

    do {
        while ((seq = __atomic_load_n(&u->peer_seq, __ATOMIC_ACQUIRE)) & 1)
            ;
        memcpy(to, &u->peers[idx], sizeof(*to));
        len = u->peer_lens[idx];
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    } while (__atomic_load_n(&u->peer_seq, __ATOMIC_RELAXED) != seq);
    return len;
}

/* From the control thread. sendto is safe next to the worker's own sends:
 * each is one datagram. */
static int udp_inject(struct tp_ep *ep, int route, const uint8_t *data, size_t len)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;
    int n = __atomic_load_n(&u->npeers, __ATOMIC_ACQUIRE);
    struct sockaddr_storage to;
    socklen_t to_len;
    ssize_t r;

    if (route < 0 || route >= n || u->fd < 0)
        return -EDESTADDRREQ;
    to_len = udp_peer_copy(u, route, &to);
    if (!to_len)
        return -EDESTADDRREQ;   /* removed */
    r = sendto(u->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&to, to_len);
    return r < 0 ? -errno : 0;
}

static int udp_get_peer(struct tp_ep *ep, int idx, struct sockaddr_storage *out, socklen_t *len)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;

    if (idx < 0 || idx >= TP_MAX_PEERS || idx >= __atomic_load_n(&u->npeers, __ATOMIC_ACQUIRE))
        return -ENOENT;
    *len = udp_peer_copy(u, idx, out);
    return *len ? 0 : -ENOENT;
}

/* Control thread (one producer at a time): queue a change for the worker. */
static int udp_post_peer(struct tp_ep *ep, int idx, const struct sockaddr_storage *addr, socklen_t len)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;
    struct tp__udp_peer_msg *m;
    uint64_t one = 1;

    if (u->learn_peer)
        return -EOPNOTSUPP;   /* the worker learns its peer: Python does not set it */
    if (idx < 0 || idx >= TP_MAX_PEERS || (addr && (addr->ss_family != u->family || !len ||
                                                    len > sizeof(*addr))))
        return -EINVAL;
    if (!(m = tp_ring_reserve(&u->peer_msgs)))
        return -EAGAIN;
    memset(m, 0, sizeof(*m));
    m->idx = idx;
    if (addr) {
        memcpy(&m->addr, addr, len);
        m->len = len;
    }
    tp_ring_publish(&u->peer_msgs);
    (void)!write(u->msg_fd, &one, sizeof(one));
    return 0;
}

static unsigned udp_peers_unapplied(const struct tp_ep *ep)
{
    return tp_ring_count(&((const struct tp_ep_udp *)ep)->peer_msgs);
}

/* Worker thread, from the transform stage: peer idx authenticated a
 * datagram from `from`; it moves there (the sender's address wins, the
 * WireGuard way). */
static int udp_roam(struct tp_ep *ep, int idx, const struct sockaddr_storage *from)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;
    socklen_t len = from->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

    if (idx < 0 || idx >= u->npeers || !u->peer_lens[idx] || from->ss_family != u->family)
        return -EINVAL;
    if (udp_same_addr(&u->peers[idx], from))
        return 0;
    udp_write_peer(u, idx, from, len);
    return 1;
}

static int udp_inject_to(struct tp_ep *ep, const struct sockaddr_storage *to, socklen_t to_len,
                         const uint8_t *data, size_t len)
{
    struct tp_ep_udp *u = (struct tp_ep_udp *)ep;
    ssize_t r;

    if (u->fd < 0)
        return -EBADF;
    if (to->ss_family != u->family)
        return -EAFNOSUPPORT;
    r = sendto(u->fd, data, len, MSG_DONTWAIT, (const struct sockaddr *)to, to_len);
    return r < 0 ? -errno : 0;
}

/* Control thread: the socket stays open until the pump is freed. */
static int udp_local_addr(struct tp_ep *ep, struct sockaddr_storage *out)
{
    socklen_t len = sizeof(*out);

    return getsockname(((struct tp_ep_udp *)ep)->fd, (struct sockaddr *)out, &len) < 0 ? -errno : 0;
}

const struct tp_ep_ops tp_ep_udp_ops = {
    .open = udp_open,
    .close = udp_close,
    .poll = udp_poll,
    .ready = udp_ready,
    .read = udp_read,
    .write = udp_write,
    .inject = udp_inject,
    .inject_to = udp_inject_to,
    .post_peer = udp_post_peer,
    .peers_unapplied = udp_peers_unapplied,
    .get_peer = udp_get_peer,
    .roam = udp_roam,
    .local_addr = udp_local_addr,
    .read_where = "endpoint read",
};
