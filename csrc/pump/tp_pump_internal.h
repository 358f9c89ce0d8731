/* State shared by the pump's files (tp_pump.c, tp_endpoint.c). Not public. */
#ifndef TP_PUMP_INTERNAL_H
#define TP_PUMP_INTERNAL_H

#include "tp_pump.h"
#include "tp_flow.h"
#include "tp_ring.h"
#include "tp_vnet.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define TP__HEADROOM 64                          /* room for any prefix before a packet */
#define TP__PKT_MAX 65535                        /* the largest IP packet / frame / datagram */
#define TP__BUF_SIZE (TP__HEADROOM + TP__PKT_MAX + 64)
#define TP__STREAM_SIZE (256 * 1024)             /* TCP receive buffer: several frames */

/* Single writer (the worker); readers load relaxed. */
#define TP__ADD(field, n) __atomic_store_n(&(field), (field) + (uint64_t)(n), __ATOMIC_RELAXED)

/* A packet on its way: hdr[0..hdrlen) + data[0..len). hdr is set for the
 * segments of a split (their rewritten headers); pre is the PI / vnet_hdr
 * prefix it was read with, kept when the packet passes through whole. */
struct tp__pkt {
    uint8_t *data;
    uint32_t len;
    uint8_t *hdr;
    uint32_t hdrlen;
    uint8_t *pre;
    uint32_t prelen;
    int32_t group;     /* the read it came from: segments of one split share it */
    uint8_t route;     /* UDP: which peer (a ROUTE verdict) */
    uint8_t released;  /* came back from the pending queue: already counted in its flow */
};

/* A packet held while its flow waits for a verdict. */
struct tp__pending {
    int32_t flow;
    uint32_t gen;
    uint32_t len;      /* prefix + packet */
    int32_t slot;
};

struct tp__dir {
    int cap;                        /* packets the arrays hold */
    int n;                          /* packets in the batch */
    int next;                       /* next packet (socket sinks) or unit (device sinks) to send */
    size_t off;                     /* TCP: bytes of packet `next` (with its length) already sent */
    int pending;                    /* unsent packets wait for the sink to be writable */
    int nunits;                     /* device sinks: what the writes will be */
    uint8_t *bufs;                  /* reads: batch * TP__BUF_SIZE */
    struct tp__pkt *pkts;           /* cap */
    struct tp__pkt *raw;            /* batch: reads before they are split */
    uint8_t (*prefix)[16];          /* cap: prefixes made for a device sink */
    uint16_t *lenbe;                /* cap: TCP frame lengths, big-endian */
    uint8_t *seg_hdrs;              /* cap * TP_VNET_HDR_ROOM: headers of split segments */
    struct tp_gro_unit *units;      /* cap */
    struct tp_gro_pkt *gro;         /* cap */
    int *chain;                     /* cap: next packet of the same unit */
    uint32_t *skip;                 /* cap: header bytes a coalesced packet leaves out */
    struct iovec *iov;              /* 3 * cap */
    struct mmsghdr *msgs;           /* cap */
    uint8_t *cmsgs;                 /* cap * TP__CMSG_SPACE */
    struct sockaddr_storage names[TP_MAX_BATCH];
};

#define TP__CMSG_SPACE 32

enum tp__tcp_state { TP__TCP_DOWN, TP__TCP_CONNECTING, TP__TCP_UP };

struct tp__worker {
    struct tp_worker_stats st;      /* first: its own cache lines */
    struct tp_pump *pump;
    int idx;
    pthread_t thread;
    int thread_started;

    int dev_fd;                     /* queue fd of the device (not ours) */
    int peer_fd;                    /* peer device queue, UDP socket or TCP connection */
    int listen_fd;                  /* TCP server */
    int own_peer_fd;                /* 1 when the pump opened peer_fd */

    /* UDP / TCP: peer is peers[0]; a ROUTE verdict picks another */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct sockaddr_storage peers[TP_MAX_PEERS];
    socklen_t peer_lens[TP_MAX_PEERS];
    int npeers;
    int peer_known;
    struct sockaddr_storage local;
    socklen_t local_len;
    int udp_gso;                    /* UDP_SEGMENT usable: cleared when the kernel refuses */
    int udp_gro;                    /* UDP_GRO is on for the socket */
    enum tp__tcp_state tcp;
    int64_t next_connect_ns;
    int backoff_ms;
    uint8_t *stream;                /* TCP bytes received, not yet framed */
    size_t stream_len, stream_pos;
    int stream_bad;                 /* a bad frame length: close after this batch */

    struct tp__dir d[2];

    /* control plane */
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

    int err;                        /* -errno of the error that ended the worker */
    const char *err_where;
} __attribute__((aligned(64)));

struct tp__verdict {
    int32_t flow;
    uint32_t gen;
    uint8_t verdict;
    uint8_t route;
    uint32_t ttl_ms;
};

#define TP__EVENT_RING 4096
#define TP__VERDICT_RING 4096
#define TP__PUNT_RING 64

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

int64_t tp__now_ns(void);

/* tp_endpoint.c: sockets and batch I/O for each kind of endpoint. Reads fill
 * d->pkts (raw: one per read / datagram / frame); writes send d->pkts (socket
 * sinks) or d->units (device sinks) from d->next on. They return the number
 * handled, 0 when the fd had nothing / took nothing (EAGAIN), or -errno on an
 * error that ends the worker. */
int tp__sock_setup(struct tp__worker *w, int want_gro);
void tp__tcp_connect(struct tp__worker *w);
void tp__tcp_connected(struct tp__worker *w);
void tp__tcp_accept(struct tp__worker *w);
void tp__tcp_drop_conn(struct tp__worker *w, int protocol_error);
/* tp_pump.c: tell the control side a peer came or went (TP_EV_PEER_*). */
void tp__post_peer(struct tp__worker *w, int type, const struct sockaddr_storage *ss);

int tp__tun_read(int fd, const struct tp_fmt *fmt, struct tp__dir *d, int batch,
                 struct tp_dir_stats *st);
int tp__tun_write(int fd, const struct tp_fmt *dst, const struct tp_fmt *src,
                  struct tp__dir *d, struct tp_dir_stats *st);
int tp__udp_read(struct tp__worker *w, const struct tp_fmt *dev, struct tp__dir *d, int batch,
                 struct tp_dir_stats *st);
int tp__udp_write(struct tp__worker *w, struct tp__dir *d, struct tp_dir_stats *st);
int tp__tcp_read(struct tp__worker *w, const struct tp_fmt *dev, struct tp__dir *d, int batch,
                 struct tp_dir_stats *st);
int tp__tcp_frames(struct tp__worker *w, const struct tp_fmt *dev, struct tp__dir *d, int batch,
                   struct tp_dir_stats *st);
int tp__tcp_has_frame(const struct tp__worker *w);
void tp__tcp_consumed(struct tp__worker *w);
int tp__tcp_write(struct tp__worker *w, struct tp__dir *d, struct tp_dir_stats *st);

/* Drop the unsent rest of a batch, counting it under `reason`. */
void tp__dir_drop_rest(struct tp__dir *d, int to_device, struct tp_dir_stats *st, enum tp_drop reason);

#endif
