/* The endpoint interface: what a worker's loop needs from either end of a
 * worker, whatever its kind (a TUN/TAP queue, a UDP socket, a TCP stream).
 * In the spirit of wireguard-go's tun.Device / conn.Bind and libuv's
 * handles: each kind is one file (tp_ep_<kind>.c) with its own state struct
 * that starts with a struct tp_ep, and an ops table. The loop calls the ops
 * once per batch; it knows no kind. An endpoint tells the worker about its
 * peer through one call, sink.note(); it never reaches into the pump.
 *
 * A worker has two endpoints: ep[TP_DIR_TO_EP] is the device it serves
 * (read in direction TP_DIR_TO_EP), ep[TP_DIR_TO_DEV] the other end (read in
 * direction TP_DIR_TO_DEV). Each is the sink of the other's direction. */
#ifndef TP_ENDPOINT_H
#define TP_ENDPOINT_H

#include "tp_batch.h"
#include "tp_pump.h"

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define TP_EP_NFDS 2          /* pollfds an endpoint may ask the loop to watch */

/* What an endpoint tells its worker (sink.note). */
enum tp_ep_note {
    TP_EP_CONNECTED,          /* a stream came up; addr is the peer */
    TP_EP_LEARNED,            /* a datagram peer was learned; addr is the peer */
    TP_EP_DISCONNECTED,       /* the stream went down (addr): what was queued to or
                               * from it is lost and is dropped as no_connection */
    TP_EP_PROTOCOL_ERROR,     /* the peer broke the framing; a disconnect follows */
    TP_EP_FORGOTTEN,          /* a learned datagram peer (addr), silent for the peer
                               * timeout, gives way to a new one (TP_EP_LEARNED follows);
                               * nothing queued is lost */
    TP_EP_REFUSED,            /* a connection from addr, not the configured peer, was closed */
};

struct tp_ep_sink {
    void (*note)(void *ctx, enum tp_ep_note what, const struct sockaddr_storage *addr);
    void *ctx;
};

/* What open() gets. Sockets are made on the caller's thread, inside the
 * endpoint's namespace, so a port in use fails start(). */
struct tp_ep_args {
    int idx;                          /* worker index: queue idx, port + idx */
    int fd;                           /* device kinds: the queue fd (not ours) */
    const struct tp_fmt *fmt;         /* device kinds: its format */
    const struct tp_sock_cfg *sock;   /* socket kinds */
    const struct tp_fmt *dev_fmt;     /* socket kinds: what the packets must look like */
    int want_gro;                     /* UDP: the device takes coalesced runs */
    int transform;                    /* a transform comes next: packets need not look like the
                                       * device's yet (the stage checks after it); UDP tags each
                                       * packet with its source (d->names) and peer index */
    int unknown_sources;              /* UDP, with a transform flagged TUNPUMP_UNKNOWN_SOURCES:
                                       * datagrams from no configured peer go on, tagged
                                       * TP_EP_NO_PEER, instead of being dropped as unknown_peer */
    struct tp_ep_sink sink;
};

/* The route of a datagram from no configured peer (tp__pkt.route): no
 * peer index (every index is below TP_MAX_PEERS). */
#define TP_EP_NO_PEER 0xFF
/* Peer changes the control thread may post ahead of a worker (post_peer). */
#define TP_EP_PEER_RING 16

struct tp_ep;

