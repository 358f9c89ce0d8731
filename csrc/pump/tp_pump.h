/* The pump: one worker thread per queue fd, forwarding between a TUN/TAP
 * device and an endpoint (another device, UDP, or a TCP stream) without the
 * GIL. Public API; functions return 0 or -errno. */
#ifndef TP_PUMP_H
#define TP_PUMP_H

#include <stddef.h>
#include <stdint.h>

#include "tp_flow.h"

struct tunpump_transform;   /* tunpump.h: the public transform ABI */

#define TP_MAX_BATCH 256
#define TP_MAX_WORKERS 256
#define TP_MAX_PEERS 16
/* Packets per worker that may wait for verdicts. Each waits in a slot of
 * 65,663 bytes (headroom + the largest packet), made at start: at this limit
 * that is about 257 MiB of address space per queue (pages are touched only
 * as packets wait; the default 256 is about 16 MiB). */
#define TP_MAX_PENDING 4096
/* Punted packets per worker waiting for Python, in 64 KiB slots made at start. */
#define TP_DEFAULT_PUNT_RING 64
#define TP_MAX_PUNT_RING 4096

/* The two directions a worker moves packets in. */
enum tp_dir {
    TP_DIR_TO_EP = 0,    /* device -> endpoint (where verdicts apply) */
    TP_DIR_TO_DEV = 1,   /* endpoint -> device */
    TP_DIR__COUNT = 2
};

enum tp_kind { TP_KIND_TUN = 1, TP_KIND_UDP = 2, TP_KIND_TCP = 3 };

/* The per-packet prefix a device reads and writes: [PI][vnet_hdr][packet]. */
struct tp_fmt {
    int pi;          /* 1: 4-byte packet information header */
    int vnet_hdr_sz; /* 0, 10 or 12 (the prefix buffer holds 16 bytes) */
    int tap;         /* 1: Ethernet frames */
    unsigned offloads; /* TUN_F_* in force: which super-packets it hands over and takes */
};

/* Where the vnet_hdr starts in the prefix, and how long the prefix is. */
static inline int tp_fmt_vnet_off(const struct tp_fmt *f) { return f->pi ? 4 : 0; }
static inline int tp_fmt_prefix_len(const struct tp_fmt *f) { return tp_fmt_vnet_off(f) + f->vnet_hdr_sz; }

struct tp_dev_cfg {
    int nfds;
    const int *fds; /* one per queue; never closed by the pump */
    struct tp_fmt fmt;
};

struct tp_sock_cfg {
    int family;                   /* AF_INET or AF_INET6 */
    unsigned char local_addr[16];
    unsigned local_port;          /* host order; worker i uses local_port + i (0: ephemeral) */
    int has_remote;               /* UDP without it nor learn_peer: no peers until tp_pump_set_peer */
    int nremotes;                 /* UDP: several peers, chosen per flow by ROUTE (1 otherwise) */
    unsigned char remote_addr[TP_MAX_PEERS][16];
    unsigned remote_port[TP_MAX_PEERS];   /* worker i talks to remote_port + i */
    int listen;                   /* TCP: 1 server, 0 client */
    int learn_peer;               /* UDP: accept the first sender as the peer */
    int sock_buf;                 /* SO_SNDBUF / SO_RCVBUF bytes; 0: kernel default */
    int netns_fd;                 /* create sockets in this namespace; -1: caller's */
    unsigned max_frame;           /* TCP: largest frame accepted */
    /* UDP learn_peer: a new source replaces the learned peer only once the
     * peer has been silent this long (0: never). TCP server with a remote:
     * connections from other addresses are refused (has_remote). */
    int64_t peer_timeout_ns;
};

/* The control plane: a flow table per worker, Python asked about new flows. */
struct tp_ctl_cfg {
    int enabled;                  /* classify device -> endpoint packets by flow */
    int events;                   /* post peer / error events (implied by enabled) */
    uint32_t table_size;          /* flows per worker */
    int64_t idle_ns;              /* a flow unseen this long is evicted */
    int64_t decision_ns;          /* a verdict not given within this applies the default */
    uint8_t default_verdict;      /* TP_VERDICT_FORWARD (fail-open) or TP_VERDICT_DROP */
    uint32_t pending_limit;       /* packets per worker waiting for verdicts (<= TP_MAX_PENDING) */
    uint32_t punt_ring;           /* punted packets held per worker for Python: a power of two
                                   * up to TP_MAX_PUNT_RING, 64 KiB each; 0: TP_DEFAULT_PUNT_RING */
};

struct tp_pump_cfg {
    int nworkers;
    int batch;                    /* 1..TP_MAX_BATCH */
    struct tp_dev_cfg dev;
    int kind;
    struct tp_dev_cfg peer_dev;   /* TP_KIND_TUN */
    struct tp_sock_cfg sock;      /* TP_KIND_UDP / TP_KIND_TCP */
    struct tp_ctl_cfg ctl;
    /* A transform (tunpump.h) on every packet in both directions; NULL: none.
     * Needs ctl.events for TUNPUMP_TO_PYTHON packets to reach the control side. */
    const struct tunpump_transform *xf;
};

