/* The transform stage (csrc/pump/tp_xform.c: tp__xf_run, tp__xf_place's copy
 * into the direction's arena or hand-over where the packet lies,
 * tp__xf_apply and tp__xf_where) driven by a fake transform, written
 * against tunpump.h only, that leaves each packet where the fuzz input
 * says: any data pointer (inside, across or far outside its room), any
 * length, any head_len, any outcome byte, any peer.
 *
 * Input: flags (1), npeers (1), batch (1), then 18-byte records, one packet
 * each: len (2), hdrlen (1), route (1), src (1), content (1), outcome (1),
 * mode (1), off (4, signed), newlen (4), peer (2, signed); little-endian.
 *   flags: 1 to the device, 2 UDP endpoint, 4 sink is a device (dst_fmt),
 *          8 TAP, 16 source read with a vnet_hdr (pre), 32 ... with PI too,
 *          64 the transform sets TUNPUMP_IN_PLACE_TO_DEVICE,
 *          128 ... TUNPUMP_GATHER_TO_ENDPOINT (to the endpoint, packets are
 *          "gathered": handed where they lie, head + data, read-only, and
 *          their room is the scratch out[0 .. out_size))
 *   mode:  1 off from the room's start (else from data), 2 keep the length
 *          (else newlen), 4 write the new packet (where it lies in its room),
 *          8 make it look like IPv4, 16 scribble over the whole room first,
 *          32 (gathered) leave head, head_len, data and len as given, but
 *          with 64 move head by off (ignored when head_len is 0), else
 *          64 leave head_len nonzero (as given, or 1 for a one-piece
 *          packet; else head_len is set to 0 and head to NULL)
 *
 * Checked: the copies handed to the transform are exact, disjoint, inside
 * the arena, with at least the minimum room (or, in place, the packet
 * itself where it was read, with no room; or, gathered, the packet's own
 * pieces with no room and a disjoint out of at least the minimum size in
 * the arena) and the right peer / source / flow / gso; every packet is
 * counted exactly once (out, too_big, transform, transform_overflow,
 * malformed, no_peer or punted) as a reference model says (a gathered
 * packet left as given is kept, one left in one piece inside out is too,
 * anything else overflows); packets kept lie inside their room in one piece
 * or, left as given, are exactly the pieces read, in order, with the peer
 * the transform chose; punted packets reach the punt ring whole (head then
 * data); the pieces of a packet not handed over in place are never
 * written. ASan sees every access outside the exact-size buffers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_xform.h"

#include "fuzz_require.h"

#define REC 18

struct rec {
    uint32_t len, hdrlen, newlen;
    uint8_t route, content, outcome, mode;
    int16_t src, peer;
    int32_t off;
};

enum fate { F_OUT, F_TOO_BIG, F_TRANSFORM, F_OVERFLOW, F_MALFORMED, F_NO_PEER, F_PUNT };
/* Where the fake transform left a packet (the stage's tp__xf_where, modelled). */
enum left { L_OUTSIDE, L_IN_ROOM, L_AS_GIVEN };

#define NMAX (TP_VNET_SPLIT_MAX_SEGS + 8 * TP_VNET_MAX_SEGS)

/* What one input set up, for the fake transform and the punt stand-in. */
static struct {
    struct tp__dir *d;
    enum tp_dir dir;
    int udp, npeers, batch_calls;
    int in_place;                   /* TUNPUMP_IN_PLACE_TO_DEVICE */
    int gather;                     /* TUNPUMP_GATHER_TO_ENDPOINT */
    int n;                          /* packets in the input */
    const struct rec *recs;
    uint8_t **hdr, **data;          /* the packets as read: exact-size buffers */
    uint8_t **pre;                  /* their prefixes, as made: the stage must keep them */
    uintptr_t lo[NMAX];             /* room of desc j, by original index */
    uintptr_t hi[NMAX];
    enum fate fate[NMAX];
    enum left left[NMAX];
    int16_t peer[NMAX];
    uint64_t punted;
} g;

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint8_t pattern[TP__PKT_MAX + 256];   /* pattern + c: the bytes c, c + 1, ... (filled once) */

/* Stands in for the control plane's punt ring (tp_ctl_worker.c): takes the
 * bytes the way the real one does (head, then data), so ASan sees both
 * reads; a packet left as given arrives as the bytes read. */
