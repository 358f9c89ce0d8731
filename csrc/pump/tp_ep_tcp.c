/* A TCP stream as an endpoint, with simpletun's framing (tp_frame.h): a
 * server takes one connection at a time (a new client replaces the old; with
 * a configured peer, connections from any other address are closed at once),
 * a client connects and reconnects by itself with backoff. Frames are read
 * into a stream buffer and handed on in place. */
#define _GNU_SOURCE
#include "tp_endpoint.h"
#include "tp_frame.h"
#include "tp_sockaddr.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define TP__STREAM_SIZE (256 * 1024)    /* receive buffer: several frames */
#define TP__IOV_LIMIT (IOV_MAX - 4)     /* a send stops before this many iovecs (3 per frame) */
#define TP__LISTEN_BACKLOG 8
#define TP__ACCEPTS_PER_TURN TP__LISTEN_BACKLOG   /* a flood of strangers cannot hold the worker */
#define TP__BACKOFF_MIN_MS 100
#define TP__BACKOFF_MAX_MS 5000

enum tp__tcp_state { TP__TCP_DOWN, TP__TCP_CONNECTING, TP__TCP_UP };

struct tp_ep_tcp {
    struct tp_ep base;
    int fd;                         /* the connection, or -1 */
    int listen_fd;                  /* server, or -1 */
    int listen;
    int family;
    int sock_buf;
    unsigned max_frame;
    struct tp_fmt dev_fmt;          /* what a frame must look like */
    int transform;                  /* a transform reads the frames first (tp_ep_args) */
    enum tp__tcp_state state;
    int64_t next_connect_ns;
    int backoff_ms;
    struct sockaddr_storage peer, local;
    socklen_t peer_len, local_len;
    int only_peer;                  /* server: accept only `allowed` (port 0: any port) */
    struct sockaddr_storage allowed;
    int has_local_port;
    size_t stream_len, stream_pos;  /* stream[pos..len): bytes received, not yet framed */
    int stream_bad;                 /* a bad frame length: close after this batch */
    uint8_t stream[];               /* TP__STREAM_SIZE */
};

static void tcp_sockbufs(int fd, int bytes)
{
    if (bytes <= 0)
        return;
    /* The FORCE variants pass rmem_max / wmem_max as root; fall back without. */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

static int tcp_listen(struct tp_ep_tcp *t)
{
    int one = 1, fd = socket(t->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    tcp_sockbufs(fd, t->sock_buf);
    if (bind(fd, (struct sockaddr *)&t->local, t->local_len) < 0 || listen(fd, TP__LISTEN_BACKLOG) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    t->listen_fd = fd;
    return 0;
}

static int tcp_open(const struct tp_ep_args *a, struct tp_ep **out)
{
    const struct tp_sock_cfg *c = a->sock;
    struct tp_ep_tcp *t = malloc(sizeof(*t) + TP__STREAM_SIZE);
    int rc = 0;

    if (!t)
        return -ENOMEM;
    memset(t, 0, sizeof(*t));
    t->fd = t->listen_fd = -1;
    t->base.ops = &tp_ep_tcp_ops;
    t->base.sink = a->sink;
    t->listen = c->listen;
    t->family = c->family;
    t->sock_buf = c->sock_buf;
    t->max_frame = c->max_frame;
    t->dev_fmt = *a->dev_fmt;
    t->transform = a->transform;
    t->backoff_ms = TP__BACKOFF_MIN_MS;
    t->has_local_port = c->local_port != 0;
    t->local_len = tp_sockaddr_make(&t->local, c->family, c->local_addr,
                                    c->local_port ? c->local_port + (unsigned)a->idx : 0);
    if (c->has_remote && !t->listen)
        t->peer_len = tp_sockaddr_make(&t->peer, c->family, c->remote_addr[0],
                                       c->remote_port[0] + (unsigned)a->idx);
    if (c->has_remote && t->listen) {
        t->only_peer = 1;
        (void)tp_sockaddr_make(&t->allowed, c->family, c->remote_addr[0],
                               c->remote_port[0] ? c->remote_port[0] + (unsigned)a->idx : 0);
    }
    if (t->listen && (rc = tcp_listen(t)) < 0) {
        free(t);
        return rc;
    }
    *out = &t->base;
    return 0;
}

static void tcp_close(struct tp_ep *ep)
{
    struct tp_ep_tcp *t = (struct tp_ep_tcp *)ep;

    if (t->fd >= 0)
        close(t->fd);
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    t->fd = t->listen_fd = -1;
}

static void tcp_up(struct tp_ep_tcp *t, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1;

    memset(&ss, 0, sizeof(ss));
    (void)getpeername(fd, (struct sockaddr *)&ss, &len);
    if (t->listen) {
        t->peer = ss;
        t->peer_len = len;
    }
    t->fd = fd;
    t->state = TP__TCP_UP;
    t->backoff_ms = TP__BACKOFF_MIN_MS;
    t->stream_len = t->stream_pos = 0;
    t->stream_bad = 0;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    t->base.sink.note(t->base.sink.ctx, TP_EP_CONNECTED, &ss);
}

static void tcp_retry_later(struct tp_ep_tcp *t)
{
    t->state = TP__TCP_DOWN;
    t->next_connect_ns = tp__now_ns() + (int64_t)t->backoff_ms * TP__NS_PER_MS;
    t->backoff_ms = t->backoff_ms * 2 > TP__BACKOFF_MAX_MS ? TP__BACKOFF_MAX_MS : t->backoff_ms * 2;
}

static void tcp_connect_failed(struct tp_ep_tcp *t, int err)
{
    t->base.sink.fail(t->base.sink.ctx, TP_EP_CONNECT_FAILED, &t->peer, err);
    tcp_retry_later(t);
}

static void tcp_connect(struct tp_ep_tcp *t)
{
    int fd;

    t->base.sink.note(t->base.sink.ctx, TP_EP_CONNECTING, &t->peer);
    fd = socket(t->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tcp_connect_failed(t, errno);
        return;
    }
    tcp_sockbufs(fd, t->sock_buf);
    if (t->has_local_port) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        (void)bind(fd, (struct sockaddr *)&t->local, t->local_len);
    }
    if (connect(fd, (struct sockaddr *)&t->peer, t->peer_len) == 0) {
        tcp_up(t, fd);
    } else if (errno == EINPROGRESS) {
        t->fd = fd;
        t->state = TP__TCP_CONNECTING;
    } else {
        int err = errno;
        close(fd);
        tcp_connect_failed(t, err);
    }
}

static void tcp_connected(struct tp_ep_tcp *t)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0) {
        tcp_up(t, t->fd);
        return;
    }
    close(t->fd);
    t->fd = -1;
    tcp_connect_failed(t, err);
}