enum tp_drop {
    TP_DROP_ENOBUFS,
    TP_DROP_TOO_BIG,
    TP_DROP_MALFORMED,
    TP_DROP_UNKNOWN_PEER,
    TP_DROP_NO_PEER,
    TP_DROP_NO_CONNECTION,
    TP_DROP_WRITE_ERROR,
    TP_DROP_OFFLOAD,
    TP_DROP_STOPPED,
    TP_DROP_VERDICT,          /* Python said DROP */
    TP_DROP_PENDING_FULL,     /* too many packets waiting for verdicts */
    TP_DROP_PUNT_FULL,        /* Python is not taking punted packets fast enough */
    TP_DROP_TOO_MANY_SEGS,    /* a UDP_GRO read carried more segments than the batch holds */
    TP_DROP_TRANSFORM,        /* the transform said TUNPUMP_DROP */
    TP_DROP_TRANSFORM_OVERFLOW, /* the transform left a packet outside its room */
    TP_DROP__COUNT
};
extern const char *const tp_drop_names[TP_DROP__COUNT];
/* A transform's own drop reasons (tunpump.h: TUNPUMP_MAX_DROP_REASONS). */
#define TP_XF_MAX_DROP_REASONS 15

/* Indexed by enum tp_dir. */
/* Packets are wire packets on every path: a GSO super-packet counts as its
 * segments whether it is split, passed through whole (tp__pkt.segs) or
 * dropped, and a coalesced write counts the packets it carries. Bytes are
 * counted as they cross (a super-packet's headers once). */
struct tp_dir_stats {
    uint64_t pkts_in, bytes_in, pkts_out, bytes_out;
    uint64_t batches, read_calls, write_calls;
    uint64_t read_bytes, write_bytes;   /* bytes moved by those calls */
    uint64_t gso_split;                 /* super-packets cut into segments */
    uint64_t gso_passed;                /* super-packets passed through whole */
    uint64_t gro_built;                 /* super-packets built by coalescing */
    uint64_t gso_fallbacks;             /* UDP_SEGMENT refused: sent one by one */
    uint64_t punted;                    /* handed to Python (PUNT verdict, TUNPUMP_TO_PYTHON):
                                         * pkts_in == pkts_out + drops + punted */
    uint64_t drops[TP_DROP__COUNT];
    uint64_t xf_drops[TP_XF_MAX_DROP_REASONS];  /* TUNPUMP_DROP with drop_reason k: xf_drops[k - 1] */
};

/* Every field is a uint64_t: tp_pump_stats copies it word by word
 * (static assertions in tp_lifetime.c hold it to that). */
struct tp_worker_stats {
    struct tp_dir_stats dir[TP_DIR__COUNT];
    uint64_t wakeups;
    uint64_t connects, disconnects, protocol_errors, peer_learned;
    uint64_t flows_new, flows_evicted, flows_active, verdicts, decision_timeouts, events_lost, punted;
    uint64_t refused_connections;       /* TCP server: a connection not from the configured peer, closed */
    uint64_t peers_moved;               /* UDP: a transform's roam moved a peer (TP_EV_PEER_MOVED) */
    uint64_t roams_refused;             /* a transform's roam for no peer / not from a UDP source */
};

/* Events a worker posts for the control side (fixed-size records). */
enum tp_event_type {
    TP_EV_FLOW = 1,        /* a new flow (or one whose verdict expired): give a verdict */
    TP_EV_PACKET = 2,      /* a packet of a PUNT flow: the next punt slot holds it */
    TP_EV_EVICTED = 3,     /* reason: TP_EVICT_* */
    TP_EV_PEER_UP = 4,
    TP_EV_PEER_DOWN = 5,
    TP_EV_ERROR = 6,       /* the worker stopped: err, where */
    TP_EV_PUNT = 7,        /* a packet the transform sent to Python: dir, peer, addr;
                            * the next punt slot holds it */
    TP_EV_PEER_MOVED = 8,  /* UDP peer `peer` of this worker roamed to addr (a transform's roam) */
};
enum { TP_EVICT_IDLE = 1, TP_EVICT_FULL = 2 };

struct tp_event {
    uint8_t type;
    uint8_t reason;
    uint16_t worker;
    int32_t flow;
    uint32_t gen;
    int32_t err;
    uint32_t len;
    struct tp_flow_key key;
    uint64_t packets, bytes;
    int64_t age_ns;
    const char *where;
    uint8_t addr[16];      /* peer events */
    uint16_t port;
    uint8_t family;
    uint8_t dir;           /* TP_EV_PUNT: enum tp_dir */
    int16_t peer;          /* TP_EV_PUNT, TP_EV_PEER_MOVED: UDP peer index, -1 unknown */
};

