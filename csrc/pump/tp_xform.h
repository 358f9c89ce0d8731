/* The transform stage (tunpump.h's ABI, seen from inside the pump): per
 * worker, the transform's state, the descriptors handed to its batch
 * function, and the ring of control messages from Python. The stage copies
 * each packet of a batch into the direction's arena with room around it
 * (or, with TUNPUMP_IN_PLACE_TO_DEVICE / TUNPUMP_GATHER_TO_ENDPOINT, hands
 * packets over where they were read), calls the transform once, checks what it
 * left, and keeps, drops or punts each packet. Not public. */
#ifndef TP_XFORM_H
#define TP_XFORM_H

#include "tp_batch.h"
#include "tp_ctl_worker.h"
#include "tp_endpoint.h"
#include "tp_ring.h"
#include "tunpump.h"

#define TP__XF_MSG_RING 64      /* control messages waiting per worker */
#define TP__XF_INJECT_RING 64   /* injected packets waiting per worker (64 KiB each) */

/* The room a packet was handed in (tp__xf_place): [lo, hi). */
struct tp__xf_room {
    uint8_t *lo, *hi;
};

/* One control message in the ring. */
struct tp__xf_msg {
    uint32_t len;
    uint8_t data[TUNPUMP_CONTROL_MAX];
};

/* A packet Python injects to the endpoint through the transform. */
struct tp__xf_inject {
    uint32_t len;
    uint8_t peer;
    uint8_t data[TP__PKT_MAX];
};

struct tp__xf {
    const struct tunpump_transform_ops *ops;
    void *state;
    int created;                /* create() succeeded: destroy() is owed */
    int queue;
    int udp;                    /* the far end is a UDP socket: peer indexes mean something */
    int in_place_in;            /* TUNPUMP_IN_PLACE_TO_DEVICE: endpoint -> device packets are not copied */
    int gather_out;             /* TUNPUMP_GATHER_TO_ENDPOINT: nor device -> endpoint packets */
    int npeers;                 /* UDP: peer indexes a packet may leave to (the endpoint drops
                                 * one it has no peer for as no_peer too) */
    struct tp__ctl *ctl;        /* where TUNPUMP_TO_PYTHON packets and roam events go */
    struct tp_ep *far;          /* the endpoint packets come from (roaming); NULL: none */
    struct tunpump_pkt *desc;   /* cap of the larger direction */
    struct tp__xf_room *rooms;  /* idem: desc[i]'s room, which the transform cannot move */
    struct tp_ring msgs;        /* control -> worker: struct tp__xf_msg */
    struct tp_ring injects;     /* control -> worker: struct tp__xf_inject, sent through the transform */
    int msg_fd;                 /* eventfd: messages are waiting */
    unsigned ndrop_reasons;     /* names in ops->drop_reasons (checked by the binding) */
};

/* Lifetime (caller's thread): init allocates nothing and sets msg_fd -1;
 * alloc makes the descriptors, the ring and calls create(); free calls
 * destroy() and frees. */
void tp__xf_init(struct tp__xf *x, const struct tunpump_transform *t, int queue, int udp, int npeers,
                 struct tp__ctl *ctl);
int tp__xf_alloc(struct tp__xf *x, const struct tunpump_transform *t, int cap, int nqueues, const char **err);
void tp__xf_free(struct tp__xf *x);

/* Worker thread: the stage over d->pkts (after split, before coalescing). */
void tp__xf_run(struct tp__dir *d, enum tp_dir dir, struct tp_dir_stats *st);
/* Worker thread: run the control messages waiting, in order. */
void tp__xf_take_control(struct tp__xf *x);
/* Control thread: post one message (0, -EAGAIN when the ring is full). */
int tp__xf_post(struct tp__xf *x, const uint8_t *msg, size_t len);
/* Control thread: queue a device packet for the endpoint, through the
 * transform (0, -EAGAIN when the ring is full). */
int tp__xf_post_inject(struct tp__xf *x, int peer, const uint8_t *data, size_t len);
/* Worker thread: move queued injected packets into d (a free batch of the
 * device -> endpoint direction, whose source has format fmt) as if read
 * from the device. Returns the number moved. */
int tp__xf_take_injects(struct tp__xf *x, struct tp__dir *d, const struct tp_fmt *fmt, int batch);

#endif