/* Close the connection; the worker drops what was queued to or from it. */
static void tcp_drop_conn(struct tp_ep_tcp *t, int protocol_error)
{
    int was_up = t->state == TP__TCP_UP;

    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    t->stream_len = t->stream_pos = 0;
    t->stream_bad = 0;
    if (t->listen)
        t->state = TP__TCP_DOWN;
    else
        tcp_retry_later(t);
    if (protocol_error)
        t->base.sink.note(t->base.sink.ctx, TP_EP_PROTOCOL_ERROR, NULL);
    if (was_up)
        t->base.sink.note(t->base.sink.ctx, TP_EP_DISCONNECTED, &t->peer);
}

/* Whether a client at `from` is the configured peer (any, without one). */
static int tcp_allowed(const struct tp_ep_tcp *t, const struct sockaddr_storage *from)
{
    const struct sockaddr_storage *a = &t->allowed;

    if (!t->only_peer)
        return 1;
    if (from->ss_family != a->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)from, *y = (const void *)a;
        return x->sin_addr.s_addr == y->sin_addr.s_addr && (!y->sin_port || x->sin_port == y->sin_port);
    }
    const struct sockaddr_in6 *x = (const void *)from, *y = (const void *)a;
    return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0 &&
           (!y->sin6_port || x->sin6_port == y->sin6_port);
}