struct tp_pump;

/* Validate cfg, make sockets (errors come back here, not from a thread) and
 * start the workers. On failure *err names the step. */
int tp_pump_start(const struct tp_pump_cfg *cfg, struct tp_pump **out, const char **err);
/* Ask every worker to stop, join them, close what the pump opened. Idempotent. */
int tp_pump_stop(struct tp_pump *p);
/* Wait up to timeout_ms for a worker to end on its own (an error): 1 if one
 * did, 0 on timeout. */
int tp_pump_wait(struct tp_pump *p, int timeout_ms);
/* The first worker error: 0, or -errno with *where naming the operation. */
int tp_pump_error(const struct tp_pump *p, int *worker, const char **where);
int tp_pump_nworkers(const struct tp_pump *p);
void tp_pump_stats(const struct tp_pump *p, int worker, struct tp_worker_stats *out);
/* Free after stop. */
void tp_pump_free(struct tp_pump *p);

/* ---- the control side: one thread calls these ---- */
/* An eventfd that becomes readable when events are waiting. */
int tp_pump_event_fd(const struct tp_pump *p);
/* The oldest event of any worker (round-robin), or NULL; then done with it.
 * For TP_EV_PACKET and TP_EV_PUNT, *data points at the packet (ev->len
 * bytes) until event_done. */
const struct tp_event *tp_pump_next_event(struct tp_pump *p, int *worker, const uint8_t **data);
void tp_pump_event_done(struct tp_pump *p, int worker, int type);
/* Give a verdict (TP_VERDICT_*) for a flow; -EAGAIN when the worker's ring is full. */
int tp_pump_verdict(struct tp_pump *p, int worker, int32_t flow, uint32_t gen, int verdict,
                    int route, uint32_t ttl_ms);
/* Wake the workers that were given verdicts. */
void tp_pump_kick(struct tp_pump *p);
/* Send a packet from the control thread through worker's UDP socket to peer `route`. */
int tp_pump_inject_udp(struct tp_pump *p, int worker, int route, const uint8_t *data, size_t len);
/* Send a datagram through worker's UDP socket to an address (family
 * AF_INET / AF_INET6, addr 4 / 16 bytes, port in host order): a handshake
 * reply to a sender that is not a configured peer. */
int tp_pump_inject_udp_addr(struct tp_pump *p, int worker, int family, const uint8_t *addr, unsigned port,
                            const uint8_t *data, size_t len);
/* UDP peers while the pump runs. Each worker owns its peer table; changes
 * are messages it applies between batches, in order. Peer idx
 * (0..TP_MAX_PEERS-1) becomes (family, addr, port + i) on worker i (the
 * per-queue port rule of the configured remotes), or is removed with addr
 * NULL. All workers or none get the change. Returns once posted
 * (tp_pump_peers_pending says when applied): -EINVAL not a UDP pump, idx
 * or port out of range; -EAFNOSUPPORT not the socket's family;
 * -EOPNOTSUPP the endpoint learns its peer; -EAGAIN a worker's ring of 16
 * changes is full; -ESHUTDOWN the pump stopped. */
int tp_pump_set_peer(struct tp_pump *p, int idx, int family, const uint8_t *addr, unsigned port);
/* How many workers have not applied every peer change posted yet (a
 * worker that ended counts as done). */
int tp_pump_peers_pending(struct tp_pump *p);
/* Worker's peer idx as it uses it now (learned, set or roamed): 0 with
 * family, addr (4 / 16 bytes) and port (host order); -ENOENT no such peer;
 * -EINVAL not a UDP pump or worker out of range. */
int tp_pump_get_peer(struct tp_pump *p, int worker, int idx, int *family, uint8_t addr[16], unsigned *port);
/* The address worker's UDP socket is bound to (an ephemeral port: the one
 * the kernel chose): 0, or -EINVAL not a UDP pump / worker out of range. */
int tp_pump_local_addr(struct tp_pump *p, int worker, int *family, uint8_t addr[16], unsigned *port);
/* Send a device packet (as the device would hand it over, without a
 * prefix) out of the endpoint THROUGH the transform, on worker's thread, to
 * UDP peer `route` (the transform may change it): Python's own data and
 * keepalives. -EAGAIN: the worker's ring of 64 is full; -EINVAL: no transform. */
int tp_pump_inject_transform(struct tp_pump *p, int worker, int route, const uint8_t *data, size_t len);
/* Hand the transform's control() a message on worker `worker` (-1: every
 * worker), run between its batches in order. -EAGAIN: a worker's message
 * ring is full (nothing was posted to it, nor to the workers after it);
 * -ENOTSUP: no transform or no control op; -EMSGSIZE: above TUNPUMP_CONTROL_MAX. */
int tp_pump_transform_control(struct tp_pump *p, int worker, const uint8_t *msg, size_t len);

#endif
