/* A pump's lifetime: check the config, make everything a worker needs
 * (every fd is -1 before anything is allocated, and one cleanup path,
 * tp_pump_free, undoes any part of it), start the threads, stop them, free;
 * plus the errors and stats the caller reads. */
#define _GNU_SOURCE
#include "tp_pump.h"
#include "tp_pump_internal.h"
#include "tp_compat.h"
#include "tp_netns.h"
#include "tp_prepare.h"
#include "tunpump.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* tp_pump_stats copies the stats word by word. */
_Static_assert(sizeof(struct tp_dir_stats) % sizeof(uint64_t) == 0 &&
               sizeof(struct tp_dir_stats) == sizeof(uint64_t) * (14 + TP_DROP__COUNT + TP_XF_MAX_DROP_REASONS),
               "struct tp_dir_stats must be uint64_t fields only");
_Static_assert(sizeof(struct tp_worker_stats) ==
               TP_DIR__COUNT * sizeof(struct tp_dir_stats) + sizeof(uint64_t) * 16,
               "struct tp_worker_stats must be uint64_t fields only");
_Static_assert(_Alignof(struct tp_worker_stats) == _Alignof(uint64_t),
               "struct tp_worker_stats must be uint64_t fields only");

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
    [TP_DROP_TOO_MANY_SEGS] = "too_many_segments",
    [TP_DROP_TRANSFORM] = "transform",
    [TP_DROP_TRANSFORM_OVERFLOW] = "transform_overflow",
    [TP_DROP_UNREACHABLE] = "unreachable",
};

#define TP__PORT_MAX 65535

#define TP__KNOWN_OFFLOADS (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | 0x10 /* TUN_F_UFO */ | \
                            TUN_F_USO4 | TUN_F_USO6)

/* The endpoint kind of the far end. */
static const struct tp_ep_ops *tp__far_ops(int kind)
{
    switch (kind) {
    case TP_KIND_TUN: return &tp_ep_tun_ops;
    case TP_KIND_UDP: return &tp_ep_udp_ops;
    case TP_KIND_TCP: return &tp_ep_tcp_ops;
    default: return NULL;
    }
}

/* A device format: the prefix must fit the 16-byte prefix buffer. */
static int tp__check_fmt(const struct tp_fmt *f, const char *what, const char **err)
{
    if ((f->pi != 0 && f->pi != 1) || (f->tap != 0 && f->tap != 1)) {
        *err = what;
        return -EINVAL;
    }
    if (f->vnet_hdr_sz != 0 && f->vnet_hdr_sz != 10 && f->vnet_hdr_sz != 12) {
        *err = "vnet_hdr_sz";
        return -EINVAL;
    }
    if ((f->offloads & ~(unsigned)TP__KNOWN_OFFLOADS) || (f->offloads && !f->vnet_hdr_sz)) {
        *err = "offloads";
        return -EINVAL;
    }
    return 0;
}

static int tp__check_ctl(const struct tp_ctl_cfg *c, const char **err)
{
    if (!c->enabled && !c->events)
        return 0;
    if (c->pending_limit > TP_MAX_PENDING) {
        *err = "pending_limit";
        return -EINVAL;
    }
    if (c->punt_ring > TP_MAX_PUNT_RING || (c->punt_ring & (c->punt_ring - 1))) {
        *err = "punt_ring";
        return -EINVAL;
    }
    if (!c->enabled)
        return 0;
    if (c->table_size < 1 || c->table_size > TP_FLOW_TABLE_MAX) {
        *err = "table_size";
        return -EINVAL;
    }
    if (c->default_verdict != TP_VERDICT_FORWARD && c->default_verdict != TP_VERDICT_DROP) {
        *err = "default_verdict";
        return -EINVAL;
    }
    return 0;
}

/* Worker i uses port + i: every queue's port must fit 16 bits (htons would
 * wrap 65536 to 0, an ephemeral port). */
static int tp__ports_fit(unsigned port, int nworkers)
{
    return port <= TP__PORT_MAX && (port == 0 || TP__PORT_MAX - port >= (unsigned)(nworkers - 1));
}

