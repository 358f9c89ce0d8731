/* The control thread's calls (tp_pump.h, "the control side"): events out of
 * the workers' rings, verdicts into them, wake-ups, injected datagrams, and
 * UDP peer changes. */
#define _GNU_SOURCE
#include "tp_pump.h"
#include "tp_pump_internal.h"
#include "tunpump.h"
#include "tp_sockaddr.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

int tp_pump_event_fd(const struct tp_pump *p)
{
    return p->event_fd;
}

const struct tp_event *tp_pump_next_event(struct tp_pump *p, int *worker, const uint8_t **data)
{
    for (int n = 0; n < p->nworkers; n++) {
        int i = (p->rr + n) % p->nworkers;
        struct tp__ctl *c = &p->w[i].ctl;
        const struct tp_event *ev;
        if (!c->events.slots || !(ev = tp_ring_peek(&c->events)))
            continue;
        p->rr = (i + 1) % p->nworkers;
        *worker = i;
        *data = ev->type == TP_EV_PACKET || ev->type == TP_EV_PUNT ? tp_ring_peek(&c->punts) : NULL;
        return ev;
    }
    return NULL;
}

void tp_pump_event_done(struct tp_pump *p, int worker, int type)
{
    struct tp__ctl *c = &p->w[worker].ctl;

    if (type == TP_EV_PACKET || type == TP_EV_PUNT)
        tp_ring_release(&c->punts);
    tp_ring_release(&c->events);
}

int tp_pump_verdict(struct tp_pump *p, int worker, int32_t flow, uint32_t gen, int verdict,
                    int route, uint32_t ttl_ms)
{
    struct tp__ctl *c;
    struct tp__verdict *v;

    if (worker < 0 || worker >= p->nworkers || !p->w[worker].ctl.verdicts.slots)
        return -EINVAL;
    if (verdict < TP_VERDICT_FORWARD || verdict > TP_VERDICT_ROUTE || route < 0 || route > UINT8_MAX)
        return -EINVAL;
    c = &p->w[worker].ctl;
    v = tp_ring_reserve(&c->verdicts);
    if (!v)
        return -EAGAIN;
    v->flow = flow;
    v->gen = gen;
    v->verdict = (uint8_t)verdict;
    v->route = (uint8_t)route;
    v->ttl_ms = ttl_ms;
    tp_ring_publish(&c->verdicts);
    c->kicked = 1;
    return 0;
}

void tp_pump_kick(struct tp_pump *p)
{
    uint64_t one = 1;

    for (int i = 0; i < p->nworkers; i++) {
        struct tp__ctl *c = &p->w[i].ctl;
        if (c->kicked) {
            c->kicked = 0;
            (void)!write(c->ctl_fd, &one, sizeof(one));
        }
    }
}

int tp_pump_inject_udp(struct tp_pump *p, int worker, int route, const uint8_t *data, size_t len)
{
    struct tp_ep *ep;

    if (p->cfg.kind != TP_KIND_UDP || worker < 0 || worker >= p->nworkers)
        return -EINVAL;
    if (__atomic_load_n(&p->stopped, __ATOMIC_ACQUIRE))
        return -ESHUTDOWN;
    ep = p->w[worker].ep[TP_DIR_TO_DEV];
    return ep->ops->inject(ep, route, data, len);
}

int tp_pump_inject_udp_addr(struct tp_pump *p, int worker, int family, const uint8_t *addr, unsigned port,
                            const uint8_t *data, size_t len)
{
    struct sockaddr_storage to;
    socklen_t to_len;
    struct tp_ep *ep;

    if (p->cfg.kind != TP_KIND_UDP || worker < 0 || worker >= p->nworkers || port > UINT16_MAX)
        return -EINVAL;
    if (family != AF_INET && family != AF_INET6)
        return -EAFNOSUPPORT;
    if (__atomic_load_n(&p->stopped, __ATOMIC_ACQUIRE))
        return -ESHUTDOWN;
    to_len = tp_sockaddr_make(&to, family, addr, port);
    ep = p->w[worker].ep[TP_DIR_TO_DEV];
    return ep->ops->inject_to(ep, &to, to_len, data, len);
}

