/* The control plane, worker side: flow classification of device -> endpoint
 * packets, verdicts coming back, packets waiting for them (pending), packets
 * handed to Python (punt), and events for the control thread. Not public. */
#ifndef TP_CTL_WORKER_H
#define TP_CTL_WORKER_H

#include "tp_batch.h"
#include "tp_flow.h"
#include "tp_pump.h"
#include "tp_ring.h"

#include <sys/socket.h>

#define TP__EVENT_RING 4096
#define TP__VERDICT_RING 4096

struct tp__verdict {
    int32_t flow;
    uint32_t gen;
    uint8_t verdict;
    uint8_t route;
    uint32_t ttl_ms;
};

/* A packet held while its flow waits for a verdict. */
struct tp__pending {
    int32_t flow;
    uint32_t gen;
    uint32_t len;      /* prefix + packet */
    int32_t slot;
};

struct tp__ctl {
    const struct tp_ctl_cfg *cfg;
    const struct tp_fmt *dev_fmt;   /* the format of the packets classified */
    struct tp_worker_stats *st;     /* the worker's counters */
    int idx;
    int event_fd;                   /* the pump's: wakes the control thread */
    struct tp_flow_table flows;
    struct tp_ring events;          /* worker -> control: struct tp_event */
    struct tp_ring verdicts;        /* control -> worker: struct tp__verdict */
    struct tp_ring punts;           /* worker -> control: punted packets */
    int ctl_fd;                     /* eventfd: verdicts are waiting */
    int kicked;                     /* control side: verdicts posted since the last kick */
    int events_posted;
    uint8_t *pend_bufs;             /* pending_limit * TP__BUF_SIZE */
    struct tp__pending *pend;       /* arrival order */
    int32_t *pend_free;
    int npend, nfree;
    int releasing;                  /* decided packets still queued: the device waits */
    uint8_t *punt_hdrs;             /* split scratch for punted super-packets */
    int64_t now;
};

/* Lifetime: init sets every fd to -1 and allocates nothing; alloc makes the
 * table, rings and pending slots (events only: the rings alone); free is
 * safe after init whatever alloc did. */
void tp__ctl_init(struct tp__ctl *c, const struct tp_ctl_cfg *cfg, const struct tp_fmt *dev_fmt,
                  struct tp_worker_stats *st, int idx, int event_fd);
int tp__ctl_alloc(struct tp__ctl *c);
void tp__ctl_free(struct tp__ctl *c);

/* Events for the control thread; one eventfd write per loop turn (notify). */
void tp__ctl_post_peer(struct tp__ctl *c, int type, const struct sockaddr_storage *ss);
/* TP_EV_UNREACHABLE: reason TP_UNREACH_*, err a positive errno. */
void tp__ctl_post_unreachable(struct tp__ctl *c, int reason, const struct sockaddr_storage *ss, int err);
void tp__ctl_post_error(struct tp__ctl *c, int err, const char *where);
/* A transform's roam moved UDP peer `peer` to ss: counted, and an event. */
void tp__ctl_peer_moved(struct tp__ctl *c, int peer, const struct sockaddr_storage *ss);
void tp__ctl_notify(struct tp__ctl *c);

/* Look the packet's flow up (making it on first sight) and apply its
 * verdict. Returns 1 when the packet stays in the batch, 0 when it was
 * taken (dropped, punted or pending; counted in st). */
int tp__ctl_classify(struct tp__ctl *c, struct tp__pkt *r, struct tp_dir_stats *st);

/* A packet the transform sent to Python (TUNPUMP_TO_PYTHON): into the punt
 * ring with its direction, peer and source, or dropped as punt_full. x is
 * checked (tp_xform.c): head_len is 0, or head is the packet's first piece. */
struct tunpump_pkt;
/* segs: the wire packets x stands for (a super-packet passed whole: its segments). */
void tp__ctl_punt_xf(struct tp__ctl *c, enum tp_dir dir, const struct tunpump_pkt *x, struct tp_dir_stats *st,
                     unsigned segs);

/* Once per loop turn: take verdicts (ctl_ready: the eventfd fired), evict
 * idle flows, and move decided pending packets into d (a new batch) when it
 * is free. Returns the number moved, -1 when nothing waited or d was busy;
 * after a pass, c->releasing says decided packets still wait. */
int tp__ctl_turn(struct tp__ctl *c, int ctl_ready, struct tp__dir *d, int batch);
/* How long the loop may sleep with flows and pending packets to watch. */
int tp__ctl_timeout(const struct tp__ctl *c, int timeout_ms);
/* At stop: what still waits is lost; count it. */
void tp__ctl_drop_pending(struct tp__ctl *c, struct tp_dir_stats *st);

#endif
