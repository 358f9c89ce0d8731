/* The batch: packets on their way through one direction of a worker, and the
 * arrays made once at start so that nothing is allocated per packet. Shared
 * by the loop, batch preparation, the control plane and every endpoint kind.
 * Not public. */
#ifndef TP_BATCH_H
#define TP_BATCH_H

#include "tp_pump.h"
#include "tp_vnet.h"

#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define TP__HEADROOM 64                          /* room for any prefix before a packet */
#define TP__PKT_MAX 65535                        /* the largest IP packet / frame / datagram */
#define TP__BUF_SIZE (TP__HEADROOM + TP__PKT_MAX + 64)
#define TP__PREFIX_MAX 16                        /* PI (4) + the largest vnet_hdr (12) */
#define TP__CMSG_SPACE 32                        /* one UDP_SEGMENT / UDP_GRO control message */
#define TP__XF_ALIGN 16                          /* transform arena slots start 16-byte aligned */

/* Single writer (the worker); readers load relaxed. */
#define TP__ADD(field, n) __atomic_store_n(&(field), (field) + (uint64_t)(n), __ATOMIC_RELAXED)

/* A packet on its way: hdr[0..hdrlen) + data[0..len). hdr is set for the
 * segments of a split (their rewritten headers); pre is the PI / vnet_hdr
 * prefix it was read with, kept when the packet passes through whole. */
struct tp__pkt {      /* 48 bytes: pointers first, no padding */
    uint8_t *data;
    uint8_t *hdr;
    uint8_t *pre;
    uint32_t len;
    uint32_t hdrlen;
    uint16_t prelen;   /* PI + vnet_hdr: at most 16 */
    uint16_t segs;     /* wire packets it stands for: a super-packet passed whole counts its segments */
    int32_t group;     /* the read it came from: segments of one split share it */
    int32_t flow;      /* the flow it was classified in; -1: none */
    int16_t src;       /* with a transform, from a UDP socket: the source's index in d->names; -1 none */
    uint8_t route;     /* UDP: which peer (to it: a ROUTE verdict; from it, with a transform: the sender) */
    uint8_t released;  /* came back from the pending queue: already counted in its flow */
};
_Static_assert(sizeof(struct tp__pkt) == 48, "struct tp__pkt grew: the batch arrays are cap of them");

struct tp__xf;

/* One direction of a worker. Readers fill pkts (one per read / datagram /
 * frame); preparation splits and groups them; writers send pkts (socket
 * sinks) or units (device sinks) from `next` on. */
struct tp__dir {
    const struct tp_fmt *src_fmt;   /* the source's device format; NULL: a socket */
    const struct tp_fmt *dst_fmt;   /* the sink's device format; NULL: a socket */
    int cap;                        /* packets the arrays hold */
    int n;                          /* packets in the batch */
    int next;                       /* next packet (socket sinks) or unit (device sinks) to send */
    size_t off;                     /* TCP: bytes of packet `next` (with its length) already sent */
    int pending;                    /* unsent packets wait for the sink to be writable */
    int nunits;                     /* device sinks: what the writes will be */
    uint8_t *bufs;                  /* reads: batch * TP__BUF_SIZE (NULL if the source owns its buffer) */
    struct tp__pkt *pkts;           /* cap */
    struct tp__pkt *raw;            /* batch: reads before they are split */
    uint8_t (*prefix)[TP__PREFIX_MAX]; /* cap: prefixes made for a device sink */
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
    struct tp__xf *xf;              /* the transform stage (tp_xform.h); NULL: none */
    int xf_segments;                /* TUNPUMP_NEEDS_SEGMENTS: super-packets are always split */
    int xf_trusted;                 /* TUNPUMP_AUTHENTICATED, endpoint -> device: checksums trusted */
    uint8_t *xf_arena;              /* with xf: packets copied out with room around them */
    size_t xf_arena_size;
};

/* Make every array of a direction (with_bufs: the read buffers too). Free
 * is safe on a zeroed or half-made direction. */
int tp__dir_alloc(struct tp__dir *d, int batch, int with_bufs);
void tp__dir_free(struct tp__dir *d);
/* Start a new batch: nothing read, nothing sent. */
void tp__dir_reset(struct tp__dir *d);
/* Drop the unsent rest of a batch, counting it under `reason`. */
void tp__dir_drop_rest(struct tp__dir *d, struct tp_dir_stats *st, enum tp_drop reason);

/* The transform arena of a direction: every packet of a batch copied with
 * TUNPUMP_MIN_HEADROOM / _TAILROOM around it (at most the reads' bytes
 * plus a split header and the room per packet). */
int tp__dir_alloc_xf(struct tp__dir *d, int batch);

void tp__pkt_set(struct tp__pkt *p, uint8_t *data, uint32_t len, int32_t group);
/* A packet from the network must look like what the device carries. */
int tp__plausible(const struct tp_fmt *dev, const uint8_t *p, uint32_t len);

#define TP__NS_PER_MS 1000000
#define TP__NS_PER_S 1000000000

int64_t tp__now_ns(void);

#endif