static void tcp_accept(struct tp_ep_tcp *t)
{
    for (int k = 0; k < TP__ACCEPTS_PER_TURN; k++) {
        struct sockaddr_storage from;
        socklen_t len = sizeof(from);
        int fd = accept4(t->listen_fd, (struct sockaddr *)&from, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
            return;
        if (!tcp_allowed(t, &from)) {
            close(fd);   /* not the configured peer: it must not take the tunnel over */
            t->base.sink.note(t->base.sink.ctx, TP_EP_REFUSED, &from);
            continue;
        }
        /* A new client replaces the old connection: after a crash or a silent
         * network change the old one may never report its death. Without a
         * configured peer, so does anyone who reaches the port. */
        if (t->fd >= 0)
            tcp_drop_conn(t, 0);
        tcp_sockbufs(fd, t->sock_buf);
        tcp_up(t, fd);
    }
}

static void tcp_begin(struct tp_ep *ep)
{
    struct tp_ep_tcp *t = (struct tp_ep_tcp *)ep;

    if (!t->listen)
        tcp_connect(t);
}

static void tcp_poll(struct tp_ep *ep, struct pollfd *pfd, short want, int *timeout_ms)
{
    struct tp_ep_tcp *t = (struct tp_ep_tcp *)ep;

    pfd[0].fd = t->fd;
    pfd[0].events = t->state == TP__TCP_CONNECTING ? POLLOUT : want;
    pfd[1].fd = t->listen_fd;
    pfd[1].events = POLLIN;
    if (!t->listen && t->state == TP__TCP_DOWN) {
        int64_t ms = (t->next_connect_ns - tp__now_ns()) / TP__NS_PER_MS;
        int due = ms < 0 ? 0 : (int)ms + 1;
        if (*timeout_ms < 0 || *timeout_ms > due)
            *timeout_ms = due;
    }
}

static int tcp_ready(struct tp_ep *ep, const struct pollfd *pfd)
{
    struct tp_ep_tcp *t = (struct tp_ep_tcp *)ep;
    short rev = pfd[0].revents;

    if (pfd[1].revents & POLLIN)
        tcp_accept(t);
    if (t->state == TP__TCP_CONNECTING && rev) {
        tcp_connected(t);
        return TP_EP_AGAIN;
    }
    if (!t->listen && t->state == TP__TCP_DOWN && tp__now_ns() >= t->next_connect_ns)
        tcp_connect(t);
    if (rev & (POLLERR | POLLHUP))
        rev |= POLLIN;   /* an error or hang-up: read finds out which */
    return (rev & POLLIN ? TP_EP_READ : 0) | (rev & (POLLOUT | POLLERR | POLLHUP) ? TP_EP_WRITE : 0);
}

static int tcp_buffered(const struct tp_ep *ep)
{
    const struct tp_ep_tcp *t = (const struct tp_ep_tcp *)ep;
    uint32_t flen;

    if (t->state != TP__TCP_UP)
        return 0;
    return t->stream_bad ||
           tp_frame_next(t->stream + t->stream_pos, t->stream_len - t->stream_pos, t->max_frame, &flen) != TP_FRAME_NEED;
}

/* Whole frames from the stream buffer into d, in place. */
static int tcp_frames(struct tp_ep_tcp *t, struct tp__dir *d, int batch, struct tp_dir_stats *st)
{
    tp__dir_reset(d);
    while (d->n < batch && !t->stream_bad) {
        uint8_t *s = t->stream + t->stream_pos;
        uint32_t flen;
        enum tp_frame_status fs = tp_frame_next(s, t->stream_len - t->stream_pos, t->max_frame, &flen);

        if (fs == TP_FRAME_BAD)
            t->stream_bad = 1;   /* the stream is out of step: close after this batch */
        if (fs != TP_FRAME_OK)
            break;
        t->stream_pos += TP_FRAME_HDR + flen;
        TP__ADD(st->pkts_in, 1);
        TP__ADD(st->bytes_in, flen);
        if (!t->transform && !tp__plausible(&t->dev_fmt, s + TP_FRAME_HDR, flen)) {
            TP__ADD(st->drops[TP_DROP_MALFORMED], 1);
            continue;
        }
        tp__pkt_set(&d->pkts[d->n++], s + TP_FRAME_HDR, flen, -1);
    }
    if (d->n)
        TP__ADD(st->batches, 1);
    return d->n;
}

/* Keep only the bytes not yet framed. Only when no packet of a batch points
 * into the buffer: before a read, which the loop makes only when the last
 * batch from here went out. */
static void tcp_compact(struct tp_ep_tcp *t)
{
    if (t->stream_pos == 0)
        return;
    memmove(t->stream, t->stream + t->stream_pos, t->stream_len - t->stream_pos);
    t->stream_len -= t->stream_pos;
    t->stream_pos = 0;
}

/* Frames already buffered come first; read more only when none are. */
static int tcp_read(struct tp_ep *ep, struct tp__dir *d, int batch, struct tp_dir_stats *st)
{
    struct tp_ep_tcp *t = (struct tp_ep_tcp *)ep;
    ssize_t r;

    if (t->state != TP__TCP_UP)
        return 0;
    if (tcp_buffered(ep))
        return tcp_frames(t, d, batch, st);
    tcp_compact(t);
    do {
        r = read(t->fd, t->stream + t->stream_len, TP__STREAM_SIZE - t->stream_len);
    } while (r < 0 && errno == EINTR);
    TP__ADD(st->read_calls, 1);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        tcp_drop_conn(t, 0);   /* closed or reset by the peer */
        return 0;
    }
    if (r > 0) {
        t->stream_len += (size_t)r;
        TP__ADD(st->read_bytes, r);
    }
    return tcp_frames(t, d, batch, st);
}