static int tp__remote_ports_fit(const struct tp_pump_cfg *c)
{
    const struct tp_sock_cfg *s = &c->sock;

    for (int r = 0; s->has_remote && r < (s->nremotes > 0 ? s->nremotes : 1); r++) {
        if (s->remote_port[r] == 0 && c->kind == TP_KIND_TCP && s->listen)
            continue;   /* a TCP server's remote without a port: any source port */
        if (s->remote_port[r] == 0 || !tp__ports_fit(s->remote_port[r], c->nworkers))
            return 0;
    }
    return 1;
}

static int tp__check_sock(const struct tp_pump_cfg *c, const char **err)
{
    const struct tp_sock_cfg *s = &c->sock;

    if (s->nremotes < 0 || s->nremotes > TP_MAX_PEERS)
        *err = "remotes";
    else if (c->kind == TP_KIND_TUN)
        return 0;
    else if (s->family != AF_INET && s->family != AF_INET6)
        *err = "family";
    else if (!tp__ports_fit(s->local_port, c->nworkers))
        *err = "local_port";
    else if (!tp__remote_ports_fit(c))
        *err = "remote_port";
    else if (c->kind == TP_KIND_TCP && !s->listen && !s->has_remote)
        *err = "remote";
    else if (c->kind == TP_KIND_TCP && (s->max_frame < 1 || s->max_frame > TP__PKT_MAX))
        *err = "max_frame";
    else if (s->peer_timeout_ns < 0)
        *err = "peer_timeout";
    else
        return 0;
    return -EINVAL;
}

/* A transform's ops: the ABI this pump speaks, and the one required op. */
static int tp__check_xf(const struct tunpump_transform *t, const char **err)
{
    if (!t)
        return 0;
    *err = "transform";
    if (!t->ops || !t->ops->batch)
        return -EINVAL;
    if (t->ops->abi != TUNPUMP_TRANSFORM_ABI ||
        (t->ops->flags & ~(uint32_t)TUNPUMP_ALL_FLAGS))
        return -EPROTO;
    return 0;
}

static int tp__check_cfg(const struct tp_pump_cfg *c, const char **err)
{
    int rc;

    if (c->nworkers < 1 || c->nworkers > TP_MAX_WORKERS || c->dev.nfds < c->nworkers) {
        *err = "nworkers";
        return -EINVAL;
    }
    if (c->batch < 1 || c->batch > TP_MAX_BATCH) {
        *err = "batch";
        return -EINVAL;
    }
    if (!tp__far_ops(c->kind)) {
        *err = "kind";
        return -EINVAL;
    }
    if (c->kind == TP_KIND_TUN && c->peer_dev.nfds < c->nworkers) {
        *err = "peer device queues";
        return -EINVAL;
    }
    if ((rc = tp__check_fmt(&c->dev.fmt, "device format", err)) < 0 ||
        (c->kind == TP_KIND_TUN && (rc = tp__check_fmt(&c->peer_dev.fmt, "peer device format", err)) < 0) ||
        (rc = tp__check_ctl(&c->ctl, err)) < 0 || (rc = tp__check_xf(c->xf, err)) < 0)
        return rc;
    return tp__check_sock(c, err);
}

/* Everything below is undone by tp_pump_free, whatever state it reached. */

/* The pump with its eventfds and zeroed workers whose fds are all -1. */
static int tp__pump_new(const struct tp_pump_cfg *cfg, struct tp_pump **out)
{
    struct tp_pump *p = calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    p->cfg = *cfg;
    p->cfg.dev.fds = NULL;        /* the caller's arrays are not kept */
    p->cfg.peer_dev.fds = NULL;
    p->stop_fd = p->exit_fd = p->event_fd = p->netns_fd = -1;
    *out = p;
    if (posix_memalign((void **)&p->w, _Alignof(struct tp__worker), sizeof(*p->w) * (size_t)cfg->nworkers) != 0) {
        p->w = NULL;
        return -ENOMEM;
    }
    memset(p->w, 0, sizeof(*p->w) * (size_t)cfg->nworkers);
    p->nworkers = cfg->nworkers;
    for (int i = 0; i < p->nworkers; i++) {
        struct tp__worker *w = &p->w[i];
        w->pump = p;
        w->idx = i;
        tp__ctl_init(&w->ctl, &p->cfg.ctl, &p->cfg.dev.fmt, &w->st, i, -1);
        /* any peer index may leave: the UDP endpoint drops one it has no peer for */
        tp__xf_init(&w->xf, cfg->xf, i, cfg->kind == TP_KIND_UDP, TP_MAX_PEERS, &w->ctl);
    }
    p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->stop_fd < 0 || p->exit_fd < 0 || p->event_fd < 0)
        return -errno;
    for (int i = 0; i < p->nworkers; i++)
        p->w[i].ctl.event_fd = p->event_fd;
    return 0;
}