void tp__ctl_punt_xf(struct tp__ctl *c, enum tp_dir dir, const struct tunpump_pkt *x, struct tp_dir_stats *st,
                     unsigned segs)
{
    static uint8_t slot[TP_VNET_HDR_ROOM + TUNPUMP_MAX_PACKET];
    int i = x->flow - 1000;

    (void)c;
    require(dir == g.dir && i >= 0 && i < g.n && g.fate[i] == F_PUNT);
    require((size_t)x->head_len + x->len <= sizeof(slot));
    if (x->head_len)
        memcpy(slot, x->head, x->head_len);
    memcpy(slot + x->head_len, x->data, x->len);
    if (g.left[i] == L_AS_GIVEN) {
        const struct rec *r = &g.recs[i];
        require(x->head_len == r->hdrlen && x->len == r->len);
        require(memcmp(slot, pattern + (uint8_t)~r->content, r->hdrlen) == 0);
        require(memcmp(slot + r->hdrlen, pattern + r->content, r->len) == 0);
    } else {
        require(x->head_len == 0);
    }
    g.punted += segs;
    TP__ADD(st->punted, segs);
}

/* Stands in for the roam event (tp_ctl_worker.c): the stage here has no
 * endpoint behind it (xf.far is NULL), so a roam request never gets this far. */
void tp__ctl_peer_moved(struct tp__ctl *c, int peer, const struct sockaddr_storage *ss)
{
    (void)c, (void)peer, (void)ss;
    require(0);
}

static int fits(uintptr_t data, uint32_t len, uintptr_t lo, uintptr_t hi)
{
    return len <= TUNPUMP_MAX_PACKET && data >= lo && data <= hi && hi - data >= len;
}

/* The fate the stage owes a packet the fake transform left (bytes: NULL
 * when outside its room). */
static enum fate model(const struct rec *r, uint32_t len, const uint8_t *bytes)
{
    const struct tp__dir *d = g.d;

    if (r->outcome == TUNPUMP_DROP)
        return F_TRANSFORM;
    if (r->outcome == TUNPUMP_TO_PYTHON)
        return bytes ? F_PUNT : F_OVERFLOW;
    if (r->outcome != TUNPUMP_PASS)
        return F_TRANSFORM;
    if (!bytes)
        return F_OVERFLOW;
    if (g.dir == TP_DIR_TO_DEV && d->dst_fmt && !tp__plausible(d->dst_fmt, bytes, len))
        return F_MALFORMED;
    if (g.dir == TP_DIR_TO_EP && g.udp && (r->peer < 0 || r->peer >= g.npeers))
        return F_NO_PEER;
    return F_OUT;
}

/* Whether the stage hands packet r over where it lies (tp__xf_place), in
 * one piece that it may change ... */
static int in_place(const struct rec *r)
{
    return g.in_place && g.dir == TP_DIR_TO_DEV && !r->hdrlen;
}

/* ... or in its pieces, read-only, with scratch (out) to write into. */
static int gathered(void)
{
    return g.gather && g.dir == TP_DIR_TO_EP;
}

/* Where packet i's descriptor x, as the transform left it, lies: the
 * reference for tp__xf_where, in the input's own terms (the pieces the
 * harness made, the room the transform was handed). */
static enum left where(int i, const struct tunpump_pkt *x, uintptr_t lo, uintptr_t hi)
{
    const struct rec *r = &g.recs[i];

    if (gathered() && x->data == g.data[i] && x->len == r->len && x->head_len == r->hdrlen &&
        (!r->hdrlen || x->head == g.hdr[i]))
        return L_AS_GIVEN;
    if (!x->head_len && fits((uintptr_t)x->data, x->len, lo, hi))
        return L_IN_ROOM;
    return L_OUTSIDE;
}

/* Checks where the stage put packet i for the transform (the pieces read,
 * where it was read, or a copy in the arena after the last one, *prev_hi)
 * and gives the room the fake transform may write, [*lo, *hi). */