/* The batch from the stream went out: a stream out of step ends here. */
static void tcp_consumed(struct tp_ep *ep)
{
    struct tp_ep_tcp *t = (struct tp_ep_tcp *)ep;

    if (t->state == TP__TCP_UP && t->stream_bad)
        tcp_drop_conn(t, 1);
}

/* Frames d->next.. as iovecs [length, header, data] ...; stops at a frame
 * that cannot be framed (dropped when it is first) or at the iovec limit. */
static int tcp_frame_iov(struct tp__dir *d, struct tp_dir_stats *st)
{
    int k = 0;

    for (int i = d->next; i < d->n; i++) {
        struct tp__pkt *p = &d->pkts[i];
        uint32_t flen = p->hdrlen + p->len;
        /* Cannot be framed: over 2 bytes' worth, or empty (a transform may
         * leave nothing), which the far end reads as a broken stream. */
        if (flen == 0 || flen > TP_FRAME_MAX) {
            if (i == d->next && d->off == 0) {
                TP__ADD(st->drops[flen ? TP_DROP_TOO_BIG : TP_DROP_MALFORMED], 1);
                d->next++;
                continue;
            }
            break;
        }
        tp_frame_put_len((uint8_t *)&d->lenbe[i], flen);
        d->iov[k].iov_base = (uint8_t *)&d->lenbe[i];
        d->iov[k++].iov_len = TP_FRAME_HDR;
        d->iov[k].iov_base = p->hdr;
        d->iov[k++].iov_len = p->hdrlen;
        d->iov[k].iov_base = p->data;
        d->iov[k++].iov_len = p->len;
        if (k >= TP__IOV_LIMIT)
            break;
    }
    return k;
}

/* Count what a send of r bytes completed; a partial frame is kept in d->off. */
static int tcp_sent(struct tp__dir *d, size_t r, struct tp_dir_stats *st)
{
    size_t sent = r + d->off;
    int done = 0;

    while (d->next < d->n && sent >= TP_FRAME_HDR + (size_t)d->pkts[d->next].hdrlen + d->pkts[d->next].len) {
        struct tp__pkt *p = &d->pkts[d->next];
        sent -= TP_FRAME_HDR + (size_t)p->hdrlen + p->len;
        TP__ADD(st->pkts_out, 1);
        TP__ADD(st->bytes_out, p->hdrlen + p->len);
        d->next++;
        done++;
    }
    d->off = sent;
    return done;
}

static int tcp_write(struct tp_ep *ep, struct tp__dir *d, struct tp_dir_stats *st)
{
    struct tp_ep_tcp *t = (struct tp_ep_tcp *)ep;
    int done = 0;

    if (t->state != TP__TCP_UP) {
        tp__dir_drop_rest(d, st, TP_DROP_NO_CONNECTION);
        return 0;
    }
    while (d->next < d->n) {
        int k = tcp_frame_iov(d, st), first = 0;
        size_t skip = d->off;
        struct msghdr mh;
        ssize_t r;

        if (k == 0)
            continue;
        /* Skip what an earlier partial send already wrote. */
        while (skip >= d->iov[first].iov_len) {
            skip -= d->iov[first].iov_len;
            first++;
        }
        d->iov[first].iov_base = (uint8_t *)d->iov[first].iov_base + skip;
        d->iov[first].iov_len -= skip;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = d->iov + first;
        mh.msg_iovlen = (size_t)(k - first);
        r = sendmsg(t->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        TP__ADD(st->write_calls, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                d->pending = 1;
                return done;
            }
            tcp_drop_conn(t, 0);   /* the worker drops the rest of d */
            return done;
        }
        TP__ADD(st->write_bytes, r);
        done += tcp_sent(d, (size_t)r, st);
    }
    d->pending = 0;
    d->off = 0;
    return done;
}

const struct tp_ep_ops tp_ep_tcp_ops = {
    .open = tcp_open,
    .close = tcp_close,
    .begin = tcp_begin,
    .poll = tcp_poll,
    .ready = tcp_ready,
    .read = tcp_read,
    .write = tcp_write,
    .buffered = tcp_buffered,
    .consumed = tcp_consumed,
    .owns_buffer = 1,
    .read_where = "endpoint read",
};