struct tp_ep_ops {
    /* Make the endpoint (*out) or return -errno; nothing is left open on
     * failure. The state is one malloc'd block starting with struct tp_ep:
     * the pump frees it with free() after close. */
    int (*open)(const struct tp_ep_args *a, struct tp_ep **out);
    /* Close the fds it opened and free what it allocated beyond the state
     * block (at tp_pump_free, when no control-thread call can run; again is
     * harmless). */
    void (*close)(struct tp_ep *ep);
    /* Optional, on the worker thread before the loop (a TCP client connects). */
    void (*begin)(struct tp_ep *ep);
    /* Fill pfd[0..TP_EP_NFDS) (fd -1: unused). want: POLLIN when the loop
     * would read, POLLOUT when a batch waits for room. May lower
     * *timeout_ms (-1: none) for a timer of its own. */
    void (*poll)(struct tp_ep *ep, struct pollfd *pfd, short want, int *timeout_ms);
    /* After poll: handle its own fds and timers (accept, connect), then say
     * what the batch I/O may do: TP_EP_READ | TP_EP_WRITE, or TP_EP_AGAIN
     * to end this loop turn. */
    int (*ready)(struct tp_ep *ep, const struct pollfd *pfd);
    /* Read a batch into d (d->bufs, or the endpoint's own buffer): the
     * number of packets, 0 (nothing), or -errno ending the worker. */
    int (*read)(struct tp_ep *ep, struct tp__dir *d, int batch, struct tp_dir_stats *st);
    /* Send d from d->next on; on EAGAIN set d->pending and return. Returns
     * the number sent or -errno ending the worker. */
    int (*write)(struct tp_ep *ep, struct tp__dir *d, struct tp_dir_stats *st);
    /* Optional: packets are waiting in the endpoint, read without polling. */
    int (*buffered)(const struct tp_ep *ep);
    /* Optional: the last batch read went out (or was dropped) in full. */
    void (*consumed)(struct tp_ep *ep);
    /* Optional, from the control thread: send one datagram to peer `route`. */
    int (*inject)(struct tp_ep *ep, int route, const uint8_t *data, size_t len);
    /* Optional, from the control thread: send one datagram to an address
     * (a handshake reply to a sender that is not a peer yet). */
    int (*inject_to)(struct tp_ep *ep, const struct sockaddr_storage *to, socklen_t to_len,
                     const uint8_t *data, size_t len);
    /* Peers that change while the pump runs (UDP). The worker owns its peer
     * table: the control thread posts changes, which the worker applies in
     * ready(), between batches. */
    /* Optional, control thread: peer idx (< TP_MAX_PEERS) becomes `addr`
     * (len bytes), or is removed (addr NULL). 0, -EAGAIN when the ring of
     * changes is full, -EOPNOTSUPP when the endpoint learns its peer. */
    int (*post_peer)(struct tp_ep *ep, int idx, const struct sockaddr_storage *addr, socklen_t len);
    /* Optional, control thread: changes posted and not yet applied. */
    unsigned (*peers_unapplied)(const struct tp_ep *ep);
    /* Optional, control thread: a consistent copy of peer idx; 0, or
     * -ENOENT when there is none. */
    int (*get_peer)(struct tp_ep *ep, int idx, struct sockaddr_storage *out, socklen_t *len);
    /* Optional, worker thread (the transform stage): a transform
     * authenticated a datagram from `from` as peer idx (roaming). 1: the
     * peer moved there; 0: it was there; -EINVAL: no such peer. */
    int (*roam)(struct tp_ep *ep, int idx, const struct sockaddr_storage *from);
    /* Optional, control thread: the address its socket is bound to. */
    int (*local_addr)(struct tp_ep *ep, struct sockaddr_storage *out);
    int owns_buffer;                  /* read() points into its own buffer: no d->bufs */
    const char *read_where;           /* names a read error when it is the far end */
};

#define TP_EP_READ 1
#define TP_EP_WRITE 2
#define TP_EP_AGAIN 4

/* The head of every kind's state. */
struct tp_ep {
    const struct tp_ep_ops *ops;
    const struct tp_fmt *fmt;         /* device kinds: packet format; NULL: a socket */
    struct tp_ep_sink sink;
};

extern const struct tp_ep_ops tp_ep_tun_ops;
extern const struct tp_ep_ops tp_ep_udp_ops;
extern const struct tp_ep_ops tp_ep_tcp_ops;

#endif