/* Worker i's two endpoints. Sockets are made here, on the caller's thread
 * (in the endpoint's namespace), so a port in use fails start(). */
static int tp__open_eps(struct tp_pump *p, const struct tp_pump_cfg *cfg, int i)
{
    struct tp__worker *w = &p->w[i];
    struct tp_ep_sink sink = { .note = tp__worker_note, .fail = tp__worker_fail, .ctx = w };
    struct tp_ep_args dev = { .idx = i, .fd = cfg->dev.fds[i], .fmt = &p->cfg.dev.fmt, .sink = sink };
    struct tp_ep_args far = {
        .idx = i, .fd = cfg->kind == TP_KIND_TUN ? cfg->peer_dev.fds[i] : -1, .fmt = &p->cfg.peer_dev.fmt,
        .sock = &p->cfg.sock, .dev_fmt = &p->cfg.dev.fmt, .want_gro = tp__gro_what(&p->cfg.dev.fmt) != 0,
        .transform = cfg->xf != NULL, .sink = sink,
        .unknown_sources = cfg->xf && (cfg->xf->ops->flags & TUNPUMP_UNKNOWN_SOURCES),
    };
    int rc = tp_ep_tun_ops.open(&dev, &w->ep[TP_DIR_TO_EP]);

    return rc < 0 ? rc : tp__far_ops(cfg->kind)->open(&far, &w->ep[TP_DIR_TO_DEV]);
}

/* Worker w's transform: arenas, descriptors, message ring, then create(). */
static int tp__worker_xf(struct tp_pump *p, const struct tp_pump_cfg *cfg, struct tp__worker *w,
                         const char **err)
{
    int cap = w->d[0].cap > w->d[1].cap ? w->d[0].cap : w->d[1].cap;

    *err = "malloc";
    for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
        if (tp__dir_alloc_xf(&w->d[dir], cfg->batch) < 0)
            return -ENOMEM;
        w->d[dir].xf = &w->xf;
        w->d[dir].xf_segments = (cfg->xf->ops->flags & TUNPUMP_NEEDS_SEGMENTS) != 0;
        w->d[dir].xf_trusted = dir == TP_DIR_TO_DEV && (cfg->xf->ops->flags & TUNPUMP_AUTHENTICATED);
    }
    w->xf.far = w->ep[TP_DIR_TO_DEV];
    return tp__xf_alloc(&w->xf, cfg->xf, cap, p->nworkers, err);
}

/* Worker i's batches, control plane and endpoints. */
static int tp__worker_make(struct tp_pump *p, const struct tp_pump_cfg *cfg, int i, const char **err)
{
    struct tp__worker *w = &p->w[i];
    int rc;

    *err = "malloc";
    if (tp__dir_alloc(&w->d[TP_DIR_TO_EP], cfg->batch, 1) < 0 ||
        tp__dir_alloc(&w->d[TP_DIR_TO_DEV], cfg->batch, !tp__far_ops(cfg->kind)->owns_buffer) < 0)
        return -ENOMEM;
    /* -ENOMEM from its allocations, or -errno from its eventfd (EMFILE...) */
    if ((cfg->ctl.enabled || cfg->ctl.events) && (rc = tp__ctl_alloc(&w->ctl)) < 0) {
        *err = rc == -ENOMEM ? "malloc" : "eventfd";
        return rc;
    }
    *err = cfg->kind == TP_KIND_UDP ? "UDP socket bind" : cfg->kind == TP_KIND_TCP ? "TCP listen" : "malloc";
    if ((rc = tp__open_eps(p, cfg, i)) < 0)
        return rc;
    for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
        w->d[dir].src_fmt = w->ep[dir]->fmt;
        w->d[dir].dst_fmt = w->ep[dir == TP_DIR_TO_EP ? TP_DIR_TO_DEV : TP_DIR_TO_EP]->fmt;
    }
    return cfg->xf ? tp__worker_xf(p, cfg, w, err) : 0;
}

