/* tunpump.h: tunpump's public C API for packet transforms (ABI version 2).
 *
 * A transform is C code that runs on tunpump's worker threads, without the
 * GIL, on every packet in both directions:
 *
 *   device -> endpoint:  read, (verdicts), split, TRANSFORM, send (UDP_SEGMENT)
 *   endpoint -> device:  read (UDP_GRO), TRANSFORM, coalesce, write
 *
 * Build it in your own extension module against tunpump.get_include() (this
 * header only: never link against tunpump's private symbols), and hand it to
 * tunpump as a PyCapsule named TUNPUMP_TRANSFORM_CAPSULE whose pointer is a
 * `struct tunpump_transform`:
 *
 *     static const struct tunpump_transform_ops my_ops = {
 *         .abi = TUNPUMP_TRANSFORM_ABI, .name = "xor", ...
 *     };
 *     struct tunpump_transform *t = malloc(sizeof(*t) + cfg_len);
 *     t->ops = &my_ops; t->config = ...; t->config_len = cfg_len;
 *     PyCapsule_New(t, TUNPUMP_TRANSFORM_CAPSULE, destructor_that_frees_t);
 *
 * then `tunpump.Pump(dev, ep, transform=capsule)`. The pump keeps a reference
 * to the capsule while it runs; the capsule (and what it points at) must stay
 * unchanged for that long. docs/transforms.md has the rules and an example.
 *
 * Threads:
 *   create / destroy  on the thread that starts / frees the pump (the one
 *                     calling Pump.start() / stop(), GIL NOT held, inside the
 *                     endpoint's network namespace for create), once per
 *                     worker, never while that worker runs;
 *   batch / control   on worker `queue`'s own thread, GIL not held, never at
 *                     the same time as each other for one worker. Different
 *                     workers run concurrently, each with its own state.
 *
 * A batch or control function must never block, sleep, take a lock another
 * thread may hold long, allocate per packet, log, or call into Python. */
#ifndef TUNPUMP_H
#define TUNPUMP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* 2: struct tunpump_pkt gained head, out, head_len and out_size
 * (TUNPUMP_GATHER_TO_ENDPOINT). A transform built for 1 is refused: rebuild
 * it against this header. */
#define TUNPUMP_TRANSFORM_ABI 2
/* The capsule name spells the ABI, like scipy's LowLevelCallable. */
#define TUNPUMP_TRANSFORM_CAPSULE "tunpump.transform.v2"

/* Room every packet has around it (more is possible: read pkt->headroom
 * and pkt->tailroom): enough for a WireGuard-size header and tag. The one
 * exceptions are TUNPUMP_IN_PLACE_TO_DEVICE and TUNPUMP_GATHER_TO_ENDPOINT
 * (below). */
#define TUNPUMP_MIN_HEADROOM 64
#define TUNPUMP_MIN_TAILROOM 64
/* The largest packet a transform may leave (an IP packet / datagram). */
#define TUNPUMP_MAX_PACKET 65535
/* The largest control message (tunpump_transform_ops.control). */
#define TUNPUMP_CONTROL_MAX 1024
/* The most drop reasons a transform may name (tunpump_transform_ops.drop_reasons). */
#define TUNPUMP_MAX_DROP_REASONS 15

/* Directions, as tunpump's stats name them. */
enum tunpump_dir {
    TUNPUMP_DIR_TO_ENDPOINT = 0,   /* from the device, on its way out (encrypt) */
    TUNPUMP_DIR_TO_DEVICE = 1,     /* from the endpoint, on its way in (decrypt) */
};

/* What happens to a packet after the batch function (pkt->outcome). */
enum tunpump_outcome {
    TUNPUMP_PASS = 0,        /* go on (the preset value) */
    TUNPUMP_DROP = 1,        /* dropped, counted under pkt->drop_reason's name (0: "transform") */
    TUNPUMP_TO_PYTHON = 2,   /* punted: Pump(on_punt=...) gets it (a handshake message) */
};