static void check_handed_room(const struct tunpump_pkt *x, int i, uintptr_t *prev_hi, uintptr_t *lo, uintptr_t *hi)
{
    const struct tp__dir *d = g.d;
    const struct rec *r = &g.recs[i];

    *lo = (uintptr_t)x->data - x->headroom;
    *hi = (uintptr_t)x->data + x->len + x->tailroom;
    if (gathered()) {    /* the pieces read, no room; out: the room, in the arena, after the last */
        require(x->head == (r->hdrlen ? g.hdr[i] : NULL) && x->head_len == r->hdrlen);
        require(x->data == g.data[i] && x->len == r->len && x->headroom == 0 && x->tailroom == 0);
        *lo = (uintptr_t)x->out;
        *hi = *lo + x->out_size;
        require(x->out_size >= r->hdrlen + r->len + TUNPUMP_MIN_HEADROOM + TUNPUMP_MIN_TAILROOM);
        require(*lo >= *prev_hi && *hi <= (uintptr_t)d->xf_arena + d->xf_arena_size);
        *prev_hi = *hi;
        return;
    }
    require(x->len == r->hdrlen + r->len);
    require(x->head == NULL && x->head_len == 0 && x->out == NULL && x->out_size == 0);
    if (in_place(r)) {   /* where it was read, no room: ASan sees any write outside */
        require(x->data == g.data[i] && x->headroom == 0 && x->tailroom == 0);
    } else {             /* the copy: exact, with its room, inside the arena, after the last */
        require(x->headroom >= TUNPUMP_MIN_HEADROOM && x->tailroom >= TUNPUMP_MIN_TAILROOM);
        require(*lo >= *prev_hi && *hi <= (uintptr_t)d->xf_arena + d->xf_arena_size);
        *prev_hi = *hi;
    }
    if (r->hdrlen)
        require(memcmp(x->data, g.hdr[i], r->hdrlen) == 0);
    require(memcmp(x->data + r->hdrlen, g.data[i], r->len) == 0);
}

/* Checks what the stage told the transform about packet i: flow, queue,
 * peer, source address, gso. */
static void check_handed_meta(const struct tunpump_pkt *x, int i)
{
    const struct tp__dir *d = g.d;
    const struct rec *r = &g.recs[i];

    require(x->flow == 1000 + i && x->queue == 3);
    require(x->peer == (g.udp && (g.dir == TP_DIR_TO_EP || r->src >= 0) && r->route < TP_MAX_PEERS ?
                        r->route : -1));   /* a route past the table: a stranger (TP_EP_NO_PEER) */
    if (g.dir == TP_DIR_TO_DEV && r->src >= 0)
        require(x->src == (const struct sockaddr *)&d->names[r->src] && x->src_len == sizeof(d->names[0]));
    else
        require(x->src == NULL);
    if (d->src_fmt && d->src_fmt->vnet_hdr_sz && !r->hdrlen)
        require(x->gso == (r->content & 1) && x->gso_size == (x->gso ? 1000 + r->content : 0));
    else
        require(x->gso == 0 && x->gso_size == 0);
}

/* What the fake transform leaves: anything the record says, but it writes
 * only inside its room [lo, hi) (never a gathered packet's pieces). */
static void leave(struct tunpump_pkt *x, const struct rec *r, uintptr_t lo, uintptr_t hi)
{
    if (r->mode & 16)
        memset((uint8_t *)lo, 0xa5, (size_t)(hi - lo));
    if (gathered() && (r->mode & 32)) {   /* as given, bar head moved */
        if (r->mode & 64)
            x->head = (const uint8_t *)((uintptr_t)x->head + (uintptr_t)(intptr_t)r->off);
    } else {
        uintptr_t base = (r->mode & 1) ? lo : (uintptr_t)x->data;
        uintptr_t nd = base + (uintptr_t)(intptr_t)r->off;
        uint32_t nl = (r->mode & 2) ? x->len : r->newlen;
        if (fits(nd, nl, lo, hi) && (r->mode & 4) && nl) {
            memset((uint8_t *)nd, r->content, nl);
            if (r->mode & 8)
                *(uint8_t *)nd = 0x45;
        }
        x->data = (uint8_t *)nd;
        x->len = nl;
        if (r->mode & 64) {
            x->head_len = x->head_len ? x->head_len : 1;
        } else {
            x->head = NULL;
            x->head_len = 0;
        }
    }
    x->outcome = r->outcome;
    x->peer = r->peer;
}

/* The fake transform: checks each packet it is handed, leaves it as its
 * record says and notes where it left it and what the stage owes it. */
