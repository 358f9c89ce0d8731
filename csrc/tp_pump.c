/* Workers: one thread per queue, a poll loop over the device queue, the
 * endpoint and a stop eventfd, batched reads and writes, nothing allocated
 * per packet. */
#define _GNU_SOURCE
#include "tp_pump.h"
#include "tp_pump_internal.h"
#include "tp_netns.h"

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
            if ((rc > 0 || w->stream_bad) && (rc = tp__flush1(w)) < 0) {
                tp__fail(w, rc, "device write");
                break;
            }
        }
    }
    /* Whatever is still queued is lost with the stop: count it. */
    tp__dir_drop_rest(&w->d[0], &w->st.dir[0], TP_DROP_STOPPED);
    tp__dir_drop_rest(&w->d[1], &w->st.dir[1], TP_DROP_STOPPED);
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

void tp_pump_free(struct tp_pump *p)
{
    if (!p)
        return;
    tp_pump_stop(p);
    for (int i = 0; i < p->nworkers; i++) {
        free(p->w[i].d[0].bufs);
        free(p->w[i].d[1].bufs);
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
        /* malloc, not calloc: pages are touched only as packets need them. */
        w->d[0].bufs = malloc((size_t)cfg->batch * TP__BUF_SIZE);
        if (cfg->kind == TP_KIND_TCP)
            w->stream = malloc(TP__STREAM_SIZE);
        else
            w->d[1].bufs = malloc((size_t)cfg->batch * TP__BUF_SIZE);
        if (!w->d[0].bufs || (cfg->kind == TP_KIND_TCP ? !w->stream : !w->d[1].bufs)) {
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
            if ((rc = tp__sock_setup(&p->w[i])) < 0) {
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