/* Flags (tunpump_transform_ops.flags). */
/* Super-packets are cut into wire-size segments before the device ->
 * endpoint stage (the segments still leave with UDP_SEGMENT), and packets
 * are coalesced only after the endpoint -> device stage. Encryption needs it:
 * without it a transform may see GSO super-packets (pkt->gso). */
#define TUNPUMP_NEEDS_SEGMENTS 0x1u
/* Datagrams from a source that is no configured UDP peer reach the endpoint
 * -> device batch with peer = -1 and their src (a handshake initiation, a
 * peer that roamed), instead of being dropped as "unknown_peer". The
 * transform must authenticate them: whatever it passes goes to the device. */
#define TUNPUMP_UNKNOWN_SOURCES 0x2u
/* Every packet the batch function passes endpoint -> device was
 * authenticated end to end (an AEAD's tag verified over the whole packet):
 * tunpump then trusts its inner IP and L4 checksums when it coalesces
 * packets for the device instead of verifying them again, as Linux's
 * WireGuard marks decrypted packets CHECKSUM_UNNECESSARY. A transform that
 * passes bytes it did not authenticate must not set it. */
#define TUNPUMP_AUTHENTICATED 0x4u
/* Endpoint -> device, the batch function never grows a packet: it only
 * reads and rewrites bytes inside [data, data + len), moves data forward
 * and shortens len (decryption: strip a header and a tag, decrypt in
 * place). tunpump then hands it each packet in one piece where it was
 * received, without copying it, with headroom and tailroom 0; a packet it
 * grows anyway is dropped as "transform_overflow", and a write outside
 * [data, data + len) would land in the next packet. Segments tunpump cut
 * from a super-packet (a relay's second device) are still copied with room,
 * and device -> endpoint is not affected. */
#define TUNPUMP_IN_PLACE_TO_DEVICE 0x8u
/* Device -> endpoint, the batch function reads each packet where tunpump
 * holds it, read-only and in up to two pieces: pkt->head[0 .. head_len)
 * then data[0 .. len) (a segment cut from a super-packet is its own new
 * headers and its share of the payload; head_len is 0 for a packet in one
 * piece), with headroom and tailroom 0. A packet it changes it writes into
 * pkt->out[0 .. out_size), scratch of at least head_len + len +
 * TUNPUMP_MIN_HEADROOM + TUNPUMP_MIN_TAILROOM bytes, setting data and len
 * there and head_len to 0 (encryption seals from the pieces into out, where
 * without the flag tunpump first copies each packet into room of its own).
 * A packet left with head, head_len, data and len as given leaves as it
 * came, without any copy (a transform that only looks, or passes some
 * packets unchanged). Anything else passed or punted is dropped as
 * "transform_overflow" (a DROP counts under its own reason). Endpoint ->
 * device is not affected (there, and without the flag, head_len is 0 and
 * must stay 0). */
#define TUNPUMP_GATHER_TO_ENDPOINT 0x10u
/* Every flag this ABI knows: a transform with another bit set is refused. */
#define TUNPUMP_ALL_FLAGS                                                                                   \
    (TUNPUMP_NEEDS_SEGMENTS | TUNPUMP_UNKNOWN_SOURCES | TUNPUMP_AUTHENTICATED | TUNPUMP_IN_PLACE_TO_DEVICE | \
     TUNPUMP_GATHER_TO_ENDPOINT)

