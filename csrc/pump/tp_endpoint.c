/* Batch I/O for each kind of endpoint: TUN/TAP queues, UDP sockets (mmsg,
 * UDP_SEGMENT, UDP_GRO) and TCP streams with simpletun's framing (2-byte
 * big-endian length). */
#define _GNU_SOURCE
#include "tp_compat.h"
#include "tp_pump_internal.h"
#include "tp_sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#define TP__UDP_MAX_SEGS 64

static void tp__drop(struct tp_dir_stats *st, enum tp_drop reason, uint64_t n)
{
    TP__ADD(st->drops[reason], n);
}

void tp__dir_drop_rest(struct tp__dir *d, int to_device, struct tp_dir_stats *st, enum tp_drop reason)
{
    uint64_t left = 0;

    if (to_device) {
        for (int u = d->next; u < d->nunits; u++)
            left += (uint64_t)d->units[u].count;
    } else if (d->next < d->n) {
        left = (uint64_t)(d->n - d->next);
    }
    if (left)
        tp__drop(st, reason, left);
    d->n = d->next = d->nunits = 0;
    d->off = 0;
    d->pending = 0;
}

/* A packet from the network must look like what the device carries. */
static int tp__plausible(const struct tp_fmt *dev, const uint8_t *p, uint32_t len)
{
    if (dev->tap)
        return len >= 14;
    if (len >= 20 && (p[0] >> 4) == 4)
        return 1;
    return len >= 40 && (p[0] >> 4) == 6;
}

static void tp__pkt_set(struct tp__pkt *p, uint8_t *data, uint32_t len, int32_t group)
{
    p->route = 0;
    p->released = 0;
    p->data = data;
    p->len = len;
    p->hdr = NULL;
    p->hdrlen = 0;
    p->pre = NULL;
    p->prelen = 0;
    p->group = group;
}

/* ---- TUN/TAP -------------------------------------------------------------- */

int tp__tun_read(int fd, const struct tp_fmt *fmt, struct tp__dir *d, int batch,
                 struct tp_dir_stats *st)
{
    int prelen = tp_fmt_prefix_len(fmt);

    d->n = d->next = d->nunits = 0;
    d->off = 0;
    while (d->n < batch) {
        uint8_t *start = d->bufs + (size_t)d->n * TP__BUF_SIZE + TP__HEADROOM - prelen;
        ssize_t r = read(fd, start, TP__BUF_SIZE - (TP__HEADROOM - prelen));

        TP__ADD(st->read_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -errno;
        }
        TP__ADD(st->read_bytes, r);
        if (r <= prelen) {
            TP__ADD(st->pkts_in, 1);
            tp__drop(st, TP_DROP_MALFORMED, 1);
            continue;
        }
        struct tp__pkt *p = &d->pkts[d->n];
        tp__pkt_set(p, start + prelen, (uint32_t)(r - prelen), d->n);
        p->pre = start;
        p->prelen = (uint32_t)prelen;
        d->n++;
    }
    if (d->n)
        TP__ADD(st->batches, 1);
    return d->n;
}

/* The sink device's prefix for one unit, in iov. Returns -1 when it is
 * there, or a drop reason. */
static int tp__make_prefix(const struct tp_fmt *dst, const struct tp_fmt *src,
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
    if (!dst->vnet_hdr_sz && (u->count > 1 || (svnet && (svnet[0] || svnet[1]))))
        return TP_DROP_OFFLOAD;    /* cannot happen once split; kept as a guard */
    if (dst->pi) {
        uint16_t proto = 0;
        const uint8_t *first = p->hdr ? p->hdr : p->data;
        if (p->pre && src && src->pi)
            memcpy(&proto, p->pre + 2, 2);
        else if (dst->tap && (p->hdr ? p->hdrlen : p->len) >= 14)
            memcpy(&proto, first + 12, 2);
        else if (!dst->tap)
            proto = htons((first[0] >> 4) == 6 ? 0x86DD : 0x0800);
        o[0] = o[1] = 0;
        memcpy(o + 2, &proto, 2);
        o += 4;
    }
    if (dst->vnet_hdr_sz) {
        if (u->count > 1)
            tp_vnet_hdr_write(o, &u->vh, dst->vnet_hdr_sz);
        else {
            memset(o, 0, (size_t)dst->vnet_hdr_sz);
            if (svnet)
                memcpy(o, svnet, 10);   /* the fields both sizes share */
        }
    }
    iov->iov_base = scratch;
    iov->iov_len = (size_t)dlen;
    return -1;
}

