/* The worker loop: one thread per queue, a poll over the stop eventfd, the
 * control eventfd and the fds its two endpoints ask for, then batched reads
 * and writes in both directions, nothing allocated per packet. The loop
 * knows no endpoint kind: it calls the ops table (tp_endpoint.h) once per
 * batch, and endpoints report back through tp__worker_note. */
#define _GNU_SOURCE
#include "tp_pump_internal.h"
#include "tp_netns.h"
#include "tp_prepare.h"
#include "tp_xform.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

enum { FD_STOP, FD_CTL, FD_XF, FD_EP, FD__N = FD_EP + TP_DIR__COUNT * TP_EP_NFDS };

static const char *const tp__write_where[TP_DIR__COUNT] = {
    [TP_DIR_TO_EP] = "endpoint write",
    [TP_DIR_TO_DEV] = "device write",
};

static enum tp_dir tp__other(enum tp_dir dir)
{
    return dir == TP_DIR_TO_EP ? TP_DIR_TO_DEV : TP_DIR_TO_EP;
}

/* Record the error that ends the worker; returns it. */
static int tp__fail(struct tp__worker *w, int err, const char *where)
{
    uint64_t one = 1;

    tp__ctl_post_error(&w->ctl, err, where);
    w->err_where = where;
    __atomic_store_n(&w->err, err, __ATOMIC_RELEASE);
    (void)!write(w->pump->exit_fd, &one, sizeof(one));
    return err;
}

void tp__worker_note(void *ctx, enum tp_ep_note what, const struct sockaddr_storage *addr)
{
    struct tp__worker *w = ctx;

    switch (what) {
    case TP_EP_CONNECTED:
        TP__ADD(w->st.connects, 1);
        tp__ctl_post_peer(&w->ctl, TP_EV_PEER_UP, addr);
        break;
    case TP_EP_LEARNED:
        TP__ADD(w->st.peer_learned, 1);
        tp__ctl_post_peer(&w->ctl, TP_EV_PEER_UP, addr);
        break;
    case TP_EP_DISCONNECTED:
        TP__ADD(w->st.disconnects, 1);
        tp__ctl_post_peer(&w->ctl, TP_EV_PEER_DOWN, addr);
        for (int dir = 0; dir < TP_DIR__COUNT; dir++)
            tp__dir_drop_rest(&w->d[dir], &w->st.dir[dir], TP_DROP_NO_CONNECTION);
        break;
    case TP_EP_PROTOCOL_ERROR:
        TP__ADD(w->st.protocol_errors, 1);
        break;
    case TP_EP_FORGOTTEN:
        tp__ctl_post_peer(&w->ctl, TP_EV_PEER_DOWN, addr);
        break;
    case TP_EP_REFUSED:
        TP__ADD(w->st.refused_connections, 1);   /* no event: a flood of them must not fill the ring */
        break;
    case TP_EP_CONNECTING:
        TP__ADD(w->st.connect_attempts, 1);
        break;
    }
}

void tp__worker_fail(void *ctx, enum tp_ep_fail what, const struct sockaddr_storage *addr, int err)
{
    struct tp__worker *w = ctx;
    int64_t now = tp__now_ns();

    /* A tunnel sending into an unreachable peer fails every batch: one
     * event a second tells Python (the drops count every datagram). */
    if (now < w->fail_next_ns)
        return;
    w->fail_next_ns = now + TP__NS_PER_S;
    tp__ctl_post_unreachable(&w->ctl, what == TP_EP_UNREACHABLE ? TP_UNREACH_SEND : TP_UNREACH_CONNECT,
                             addr, err);
}

/* Send what is left of a direction's batch; when it is all out, the source
 * may reuse what the batch pointed into. */
static int tp__flush(struct tp__worker *w, enum tp_dir dir)
{
    struct tp_ep *src = w->ep[dir], *dst = w->ep[tp__other(dir)];
    struct tp__dir *d = &w->d[dir];
    int rc = dst->ops->write(dst, d, &w->st.dir[dir]);

    if (rc >= 0 && !d->pending && src->ops->consumed)
        src->ops->consumed(src);
    return rc < 0 ? tp__fail(w, rc, tp__write_where[dir]) : 0;
}

/* Read a batch from a direction's source, prepare it and send it. */
static int tp__fill(struct tp__worker *w, enum tp_dir dir)
{
    struct tp_ep *src = w->ep[dir];
    struct tp__dir *d = &w->d[dir];
    int ctl = dir == TP_DIR_TO_EP && w->pump->cfg.ctl.enabled;
    int rc = src->ops->read(src, d, w->pump->cfg.batch, &w->st.dir[dir]);

    if (rc < 0)
        return tp__fail(w, rc, dir == TP_DIR_TO_EP ? "device read" : src->ops->read_where);
    if (rc == 0) {
        if (src->ops->consumed)
            src->ops->consumed(src);   /* nothing to send: a broken stream ends here */
        return 0;
    }
    tp__prepare(d, dir, &w->st.dir[dir], ctl ? &w->ctl : NULL);
    return tp__flush(w, dir);
}

/* Which directions have packets waiting in their source (bit per tp_dir). */
static int tp__buffered(const struct tp__worker *w)
{
    int mask = 0;

    for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
        const struct tp_ep *ep = w->ep[dir];
        if (!w->d[dir].pending && ep->ops->buffered && ep->ops->buffered(ep))
            mask |= 1 << dir;
    }
    return mask;
}

/* Packets Python injected through the transform wait, and their batch is free. */
static int tp__injects_ready(const struct tp__worker *w)
{
    return w->xf.ops && !w->d[TP_DIR_TO_EP].pending && tp_ring_count(&w->xf.injects);
}