int tp_pump_transform_control(struct tp_pump *p, int worker, const uint8_t *msg, size_t len)
{
    int first = worker < 0 ? 0 : worker, last = worker < 0 ? p->nworkers - 1 : worker;

    if (!p->cfg.xf || !p->cfg.xf->ops->control)
        return -ENOTSUP;
    if (worker >= p->nworkers)
        return -EINVAL;
    if (len > TUNPUMP_CONTROL_MAX)
        return -EMSGSIZE;
    for (int i = first; i <= last; i++) {
        int rc = tp__xf_post(&p->w[i].xf, msg, len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int tp_pump_inject_transform(struct tp_pump *p, int worker, int route, const uint8_t *data, size_t len)
{
    if (!p->cfg.xf || worker < 0 || worker >= p->nworkers || route < 0 || route >= TP_MAX_PEERS)
        return -EINVAL;
    if (len > TP__PKT_MAX)
        return -EMSGSIZE;
    return tp__xf_post_inject(&p->w[worker].xf, route, data, len);
}

/* ---- UDP peers ----------------------------------------------------------------- */

static int tp__udp_peer_args(const struct tp_pump *p, int idx, int family, unsigned port, int removing)
{
    const struct tp_ep *ep;

    if (p->cfg.kind != TP_KIND_UDP || idx < 0 || idx >= TP_MAX_PEERS)
        return -EINVAL;
    if (__atomic_load_n(&p->stopped, __ATOMIC_ACQUIRE))
        return -ESHUTDOWN;
    ep = p->w[0].ep[TP_DIR_TO_DEV];
    if (!ep->ops->post_peer || p->cfg.sock.learn_peer)
        return -EOPNOTSUPP;   /* a learning endpoint's worker sets its peer itself */
    if (removing)
        return 0;
    if (family != p->cfg.sock.family)
        return -EAFNOSUPPORT;
    if (port == 0 || port > UINT16_MAX || UINT16_MAX - port < (unsigned)(p->nworkers - 1))
        return -EINVAL;   /* worker i uses port + i */
    return 0;
}

int tp_pump_set_peer(struct tp_pump *p, int idx, int family, const uint8_t *addr, unsigned port)
{
    int rc = tp__udp_peer_args(p, idx, family, port, addr == NULL);

    if (rc < 0)
        return rc;
    /* All or none: the single producer checks every ring has room first
     * (room only grows while it is not posting). */
    for (int i = 0; i < p->nworkers; i++) {
        struct tp_ep *ep = p->w[i].ep[TP_DIR_TO_DEV];
        if (ep->ops->peers_unapplied(ep) >= TP_EP_PEER_RING)
            return -EAGAIN;
    }
    for (int i = 0; i < p->nworkers; i++) {
        struct tp_ep *ep = p->w[i].ep[TP_DIR_TO_DEV];
        struct sockaddr_storage to;
        socklen_t to_len = 0;
        if (addr)
            to_len = tp_sockaddr_make(&to, family, addr, port + (unsigned)i);
        if ((rc = ep->ops->post_peer(ep, idx, addr ? &to : NULL, to_len)) < 0)
            return rc;   /* not reached: the arguments and the room were checked */
    }
    return 0;
}

int tp_pump_peers_pending(struct tp_pump *p)
{
    int n = 0;

    if (p->cfg.kind != TP_KIND_UDP || __atomic_load_n(&p->stopped, __ATOMIC_ACQUIRE))
        return 0;
    for (int i = 0; i < p->nworkers; i++) {
        struct tp_ep *ep = p->w[i].ep[TP_DIR_TO_DEV];
        if (!__atomic_load_n(&p->w[i].err, __ATOMIC_ACQUIRE) && ep->ops->peers_unapplied &&
            ep->ops->peers_unapplied(ep))
            n++;
    }
    return n;
}

/* A socket address as (family, 4 / 16 address bytes, host-order port). */
static void tp__addr_split(const struct sockaddr_storage *ss, int *family, uint8_t addr[16], unsigned *port)
{
    *family = ss->ss_family;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        memset(addr, 0, 16);
        memcpy(addr, &a->sin_addr, 4);
        *port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const void *)ss;
        memcpy(addr, &a->sin6_addr, 16);
        *port = ntohs(a->sin6_port);
    }
}

int tp_pump_get_peer(struct tp_pump *p, int worker, int idx, int *family, uint8_t addr[16], unsigned *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct tp_ep *ep;
    int rc;

    if (p->cfg.kind != TP_KIND_UDP || worker < 0 || worker >= p->nworkers)
        return -EINVAL;
    ep = p->w[worker].ep[TP_DIR_TO_DEV];
    if ((rc = ep->ops->get_peer(ep, idx, &ss, &len)) < 0)
        return rc;
    tp__addr_split(&ss, family, addr, port);
    return 0;
}

int tp_pump_local_addr(struct tp_pump *p, int worker, int *family, uint8_t addr[16], unsigned *port)
{
    struct sockaddr_storage ss;
    struct tp_ep *ep;
    int rc;

    if (p->cfg.kind != TP_KIND_UDP || worker < 0 || worker >= p->nworkers)
        return -EINVAL;
    ep = p->w[worker].ep[TP_DIR_TO_DEV];
    if ((rc = ep->ops->local_addr(ep, &ss)) < 0)
        return rc;
    tp__addr_split(&ss, family, addr, port);
    return 0;
}
