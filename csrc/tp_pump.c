/* Workers: one thread per queue, a poll loop over the device queue, the
 * endpoint and a stop eventfd, batched reads and writes, nothing allocated
 * per packet. */
#define _GNU_SOURCE
#include "tp_pump.h"
#include "tp_pump_internal.h"
#include "tp_netns.h"
#include "tp_compat.h"

#include <errno.h>
#include <fcntl.h>
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
};

int64_t tp__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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

    if (src) {
        int nraw = d->n, out = 0;
        int l2 = src->tap ? 14 : 0;

        memcpy(d->raw, d->pkts, sizeof(d->pkts[0]) * (size_t)nraw);
        for (i = 0; i < nraw; i++) {
            struct tp__pkt *r = &d->raw[i];
            struct tp_vnet_hdr vh;
            struct tp_seg segs[TP_VNET_MAX_SEGS];
            int nseg;

            if (!src->vnet_hdr_sz) {
                d->pkts[out++] = *r;
                TP__ADD(st->pkts_in, 1);
                TP__ADD(st->bytes_in, r->len);
                continue;
            }
            tp_vnet_hdr_read(r->pre + (src->pi ? 4 : 0), &vh);
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

static void tp__fail(struct tp__worker *w, int err, const char *where)
{
    uint64_t one = 1;

    w->err_where = where;
    __atomic_store_n(&w->err, err, __ATOMIC_RELEASE);
    (void)!write(w->pump->exit_fd, &one, sizeof(one));
}

/* ---- the loop ------------------------------------------------------------- */

enum { FD_STOP, FD_DEV, FD_PEER, FD_LISTEN, FD__N };

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
        if (buffered) {
            timeout = 0;
        } else if (c->kind == TP_KIND_TCP && !c->sock.listen && w->tcp == TP__TCP_DOWN) {
            int64_t ms = (w->next_connect_ns - tp__now_ns()) / 1000000;
            timeout = ms < 0 ? 0 : (int)ms + 1;
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
    }
    free(p->w);
    if (p->stop_fd >= 0)
        close(p->stop_fd);
    if (p->exit_fd >= 0)
        close(p->exit_fd);
    if (p->netns_fd >= 0)
        close(p->netns_fd);
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
    if (posix_memalign((void **)&p->w, 64, sizeof(*p->w) * (size_t)p->nworkers) != 0)
        p->w = NULL;
    if (p->stop_fd < 0 || p->exit_fd < 0 || !p->w) {
        *err = "eventfd/malloc";
        rc = p->stop_fd < 0 || p->exit_fd < 0 ? -errno : -ENOMEM;
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
        w->backoff_ms = 100;
        if (cfg->kind == TP_KIND_TCP)
            w->stream = malloc(TP__STREAM_SIZE);
        if (tp__dir_alloc(&w->d[0], cfg->batch, 1) < 0 ||
            tp__dir_alloc(&w->d[1], cfg->batch, cfg->kind != TP_KIND_TCP) < 0 ||
            (cfg->kind == TP_KIND_TCP && !w->stream)) {
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