/* Send what Python injected through the transform: a batch of its own, as
 * if read from the device (counted in packets_in), past the verdicts. */
static int tp__inject_step(struct tp__worker *w)
{
    struct tp__dir *d = &w->d[TP_DIR_TO_EP];

    if (!tp__injects_ready(w) || tp__xf_take_injects(&w->xf, d, d->src_fmt, w->pump->cfg.batch) == 0)
        return 0;
    tp__prepare(d, TP_DIR_TO_EP, &w->st.dir[TP_DIR_TO_EP], NULL);
    return tp__flush(w, TP_DIR_TO_EP);
}

/* The pollfds of a turn, and how long it may sleep. */
static int tp__poll_setup(struct tp__worker *w, struct pollfd *pfd, int buffered)
{
    int timeout = -1;

    memset(pfd, 0, sizeof(*pfd) * FD__N);
    for (int i = 0; i < FD__N; i++)
        pfd[i].fd = -1;   /* ignored by poll */
    pfd[FD_STOP].fd = w->pump->stop_fd;
    pfd[FD_STOP].events = POLLIN;
    pfd[FD_CTL].fd = w->pump->cfg.ctl.enabled ? w->ctl.ctl_fd : -1;
    pfd[FD_CTL].events = POLLIN;
    pfd[FD_XF].fd = w->xf.msg_fd;   /* -1 without a transform */
    pfd[FD_XF].events = POLLIN;
    for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
        /* An endpoint reads in its own direction and writes the other's. */
        short want = (short)((w->d[dir].pending ? 0 : POLLIN) | (w->d[tp__other(dir)].pending ? POLLOUT : 0));
        w->ep[dir]->ops->poll(w->ep[dir], &pfd[FD_EP + dir * TP_EP_NFDS], want, &timeout);
    }
    if (buffered || w->ctl.releasing || tp__injects_ready(w))
        return 0;
    if (w->pump->cfg.ctl.enabled)
        timeout = tp__ctl_timeout(&w->ctl, timeout);
    return timeout;
}

/* The control plane's part of a turn: packets whose verdict came go first,
 * before any newer ones. Returns <0 on error, 1 to end the turn. */
static int tp__ctl_step(struct tp__worker *w, int ctl_ready)
{
    struct tp__dir *d = &w->d[TP_DIR_TO_EP];
    int n = tp__ctl_turn(&w->ctl, ctl_ready, d, w->pump->cfg.batch);

    if (n > 0) {
        tp__prepare(d, TP_DIR_TO_EP, &w->st.dir[TP_DIR_TO_EP], &w->ctl);
        if (tp__flush(w, TP_DIR_TO_EP) < 0)
            return -1;
    }
    if (n >= 0 && w->ctl.releasing) {
        tp__ctl_notify(&w->ctl);
        return 1;
    }
    return 0;
}

/* Finish batches that were waiting for room first, then read anew. */
static int tp__io(struct tp__worker *w, const int *io, int buffered)
{
    for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
        if (w->d[dir].pending && (io[tp__other(dir)] & TP_EP_WRITE) && tp__flush(w, dir) < 0)
            return -1;
    }
    for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
        if (!w->d[dir].pending && ((io[dir] & TP_EP_READ) || (buffered & (1 << dir))) && tp__fill(w, dir) < 0)
            return -1;
    }
    return 0;
}

/* One wakeup. Returns 0 to go on, 1 when the worker ends. */
static int tp__turn(struct tp__worker *w)
{
    struct pollfd pfd[FD__N];
    int buffered = tp__buffered(w), io[TP_DIR__COUNT], again = 0, rc;
    int n = poll(pfd, FD__N, tp__poll_setup(w, pfd, buffered));

    TP__ADD(w->st.wakeups, 1);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        tp__fail(w, -errno, "poll");
        return 1;
    }
    if (pfd[FD_STOP].revents)
        return 1;
    if (pfd[FD_XF].revents & POLLIN)   /* between batches: no batch sees a half-made change */
        tp__xf_take_control(&w->xf);
    if (w->xf.ops && tp__inject_step(w) < 0)
        return 1;
    if (w->pump->cfg.ctl.enabled && (rc = tp__ctl_step(w, pfd[FD_CTL].revents & POLLIN)) != 0)
        return rc < 0;
    for (int dir = 0; dir < TP_DIR__COUNT; dir++) {
        io[dir] = w->ep[dir]->ops->ready(w->ep[dir], &pfd[FD_EP + dir * TP_EP_NFDS]);
        again |= io[dir] & TP_EP_AGAIN;
    }
    if (again)
        return 0;
    if (tp__io(w, io, buffered) < 0)
        return 1;
    tp__ctl_notify(&w->ctl);
    return 0;
}

void *tp__worker_main(void *arg)
{
    struct tp__worker *w = arg;
    struct tp_pump *p = w->pump;
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
    for (int dir = 0; dir < TP_DIR__COUNT; dir++)
        if (w->ep[dir]->ops->begin)
            w->ep[dir]->ops->begin(w->ep[dir]);
    while (tp__turn(w) == 0)
        ;
    /* Whatever is still queued is lost with the stop: count it. */
    tp__ctl_drop_pending(&w->ctl, &w->st.dir[TP_DIR_TO_EP]);
    for (int dir = 0; dir < TP_DIR__COUNT; dir++)
        tp__dir_drop_rest(&w->d[dir], &w->st.dir[dir], TP_DROP_STOPPED);
    return NULL;
}