/* One packet, as the batch function sees it. */
struct tunpump_pkt {
    uint8_t *data;          /* in/out: the packet (an IP packet, or an Ethernet frame for TAP) */
    uint32_t len;           /* in/out */
    uint32_t headroom;      /* writable bytes before data, when the batch function is called */
    uint32_t tailroom;      /* writable bytes after data + len, idem */
    uint16_t queue;         /* the worker (queue) index */
    int16_t peer;           /* the UDP peer index. device -> endpoint: where it goes (a ROUTE
                             * verdict's, else 0); the transform may change it (cryptokey
                             * routing), a peer the endpoint lacks drops the packet as
                             * "no_peer". endpoint -> device: the configured peer it came
                             * from; -1: a stranger (TUNPUMP_UNKNOWN_SOURCES) or not a
                             * UDP endpoint. With roam, the transform sets it (below) */
    int32_t flow;           /* the flow table entry (verdicts on), -1: none */
    uint8_t gso;            /* 1: a GSO super-packet (never with TUNPUMP_NEEDS_SEGMENTS) */
    uint8_t outcome;        /* out: enum tunpump_outcome; preset to TUNPUMP_PASS */
    uint16_t gso_size;      /* with gso: the segment payload size */
    /* endpoint -> device from a UDP endpoint: the datagram's source address
     * (roaming); NULL otherwise. */
    const struct sockaddr *src;
    socklen_t src_len;
    /* out, with TUNPUMP_DROP: why. 0 (preset): the generic reason
     * "transform"; k >= 1: ops->drop_reasons[k - 1], counted in stats as
     * "<ops->name>_<reason>". A k the transform does not name counts as
     * "transform". */
    uint8_t drop_reason;
    /* out, endpoint -> device from a UDP endpoint: 1 = this datagram
     * authenticated as coming from configured peer `peer` (set it too):
     * tunpump makes src that peer's address from now on (roaming) and tells
     * Python (a PeerMoved event). Honoured whatever the outcome (a keepalive
     * that is dropped still moves its peer). A peer index the endpoint has
     * no peer for, or roam elsewhere, is counted ("roams_refused") and
     * ignored. Preset to 0. */
    uint8_t roam;
    /* With TUNPUMP_GATHER_TO_ENDPOINT, device -> endpoint (else NULL and 0):
     * the packet's first piece, read-only (the packet is head[0 .. head_len)
     * then data[0 .. len)), and the scratch the transform writes a changed
     * packet into. See the flag for what the batch function may leave. */
    const uint8_t *head;
    uint8_t *out;
    uint32_t head_len;
    uint32_t out_size;
};

/* The transform's functions. Unused optional ones are NULL. None of them
 * may call into Python (none holds the GIL). */
struct tunpump_transform_ops {
    uint32_t abi;           /* TUNPUMP_TRANSFORM_ABI */
    uint32_t flags;         /* TUNPUMP_NEEDS_SEGMENTS, ... */
    const char *name;       /* for errors and logs */
    /* Per-worker state, made before worker `queue` starts: *state (may stay
     * NULL). Returns 0 or -errno, which fails Pump.start(). `config` is the
     * capsule's blob. Optional. */
    int (*create)(const void *config, size_t config_len, int queue, int nqueues, void **state);
    /* Free what create made, after the worker ended. Optional. */
    void (*destroy)(void *state);
    /* The batch of one direction: set pkts[i].outcome, and data / len as the
     * packet grows, shrinks or moves, staying inside [data - headroom,
     * data + len + tailroom) and at most TUNPUMP_MAX_PACKET bytes long. A
     * packet outside that room is dropped and counted as
     * "transform_overflow". (With TUNPUMP_GATHER_TO_ENDPOINT, device ->
     * endpoint packets are read where they lie and written into pkt->out:
     * see the flag.) Required. */
    void (*batch)(void *state, enum tunpump_dir dir, struct tunpump_pkt *pkts, unsigned n);
    /* A message from Python (Pump.transform_control), run on the worker
     * thread between batches, in the order they were sent: the place to
     * install keys, so no batch ever sees a half-written one. msg is valid
     * during the call only. Optional (without it control messages are
     * refused). */
    void (*control)(void *state, const uint8_t *msg, size_t len);
    /* The transform's own drop reasons (pkt->drop_reason k >= 1 names
     * drop_reasons[k - 1]): a NULL-terminated array of at most
     * TUNPUMP_MAX_DROP_REASONS names of lowercase letters, digits and '_'
     * (1 to 31 characters), shown by stats as "<name>_<reason>". NULL: none
     * (every drop is "transform"). */
    const char *const *drop_reasons;
};

/* What the capsule points at. */
struct tunpump_transform {
    const struct tunpump_transform_ops *ops;
    const void *config;     /* handed to create(); may be NULL */
    size_t config_len;
};

#endif /* TUNPUMP_H */