static void fake_batch(void *state, enum tunpump_dir dir, struct tunpump_pkt *pkts, unsigned n)
{
    const struct tp__dir *d = g.d;
    uintptr_t prev_hi = (uintptr_t)d->xf_arena;

    require(state == &g && (int)dir == (int)g.dir && n > 0 && (int)n <= d->n);
    g.batch_calls++;
    for (unsigned j = 0; j < n; j++) {
        struct tunpump_pkt *x = &pkts[j];
        int i = d->pkts[j].group;
        const struct rec *r = &g.recs[i];
        uintptr_t lo, hi;

        require(x->outcome == TUNPUMP_PASS);
        check_handed_room(x, i, &prev_hi, &lo, &hi);
        check_handed_meta(x, i);
        leave(x, r, lo, hi);
        g.lo[i] = lo;
        g.hi[i] = hi;
        g.peer[i] = r->peer;
        g.left[i] = where(i, x, lo, hi);
        g.fate[i] = model(r, x->len, g.left[i] != L_OUTSIDE ? x->data : NULL);
    }
}

/* By flags 64 (in place) and 128 (gather). */
static const struct tunpump_transform_ops fake_ops[4] = {
    { .abi = TUNPUMP_TRANSFORM_ABI, .name = "fuzz", .batch = fake_batch },
    { .abi = TUNPUMP_TRANSFORM_ABI, .flags = TUNPUMP_IN_PLACE_TO_DEVICE, .name = "fuzz", .batch = fake_batch },
    { .abi = TUNPUMP_TRANSFORM_ABI, .flags = TUNPUMP_GATHER_TO_ENDPOINT, .name = "fuzz", .batch = fake_batch },
    { .abi = TUNPUMP_TRANSFORM_ABI, .flags = TUNPUMP_IN_PLACE_TO_DEVICE | TUNPUMP_GATHER_TO_ENDPOINT,
      .name = "fuzz", .batch = fake_batch },
};

static void parse_rec(const uint8_t *p, struct rec *r)
{
    r->len = rd16(p);
    r->hdrlen = p[2] % (TP_VNET_HDR_ROOM + 1);
    r->route = p[3];
    r->src = p[4] == 0xff ? -1 : (int16_t)(p[4] % TP_MAX_BATCH);
    r->content = p[5];
    r->outcome = p[6];
    r->mode = p[7];
    r->off = (int32_t)rd32(p + 8);
    r->newlen = rd32(p + 12);
    r->peer = (int16_t)rd16(p + 16);
}

/* The directions, one per batch size, made on first use as the pump makes
 * them (not remade per input: the large allocations cost most of the run
 * time), and the records of the input being run. */
static struct tp__dir made[8];
static struct tunpump_pkt *descs[8];
static struct tp__xf_room *rooms[8];
static struct rec recs[NMAX];

/* Sets up from the input's first 3 bytes: the direction, its formats and
 * the ops (flags, npeers), and the packet array and arena of the direction
 * made for the batch size (batch); returns that batch index. */
static int setup(const uint8_t *in, struct tp__dir *d, struct tp_fmt *src_fmt, struct tp_fmt *dst_fmt,
                 struct tunpump_transform *t)
{
    int b = in[2] % 8;

    memset(d, 0, sizeof(*d));
    memset(&g, 0, sizeof(g));
    g.dir = (in[0] & 1) ? TP_DIR_TO_DEV : TP_DIR_TO_EP;
    g.udp = !!(in[0] & 2);
    g.npeers = in[1] % (TP_MAX_PEERS + 1);
    g.in_place = !!(in[0] & 64);
    g.gather = !!(in[0] & 128);
    t->ops = &fake_ops[g.in_place + 2 * g.gather];
    dst_fmt->tap = !!(in[0] & 8);
    src_fmt->vnet_hdr_sz = (in[0] & 16) ? 10 + 2 * (in[1] >> 7) : 0;
    src_fmt->pi = !!(in[0] & 32);
    if (!made[b].pkts) {
        if (tp__dir_alloc(&made[b], 1 + b, 0) < 0 || tp__dir_alloc_xf(&made[b], 1 + b) < 0 ||
            !(descs[b] = malloc(sizeof(*descs[b]) * (size_t)made[b].cap)) ||
            !(rooms[b] = malloc(sizeof(*rooms[b]) * (size_t)made[b].cap)))
            abort();
    }
    d->cap = made[b].cap;
    d->pkts = made[b].pkts;
    d->xf_arena = made[b].xf_arena;
    d->xf_arena_size = made[b].xf_arena_size;
    d->src_fmt = src_fmt->vnet_hdr_sz || src_fmt->pi ? src_fmt : NULL;
    d->dst_fmt = (in[0] & 4) ? dst_fmt : NULL;
    return b;
}