int tp__tun_write(int fd, const struct tp_fmt *dst, const struct tp_fmt *src,
                  struct tp__dir *d, struct tp_dir_stats *st)
{
    int done = 0;

    while (d->next < d->nunits) {
        struct tp_gro_unit *u = &d->units[d->next];
        struct tp__pkt *p = &d->pkts[u->first];
        struct iovec iov[3 + TP_VNET_MAX_SEGS];
        int niov = 1, reason;
        size_t total = 0;

        reason = tp__make_prefix(dst, src, p, u, d->prefix[d->next], &iov[0]);
        if (reason >= 0) {
            tp__drop(st, reason, (uint64_t)u->count);
            d->next++;
            continue;
        }
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
        for (int k = 1; k < niov; k++)
            total += iov[k].iov_len;
        ssize_t r = writev(fd, iov, niov);
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
            tp__drop(st, errno == ENOBUFS ? TP_DROP_ENOBUFS :
                         errno == EINVAL ? TP_DROP_MALFORMED : TP_DROP_WRITE_ERROR, (uint64_t)u->count);
            d->next++;
            continue;
        }
        TP__ADD(st->write_bytes, r);
        TP__ADD(st->pkts_out, u->count);
        TP__ADD(st->bytes_out, total);
        if (u->count > 1)
            TP__ADD(st->gro_built, 1);
        d->next++;
        done++;
    }
    d->pending = 0;
    return done;
}

/* ---- UDP ------------------------------------------------------------------ */

static int tp__same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
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

static int tp__gro_size(struct msghdr *mh)
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

int tp__udp_read(struct tp__worker *w, const struct tp_fmt *dev, struct tp__dir *d, int batch,
                 struct tp_dir_stats *st)
{
    struct mmsghdr *msgs = d->msgs;
    struct iovec *iov = d->iov;
    int i, r;