static int tp__workers_make(struct tp_pump *p, const struct tp_pump_cfg *cfg, const char **err)
{
    int rc = 0, saved = -1;

    if (cfg->kind != TP_KIND_TUN && cfg->sock.netns_fd >= 0) {
        p->netns_fd = fcntl(cfg->sock.netns_fd, F_DUPFD_CLOEXEC, 0);
        if (p->netns_fd < 0 || (rc = tp_netns_enter(p->netns_fd, &saved)) < 0) {
            *err = "setns";
            return p->netns_fd < 0 ? -errno : rc;
        }
    }
    for (int i = 0; i < p->nworkers && rc >= 0; i++)
        rc = tp__worker_make(p, cfg, i, err);
    if (saved >= 0)
        tp_netns_restore(saved);
    return rc;
}

/* Workers take no signals: Python handles them on its main thread. */
static int tp__threads_start(struct tp_pump *p)
{
    sigset_t all, old;
    int rc = 0;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < p->nworkers; i++) {
        rc = -pthread_create(&p->w[i].thread, NULL, tp__worker_main, &p->w[i]);
        if (rc < 0)
            break;
        p->w[i].thread_started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int tp_pump_start(const struct tp_pump_cfg *cfg, struct tp_pump **out, const char **err)
{
    struct tp_pump *p = NULL;
    int rc;

    *out = NULL;
    if ((rc = tp__check_cfg(cfg, err)) < 0)
        return rc;
    if ((rc = tp__pump_new(cfg, &p)) < 0)
        *err = "eventfd/malloc";
    else if ((rc = tp__workers_make(p, cfg, err)) < 0)
        ;
    else if ((rc = tp__threads_start(p)) < 0)
        *err = "pthread_create";
    if (rc < 0) {
        tp_pump_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int tp_pump_stop(struct tp_pump *p)
{
    uint64_t one = 1;

    if (__atomic_load_n(&p->stopped, __ATOMIC_ACQUIRE))
        return 0;
    /* Injects see it from now on and refuse; the endpoints' fds stay open
     * until tp_pump_free, so an inject already past that check (on another
     * thread) still sends on its own socket, never on a closed fd or on
     * whatever the kernel gave that fd number next. The control side's peer
     * calls read it too. */
    __atomic_store_n(&p->stopped, 1, __ATOMIC_RELEASE);
    if (p->stop_fd >= 0)
        (void)!write(p->stop_fd, &one, sizeof(one));
    for (int i = 0; i < p->nworkers; i++) {
        if (p->w[i].thread_started)
            pthread_join(p->w[i].thread, NULL);
        p->w[i].thread_started = 0;
    }
    return 0;
}

static void tp__close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void tp_pump_free(struct tp_pump *p)
{
    if (!p)
        return;
    tp_pump_stop(p);
    for (int i = 0; i < p->nworkers; i++) {
        struct tp__worker *w = &p->w[i];
        for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
            if (w->ep[dir])
                w->ep[dir]->ops->close(w->ep[dir]);
            tp__dir_free(&w->d[dir]);
            free(w->ep[dir]);
        }
        tp__xf_free(&w->xf);   /* destroy() after the worker ended */
        tp__ctl_free(&w->ctl);
    }
    free(p->w);
    tp__close_fd(&p->stop_fd);
    tp__close_fd(&p->exit_fd);
    tp__close_fd(&p->netns_fd);
    tp__close_fd(&p->event_fd);
    free(p);
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