/* How many records to run: up to the cap, and up to twice the arena's
 * bytes: enough to fill it (too_big) without copying megabytes per input. */
static int npackets(const uint8_t *recs_in, size_t size, const struct tp__dir *d)
{
    int n = 0;

    for (size_t bytes = 0; n < (int)(size / REC) && n < d->cap && bytes <= 2 * d->xf_arena_size; n++)
        bytes += rd16(recs_in + (size_t)n * REC);
    return n;
}

/* Packet i as read, from its record: its pieces in exact-size buffers
 * (ASan sees reads past them), its prefix with the vnet_hdr's gso. */
static void make_packet(int i, struct tp__pkt *p, const struct tp_fmt *src_fmt, int prelen)
{
    const struct rec *r = &recs[i];

    g.hdr[i] = malloc(r->hdrlen ? r->hdrlen : 1);
    g.data[i] = malloc(r->len ? r->len : 1);
    require(g.hdr[i] && g.data[i]);
    memcpy(g.hdr[i], pattern + (uint8_t)~r->content, r->hdrlen);
    memcpy(g.data[i], pattern + r->content, r->len);
    tp__pkt_set(p, g.data[i], r->len, i);
    p->hdr = r->hdrlen ? g.hdr[i] : NULL;
    p->hdrlen = r->hdrlen;
    p->route = r->route;
    p->src = r->src;
    p->flow = 1000 + i;
    if (prelen) {
        p->pre = malloc((size_t)prelen);
        require(p->pre);
        memset(p->pre, 0, (size_t)prelen);
        if (src_fmt->vnet_hdr_sz) {
            uint8_t *vh = p->pre + tp_fmt_vnet_off(src_fmt);
            vh[1] = r->content & 1;                         /* gso_type: TCPV4 or none */
            vh[4] = (uint8_t)(1000 + r->content);           /* gso_size, little-endian */
            vh[5] = (uint8_t)((1000 + r->content) >> 8);
        }
        p->prelen = (uint32_t)prelen;
    }
    g.pre[i] = p->pre;
}

/* The packets of the n records (g.hdr, g.data, g.pre and d's array). */
static void make_packets(struct tp__dir *d, const uint8_t *recs_in, int n, const struct tp_fmt *src_fmt)
{
    int prelen = d->src_fmt ? tp_fmt_prefix_len(src_fmt) : 0;

    g.recs = recs;
    g.hdr = calloc((size_t)n + 1, sizeof(*g.hdr));
    g.data = calloc((size_t)n + 1, sizeof(*g.data));
    g.pre = calloc((size_t)n + 1, sizeof(*g.pre));
    require(g.hdr && g.data && g.pre);
    for (int i = 0; i < n; i++) {
        parse_rec(recs_in + (size_t)i * REC, &recs[i]);
        make_packet(i, &d->pkts[i], src_fmt, prelen);
    }
    d->n = n;
}

/* The arena's bound, as tp__xf_copy keeps it: a packet that does not fit
 * is too_big (one handed over in place is not copied: never too_big). */
static void model_arena(int n, size_t arena_size)
{
    size_t arena_off = 0;

    for (int i = 0; i < n; i++) {
        const struct rec *r = &recs[i];
        size_t need = (TUNPUMP_MIN_HEADROOM + (size_t)r->hdrlen + r->len + TUNPUMP_MIN_TAILROOM + TP__XF_ALIGN - 1) &
                      ~(size_t)(TP__XF_ALIGN - 1);
        if (in_place(r))
            ;
        else if (arena_off + need > arena_size)
            g.fate[i] = F_TOO_BIG;
        else
            arena_off += need;
    }
}