    d->n = d->next = d->nunits = 0;
    d->off = 0;
    memset(msgs, 0, sizeof(msgs[0]) * (size_t)batch);
    for (i = 0; i < batch; i++) {
        iov[i].iov_base = d->bufs + (size_t)i * TP__BUF_SIZE + TP__HEADROOM;
        iov[i].iov_len = TP__PKT_MAX;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &d->names[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(d->names[i]);
        if (w->udp_gro) {
            msgs[i].msg_hdr.msg_control = d->cmsgs + (size_t)i * TP__CMSG_SPACE;
            msgs[i].msg_hdr.msg_controllen = TP__CMSG_SPACE;
        }
    }
    do {
        r = recvmmsg(w->peer_fd, msgs, (unsigned)batch, MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    TP__ADD(st->read_calls, 1);
    if (r < 0) {
        if (errno == EBADF || errno == ENOTSOCK || errno == EFAULT)
            return -errno;
        return 0;   /* EAGAIN, or an ICMP error the socket reported: nothing to read */
    }
    for (i = 0; i < r; i++) {
        uint32_t len = msgs[i].msg_len, seg = len, nseg;
        uint8_t *base = iov[i].iov_base;

        TP__ADD(st->read_bytes, len);
        if (w->udp_gro) {
            int g = tp__gro_size(&msgs[i].msg_hdr);
            if (g > 0 && (uint32_t)g < len)
                seg = (uint32_t)g;
        }
        nseg = seg ? (len + seg - 1) / seg : 1;
        TP__ADD(st->pkts_in, nseg);
        TP__ADD(st->bytes_in, len);
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            tp__drop(st, TP_DROP_TOO_BIG, nseg);
            continue;
        }
        if (!w->peer_known) {
            if (!w->pump->cfg.sock.learn_peer) {
                tp__drop(st, TP_DROP_UNKNOWN_PEER, nseg);
                continue;
            }
            memcpy(&w->peer, &d->names[i], sizeof(w->peer));
            w->peer_len = msgs[i].msg_hdr.msg_namelen;
            w->peers[0] = w->peer;
            w->peer_lens[0] = w->peer_len;
            w->npeers = 1;
            w->peer_known = 1;
            TP__ADD(w->st.peer_learned, 1);
            tp__post_peer(w, TP_EV_PEER_UP, &w->peer);
        } else {
            int known = 0;
            for (int k = 0; k < w->npeers && !known; k++)
                known = tp__same_addr(&w->peers[k], &d->names[i]);
            if (!known) {
                tp__drop(st, TP_DROP_UNKNOWN_PEER, nseg);   /* strangers cannot inject */
                continue;
            }
        }
        /* UDP_GRO hands over a run of equal datagrams in one buffer: cut it. */
        for (uint32_t off = 0; off < len; off += seg) {
            uint32_t l = len - off < seg ? len - off : seg;
            if (!tp__plausible(dev, base + off, l)) {
                tp__drop(st, TP_DROP_MALFORMED, 1);
                continue;
            }
            tp__pkt_set(&d->pkts[d->n++], base + off, l, -1);
        }
    }
    if (d->n)
        TP__ADD(st->batches, 1);
    return d->n;
}

/* How many packets from `i` on go out as one UDP_SEGMENT message: segments
 * of one split, all the same size but the last, within the kernel's limits. */
static int tp__udp_group(const struct tp__worker *w, const struct tp__dir *d, int i)
{
    const struct tp__pkt *p = &d->pkts[i];
    uint32_t size = p->hdrlen + p->len, total = size;
    uint32_t max = w->pump->cfg.sock.family == AF_INET ? 65507 : 65527;
    int k = i + 1;

    if (!w->udp_gso || p->group < 0)
        return 1;
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

int tp__udp_write(struct tp__worker *w, struct tp__dir *d, struct tp_dir_stats *st)
{
    int done = 0;

    if (!w->peer_known) {
        tp__dir_drop_rest(d, 0, st, TP_DROP_NO_PEER);
        return 0;
    }
    while (d->next < d->n) {
        int nmsg = 0, niov = 0, r, i = d->next;
        int counts[TP_MAX_BATCH];

        while (i < d->n && nmsg < TP_MAX_BATCH) {
            int g = tp__udp_group(w, d, i);
            struct msghdr *mh = &d->msgs[nmsg].msg_hdr;
            memset(&d->msgs[nmsg], 0, sizeof(d->msgs[nmsg]));
            mh->msg_iov = &d->iov[niov];
            for (int k = i; k < i + g; k++) {
                if (d->pkts[k].hdrlen) {
                    d->iov[niov].iov_base = d->pkts[k].hdr;
                    d->iov[niov++].iov_len = d->pkts[k].hdrlen;
                }
                d->iov[niov].iov_base = d->pkts[k].data;
                d->iov[niov++].iov_len = d->pkts[k].len;
            }
            mh->msg_iovlen = (size_t)(&d->iov[niov] - mh->msg_iov);
            int route = d->pkts[i].route < w->npeers ? d->pkts[i].route : 0;
            mh->msg_name = &w->peers[route];
            mh->msg_namelen = w->peer_lens[route];
            if (g > 1) {
                uint8_t *buf = d->cmsgs + (size_t)nmsg * TP__CMSG_SPACE;
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
            counts[nmsg++] = g;
            i += g;
        }
        r = sendmmsg(w->peer_fd, d->msgs, (unsigned)nmsg, MSG_DONTWAIT);
        TP__ADD(st->write_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                d->pending = 1;
                return done;
            }
            if (errno == EBADF || errno == ENOTSOCK)
                return -errno;
            if ((errno == EIO || errno == EINVAL || errno == EMSGSIZE) && counts[0] > 1 && w->udp_gso) {
                /* The kernel will not segment on this path (a segment above the
                 * path MTU, xfrm, an old kernel): go one datagram at a time, which
                 * it can still fragment. */
                w->udp_gso = 0;
                TP__ADD(st->gso_fallbacks, 1);
                continue;
            }
            /* This message was refused (EMSGSIZE, ENOBUFS, unreachable, ...): drop it. */
            tp__drop(st, errno == EMSGSIZE ? TP_DROP_TOO_BIG :
                         errno == ENOBUFS ? TP_DROP_ENOBUFS : TP_DROP_WRITE_ERROR, (uint64_t)counts[0]);
            d->next += counts[0];
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

/* ---- TCP stream ----------------------------------------------------------- */

static void tp__sockbufs(int fd, int bytes)
{
    if (bytes <= 0)
        return;
    /* The FORCE variants pass rmem_max / wmem_max as root; fall back without. */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

static void tp__nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int tp__sock_setup(struct tp__worker *w, int want_gro)
{
    const struct tp_sock_cfg *c = &w->pump->cfg.sock;
    int kind = w->pump->cfg.kind;
    unsigned lport = c->local_port ? c->local_port + (unsigned)w->idx : 0;
    int fd, one = 1;

    w->local_len = tp_sockaddr_make(&w->local, c->family, c->local_addr, lport);
    if (c->has_remote) {
        w->npeers = c->nremotes > 0 ? c->nremotes : 1;
        for (int r = 0; r < w->npeers; r++)
            w->peer_lens[r] = tp_sockaddr_make(&w->peers[r], c->family, c->remote_addr[r],
                                           c->remote_port[r] + (unsigned)w->idx);
        w->peer = w->peers[0];
        w->peer_len = w->peer_lens[0];
        w->peer_known = 1;
    }
    if (kind == TP_KIND_TCP && !c->listen)
        return 0;   /* the worker connects, and reconnects, by itself */

    fd = socket(c->family, (kind == TP_KIND_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (kind == TP_KIND_TCP)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    tp__sockbufs(fd, c->sock_buf);
    if (bind(fd, (struct sockaddr *)&w->local, w->local_len) < 0 ||
        (kind == TP_KIND_TCP && listen(fd, 8) < 0)) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (kind == TP_KIND_UDP) {
        int one_gro = 1;
        w->peer_fd = fd;
        w->own_peer_fd = 1;
        w->udp_gso = 1;
        /* Receive runs of datagrams as one buffer only when the device can
         * take them coalesced; otherwise they would only be cut up again. */
        w->udp_gro = want_gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one_gro, sizeof(one_gro)) == 0;
    } else {
        w->listen_fd = fd;
    }
    return 0;
}

static void tp__tcp_up(struct tp__worker *w, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    memset(&ss, 0, sizeof(ss));
    (void)getpeername(fd, (struct sockaddr *)&ss, &len);
    if (w->pump->cfg.sock.listen) {
        w->peer = ss;
        w->peer_len = len;
    }
    tp__post_peer(w, TP_EV_PEER_UP, &ss);
    w->peer_fd = fd;
    w->own_peer_fd = 1;
    w->tcp = TP__TCP_UP;
    w->backoff_ms = 100;
    w->stream_len = w->stream_pos = 0;
    w->stream_bad = 0;
    tp__nodelay(fd);
    TP__ADD(w->st.connects, 1);
}

static void tp__tcp_retry_later(struct tp__worker *w)
{
    w->tcp = TP__TCP_DOWN;
    w->next_connect_ns = tp__now_ns() + (int64_t)w->backoff_ms * 1000000;
    w->backoff_ms = w->backoff_ms * 2 > 5000 ? 5000 : w->backoff_ms * 2;
}

void tp__tcp_connect(struct tp__worker *w)
{
    const struct tp_sock_cfg *c = &w->pump->cfg.sock;
    int fd = socket(c->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        tp__tcp_retry_later(w);
        return;
    }
    tp__sockbufs(fd, c->sock_buf);
    if (c->local_port) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        (void)bind(fd, (struct sockaddr *)&w->local, w->local_len);
    }
    if (connect(fd, (struct sockaddr *)&w->peer, w->peer_len) == 0) {
        tp__tcp_up(w, fd);
    } else if (errno == EINPROGRESS) {
        w->peer_fd = fd;
        w->own_peer_fd = 1;
        w->tcp = TP__TCP_CONNECTING;
    } else {
        close(fd);
        tp__tcp_retry_later(w);
    }
}

void tp__tcp_connected(struct tp__worker *w)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(w->peer_fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0) {
        int fd = w->peer_fd;
        tp__tcp_up(w, fd);
        return;
    }
    close(w->peer_fd);
    w->peer_fd = -1;
    tp__tcp_retry_later(w);
}

void tp__tcp_accept(struct tp__worker *w)
{
    int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0)
        return;
    /* A new client replaces the old connection: after a crash or a silent
     * network change the old one may never report its death. */
    if (w->peer_fd >= 0)
        tp__tcp_drop_conn(w, 0);
    tp__sockbufs(fd, w->pump->cfg.sock.sock_buf);
    tp__tcp_up(w, fd);
}

void tp__tcp_drop_conn(struct tp__worker *w, int protocol_error)
{
    if (w->peer_fd >= 0) {
        close(w->peer_fd);
        w->peer_fd = -1;
    }
    if (w->tcp == TP__TCP_UP) {
        TP__ADD(w->st.disconnects, 1);
        tp__post_peer(w, TP_EV_PEER_DOWN, &w->peer);
    }
    if (protocol_error)
        TP__ADD(w->st.protocol_errors, 1);
    tp__dir_drop_rest(&w->d[0], 0, &w->st.dir[0], TP_DROP_NO_CONNECTION);
    tp__dir_drop_rest(&w->d[1], 1, &w->st.dir[1], TP_DROP_NO_CONNECTION);
    w->stream_len = w->stream_pos = 0;
    w->stream_bad = 0;
    if (w->pump->cfg.sock.listen)
        w->tcp = TP__TCP_DOWN;
    else
        tp__tcp_retry_later(w);
}


int tp__tcp_has_frame(const struct tp__worker *w)
{
    size_t avail = w->stream_len - w->stream_pos;
    const uint8_t *s = w->stream + w->stream_pos;

    if (w->tcp != TP__TCP_UP)
        return 0;
    if (w->stream_bad)
        return 1;
    if (avail < 2)
        return 0;
    return avail >= 2 + (size_t)((s[0] << 8) | s[1]);
}

int tp__tcp_frames(struct tp__worker *w, const struct tp_fmt *dev, struct tp__dir *d, int batch,
                   struct tp_dir_stats *st)
{
    unsigned max_frame = w->pump->cfg.sock.max_frame;

    d->n = d->next = d->nunits = 0;
    d->off = 0;
    while (d->n < batch && !w->stream_bad) {
        size_t avail = w->stream_len - w->stream_pos;
        uint8_t *s = w->stream + w->stream_pos;
        unsigned flen;

        if (avail < 2)
            break;
        flen = ((unsigned)s[0] << 8) | s[1];
        if (flen == 0 || flen > max_frame) {
            w->stream_bad = 1;   /* the stream is out of step: close after this batch */
            break;
        }
        if (avail < 2 + (size_t)flen)
            break;
        w->stream_pos += 2 + flen;
        TP__ADD(st->pkts_in, 1);
        TP__ADD(st->bytes_in, flen);
        if (!tp__plausible(dev, s + 2, flen)) {
            tp__drop(st, TP_DROP_MALFORMED, 1);
            continue;
        }
        tp__pkt_set(&d->pkts[d->n++], s + 2, flen, -1);
    }
    if (d->n)
        TP__ADD(st->batches, 1);
    return d->n;
}

int tp__tcp_read(struct tp__worker *w, const struct tp_fmt *dev, struct tp__dir *d, int batch,
                 struct tp_dir_stats *st)
{
    ssize_t r;

    if (w->tcp != TP__TCP_UP)
        return 0;
    do {
        r = read(w->peer_fd, w->stream + w->stream_len, TP__STREAM_SIZE - w->stream_len);
    } while (r < 0 && errno == EINTR);
    TP__ADD(st->read_calls, 1);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        tp__tcp_drop_conn(w, 0);   /* closed or reset by the peer */
        return 0;
    }
    if (r > 0) {
        w->stream_len += (size_t)r;
        TP__ADD(st->read_bytes, r);
    }
    return tp__tcp_frames(w, dev, d, batch, st);
}

/* The batch from the stream went out: keep only the bytes not yet framed. */
void tp__tcp_consumed(struct tp__worker *w)
{
    if (w->stream_bad) {
        tp__tcp_drop_conn(w, 1);
        return;
    }
    if (w->stream_pos == 0)
        return;
    memmove(w->stream, w->stream + w->stream_pos, w->stream_len - w->stream_pos);
    w->stream_len -= w->stream_pos;
    w->stream_pos = 0;
}

int tp__tcp_write(struct tp__worker *w, struct tp__dir *d, struct tp_dir_stats *st)
{
    int done = 0;

    if (w->tcp != TP__TCP_UP) {
        tp__dir_drop_rest(d, 0, st, TP_DROP_NO_CONNECTION);
        return 0;
    }
    while (d->next < d->n) {
        struct iovec *iov = d->iov;
        int i, k = 0, first = 0;
        size_t skip = d->off;
        struct msghdr mh;
        ssize_t r;

        for (i = d->next; i < d->n; i++) {
            struct tp__pkt *p = &d->pkts[i];
            uint32_t flen = p->hdrlen + p->len;
            if (flen > TP__PKT_MAX) {   /* cannot be framed in 2 bytes */
                if (i == d->next && d->off == 0) {
                    tp__drop(st, TP_DROP_TOO_BIG, 1);
                    d->next++;
                    continue;
                }
                break;
            }
            d->lenbe[i] = htons((uint16_t)flen);
            iov[k].iov_base = (uint8_t *)&d->lenbe[i];
            iov[k++].iov_len = 2;
            iov[k].iov_base = p->hdr;
            iov[k++].iov_len = p->hdrlen;
            iov[k].iov_base = p->data;
            iov[k++].iov_len = p->len;
            if (k >= 1020)
                break;   /* IOV_MAX */
        }
        if (k == 0)
            continue;
        /* Skip what an earlier partial send already wrote. */
        while (skip >= iov[first].iov_len) {
            skip -= iov[first].iov_len;
            first++;
        }
        iov[first].iov_base = (uint8_t *)iov[first].iov_base + skip;
        iov[first].iov_len -= skip;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov + first;
        mh.msg_iovlen = (size_t)(k - first);
        r = sendmsg(w->peer_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        TP__ADD(st->write_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                d->pending = 1;
                return done;
            }
            tp__tcp_drop_conn(w, 0);
            return done;
        }
        TP__ADD(st->write_bytes, r);
        size_t sent = (size_t)r + d->off;
        while (d->next < d->n && sent >= 2 + (size_t)d->pkts[d->next].hdrlen + d->pkts[d->next].len) {
            struct tp__pkt *p = &d->pkts[d->next];
            sent -= 2 + (size_t)p->hdrlen + p->len;
            TP__ADD(st->pkts_out, 1);
            TP__ADD(st->bytes_out, p->hdrlen + p->len);
            d->next++;
            done++;
        }
        d->off = sent;
    }
    d->pending = 0;
    d->off = 0;
    return done;
}
