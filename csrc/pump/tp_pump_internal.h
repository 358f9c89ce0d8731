/* The worker and pump structs the pump's files share (tp_lifetime.c,
 * tp_loop.c, tp_ctl_api.c). Not public. */
#ifndef TP_PUMP_INTERNAL_H
#define TP_PUMP_INTERNAL_H

#include "tp_batch.h"
#include "tp_ctl_worker.h"
#include "tp_endpoint.h"
#include "tp_pump.h"
#include "tp_xform.h"

#include <pthread.h>

struct tp__worker {
    struct tp_worker_stats st;      /* first: its own cache lines */
    struct tp_pump *pump;
    int idx;
    pthread_t thread;
    int thread_started;

    /* ep[TP_DIR_TO_EP]: the device, the source of TP_DIR_TO_EP;
     * ep[TP_DIR_TO_DEV]: the far end, the source of TP_DIR_TO_DEV. */
    struct tp_ep *ep[TP_DIR__COUNT];
    struct tp__dir d[TP_DIR__COUNT];
    struct tp__ctl ctl;
    struct tp__xf xf;               /* the transform's per-worker side (ops NULL: none) */

    int err;                        /* -errno of the error that ended the worker */
    const char *err_where;
    int64_t fail_next_ns;           /* no TP_EV_UNREACHABLE before then (one a second) */
} __attribute__((aligned(64)));

struct tp_pump {
    struct tp_pump_cfg cfg;
    int event_fd;                   /* eventfd: workers posted events */
    int rr;                         /* control side: next worker to read events from */
    int stop_fd;                    /* eventfd: workers stop */
    int exit_fd;                    /* eventfd: a worker ended on its own */
    int netns_fd;
    int stopped;
    int nworkers;
    struct tp__worker *w;
};

/* tp_loop.c: a worker thread's body, and the sink its endpoints report to. */
void *tp__worker_main(void *arg);
void tp__worker_note(void *ctx, enum tp_ep_note what, const struct sockaddr_storage *addr);
void tp__worker_fail(void *ctx, enum tp_ep_fail what, const struct sockaddr_storage *addr, int err);

#endif