/* Every packet counted exactly once, as the model says. */
static void check_counts(const struct tp__dir *d, const struct tp_dir_stats *st, int n)
{
    uint64_t want[F_PUNT + 1] = { 0 };
    int expect_batch = 0;

    for (int i = 0; i < n; i++) {
        want[g.fate[i]]++;
        expect_batch |= g.fate[i] != F_TOO_BIG;
    }
    require(g.batch_calls == expect_batch);
    require((uint64_t)d->n == want[F_OUT]);
    require(st->drops[TP_DROP_TOO_BIG] == want[F_TOO_BIG]);
    require(st->drops[TP_DROP_TRANSFORM] == want[F_TRANSFORM]);
    require(st->drops[TP_DROP_TRANSFORM_OVERFLOW] == want[F_OVERFLOW]);
    require(st->drops[TP_DROP_MALFORMED] == want[F_MALFORMED]);
    require(st->drops[TP_DROP_NO_PEER] == want[F_NO_PEER]);
    require(st->punted == want[F_PUNT] && g.punted == want[F_PUNT]);
    uint64_t total = (uint64_t)d->n + st->punted;
    for (int r = 0; r < TP_DROP__COUNT; r++)
        total += st->drops[r];
    require(total == (uint64_t)n);
}

/* The packets kept: in order, with their peer, inside their room in one
 * piece or, left as given, exactly the pieces read (no copy). */
static void check_kept(const struct tp__dir *d, int n)
{
    int last = -1;

    for (int k = 0; k < d->n; k++) {
        const struct tp__pkt *q = &d->pkts[k];
        int i = q->group;
        require(i > last && i < n && g.fate[i] == F_OUT);
        last = i;
        if (g.left[i] == L_AS_GIVEN) {
            require(q->hdr == (recs[i].hdrlen ? g.hdr[i] : NULL) && q->hdrlen == recs[i].hdrlen);
            require(q->data == g.data[i] && q->len == recs[i].len);
        } else {
            require(g.left[i] == L_IN_ROOM && fits((uintptr_t)q->data, q->len, g.lo[i], g.hi[i]));
            require(q->hdr == NULL && q->hdrlen == 0);
        }
        require(q->flow == 1000 + i && q->pre == g.pre[i]);
        require(q->route == (g.dir == TP_DIR_TO_EP && g.udp ? (uint8_t)g.peer[i] : recs[i].route));
        uint32_t sum = 0;
        for (uint32_t b = 0; b < q->hdrlen; b++)   /* ASan: every byte kept is readable */
            sum += q->hdr[b];
        for (uint32_t b = 0; b < q->len; b++)
            sum += q->data[b];
        (void)sum;
    }
}

/* Nothing wrote the pieces read, bar a transform handed them in place. */
static void check_pieces_unwritten(int n)
{
    for (int i = 0; i < n; i++) {
        if (in_place(&recs[i]))
            continue;
        require(memcmp(g.hdr[i], pattern + (uint8_t)~recs[i].content, recs[i].hdrlen) == 0);
        require(memcmp(g.data[i], pattern + recs[i].content, recs[i].len) == 0);
    }
}

static void free_packets(int n)
{
    for (int i = 0; i < n; i++) {
        free(g.hdr[i]);
        free(g.data[i]);
        free(g.pre[i]);
    }
    free(g.pre);
    free(g.hdr);
    free(g.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    struct tp__dir d;
    struct tp__xf xf;
    struct tp_dir_stats st;
    struct tp_fmt src_fmt = { 0 }, dst_fmt = { 0 };
    struct tunpump_transform t = { .ops = &fake_ops[0] };
    int b, n;

    if (size < 3)
        return 0;
    memset(&st, 0, sizeof(st));
    b = setup(in, &d, &src_fmt, &dst_fmt, &t);
    in += 3, size -= 3;
    n = npackets(in, size, &d);
    if (!pattern[1])
        for (size_t k = 0; k < sizeof(pattern); k++)
            pattern[k] = (uint8_t)k;
    g.n = n;

    tp__xf_init(&xf, &t, 3, g.udp, g.npeers, NULL);
    xf.desc = descs[b];
    xf.rooms = rooms[b];
    xf.state = &g;
    require(xf.desc);
    d.xf = &xf;
    g.d = &d;
    make_packets(&d, in, n, &src_fmt);
    model_arena(n, d.xf_arena_size);

    tp__xf_run(&d, g.dir, &st);

    check_counts(&d, &st, n);
    check_kept(&d, n);
    check_pieces_unwritten(n);
    free_packets(n);
    return 0;
}
