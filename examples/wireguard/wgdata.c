/* wgdata: WireGuard's data path as a tunpump transform, built only against
 * tunpump.get_include() (tunpump.h) and OpenSSL 3's libcrypto.
 *
 * Device -> endpoint: the destination address picks the peer (cryptokey
 * routing over AllowedIPs); the packet is padded to 16 bytes (not past the
 * MTU), sealed with ChaCha20-Poly1305 under the peer's current session and
 * framed as a type-4 transport message:
 *     type 4 | 3 zero bytes | receiver index (u32 LE) | counter (u64 LE) | ciphertext | tag
 * A packet whose peer has no usable session goes to Python (which stages it
 * and starts a handshake). An empty packet injected by Python for peer i
 * is a keepalive: an empty transport message.
 *
 * Endpoint -> device (TUNPUMP_UNKNOWN_SOURCES: datagrams from strangers
 * too): handshake messages (types 1-3, exact sizes) go to Python; a
 * transport message is looked up by receiver index among every peer's
 * sessions, checked against the anti-replay window, opened, and its inner
 * source must route back to the same peer (else dropped: src_filter). An
 * authenticated datagram sets pkt->peer and pkt->roam, so tunpump moves the
 * peer's endpoint to its source (roaming). The first packet under a peer's
 * `next` session (the responder's new session) makes it current, the
 * current one previous, as wireguard-go does.
 *
 * Sessions are installed by Python with Pump.transform_control() (applied
 * between batches, so no batch sees half a key):
 *     'I' | peer | initiator | 0 | local index u32 | remote index u32 | send key[32] | recv key[32]
 *     'C' | peer                     (forget every session of the peer)
 * Drops carry a reason (pkt->drop_reason: stats name them "wireguard_<reason>").
 * Counters (per peer and per drop reason) live in memory the capsule owns,
 * written by the worker with relaxed atomics and read by wgdata.counters():
 * the timers need them, and tunpump has no channel for a transform's state.
 *
 * One queue only: two workers would each count nonces for the same session. */
#ifndef WGDATA_NO_PYTHON   /* the fuzz target (fuzz_wgdata.c) builds the data path alone */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "tunpump.h"

#define WG_MAX_PEERS 16          /* tunpump's UDP endpoint holds 16 peers */
#define WG_MAX_ALLOWED 256
#define WG_SLOTS 4               /* previous, current, next and one being replaced */
#define WG_HDR 16
#define WG_TAG 16
#define WG_RING_BLOCKS 128       /* replay window: (128 - 1) * 64 = 8128 counters, as wireguard-go */
#define WG_WINDOW ((WG_RING_BLOCKS - 1) * 64)
#define WG_CFG_MAGIC "WGT1"
#define WG_CFG_HDR 32
#define WG_CFG_ENTRY 20

/* Per-peer counters Python reads; the names are in counter_names. */
enum { C_TX_BYTES, C_RX_BYTES, C_TX_DATA, C_RX_DATA, C_LAST_TX, C_LAST_RX, C_RX_UNANSWERED,
       C_TX_UNANSWERED, C_SEND_COUNTER, C_CURRENT, C_KEEPALIVES_RX, C_STAGED, C_N };
static const char *const counter_names[C_N] = {
    "tx_bytes", "rx_bytes", "tx_data", "rx_data", "last_tx_ns", "last_rx_ns", "rx_unanswered_ns",
    "tx_unanswered_ns", "send_counter", "current_index", "keepalives_rx", "staged",
};
/* Why a packet was dropped: ops.drop_reasons (tunpump counts each). */
enum { R_SHORT, R_BAD_TYPE, R_BAD_LENGTH, R_NO_SESSION, R_EXPIRED, R_REPLAY, R_AUTH, R_KEEPALIVE,
       R_BAD_INNER, R_SRC_FILTER, R_NO_ROUTE, R_TOO_BIG, R_N };
static const char *const reason_names[R_N + 1] = {   /* also ops.drop_reasons: NULL-terminated */
    "short", "bad_type", "bad_length", "no_session", "expired", "replay", "auth", "keepalive",
    "bad_inner", "src_filter", "no_route", "too_big", NULL,
};

struct wg_allowed {
    uint8_t peer, family, plen;
    uint8_t addr[16];
};

struct wg_cfg {
    uint32_t mtu, npeers, nallowed;
    uint64_t reject_ns, reject_msgs;
    struct wg_allowed allowed[WG_MAX_ALLOWED];   /* longest prefix first */
};

struct wg_shared {
    uint64_t peer[WG_MAX_PEERS][C_N];
    uint64_t drops[R_N];
};

/* What the capsule points at (t first), with the config and the counters. */
struct wg_blob {
    struct tunpump_transform t;
    struct wg_cfg cfg;
    struct wg_shared sh;
};

struct wg_replay {
    uint64_t last;
    uint64_t ring[WG_RING_BLOCKS];
};

struct wg_session {
    int active;
    uint32_t local, remote;
    uint64_t born_ns, send_ctr;
    EVP_CIPHER_CTX *enc, *dec;
    struct wg_replay win;
};

struct wg_peer {
    struct wg_session s[WG_SLOTS];
    int cur, prev, next;        /* slot indices, -1: none */
};

struct wg_state {
    const struct wg_cfg *cfg;
    struct wg_shared *sh;
    EVP_CIPHER *cipher;
    uint64_t now;
    struct wg_peer peers[WG_MAX_PEERS];
};

/* ---- counters: one writer (the worker), readers in Python -------------------- */

static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void st64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void add(uint64_t *p, uint64_t v) { st64(p, ld(p) + v); }

static void drop(struct wg_state *st, struct tunpump_pkt *p, int reason)
{
    add(&st->sh->drops[reason], 1);
    p->outcome = TUNPUMP_DROP;
    p->drop_reason = (uint8_t)(reason + 1);   /* tunpump counts it as "wireguard_<reason>" */
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);   /* the vDSO: no syscall that waits */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t get32le(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static uint64_t get64le(const uint8_t *p) { return get32le(p) | (uint64_t)get32le(p + 4) << 32; }

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64le(uint8_t *p, uint64_t v)
{
    put32le(p, (uint32_t)v);
    put32le(p + 4, (uint32_t)(v >> 32));
}

/* ---- anti-replay window (RFC 6479: a ring of 64-bit blocks) ----------------- */

static int replay_seen(const struct wg_replay *w, uint64_t ctr)
{
    if (ctr > w->last)
        return 0;
    if (w->last - ctr >= WG_WINDOW)
        return 1;
    return (w->ring[(ctr >> 6) % WG_RING_BLOCKS] >> (ctr & 63)) & 1;
}

/* After the tag verified: move the window and mark ctr. -1 if seen. */
static int replay_mark(struct wg_replay *w, uint64_t ctr)
{
    if (replay_seen(w, ctr))
        return -1;
    if (ctr > w->last) {
        uint64_t cur = w->last >> 6, blk = ctr >> 6, diff = blk - cur;
        if (diff > WG_RING_BLOCKS)
            diff = WG_RING_BLOCKS;
        for (uint64_t i = 1; i <= diff; i++)
            w->ring[(cur + i) % WG_RING_BLOCKS] = 0;
        w->last = ctr;
    }
    w->ring[(ctr >> 6) % WG_RING_BLOCKS] |= 1ull << (ctr & 63);
    return 0;
}

/* ---- cryptokey routing ------------------------------------------------------ */

static int prefix_match(const uint8_t *a, const uint8_t *b, unsigned plen)
{
    unsigned whole = plen / 8, rest = plen % 8;

    if (memcmp(a, b, whole) != 0)
        return 0;
    return rest == 0 || ((a[whole] ^ b[whole]) & (0xff00 >> rest)) == 0;
}

/* The peer whose AllowedIPs hold addr (longest prefix), or -1. */
static int route(const struct wg_cfg *cfg, int family, const uint8_t *addr)
{
    for (uint32_t i = 0; i < cfg->nallowed; i++) {
        const struct wg_allowed *a = &cfg->allowed[i];
        if (a->family == family && prefix_match(a->addr, addr, a->plen))
            return a->peer;
    }
    return -1;
}

/* An inner IP packet's family, true length (without padding) and the
 * offset of its source (dst: +4 for IPv4, +16 for IPv6); 0 if malformed. */
static int inner(const uint8_t *p, uint32_t len, uint32_t *tot, int *src_off)
{
    if (len >= 20 && p[0] >> 4 == 4) {
        *tot = (uint32_t)(p[2] << 8 | p[3]);
        *src_off = 12;
        return *tot >= 20 && *tot <= len ? 4 : 0;
    }
    if (len >= 40 && p[0] >> 4 == 6) {
        *tot = 40 + (uint32_t)(p[4] << 8 | p[5]);
        *src_off = 8;
        return *tot <= len ? 6 : 0;
    }
    return 0;
}

/* ---- sessions ---------------------------------------------------------------- */

static void session_forget(struct wg_session *s)
{
    s->active = 0;
    EVP_CIPHER_CTX_reset(s->enc);   /* wipes the key schedule */
    EVP_CIPHER_CTX_reset(s->dec);
}

static int usable(const struct wg_state *st, const struct wg_session *s)
{
    return s->active && st->now - s->born_ns < st->cfg->reject_ns && s->send_ctr < st->cfg->reject_msgs;
}

/* The one place libcrypto runs: ctx holds the key; set the nonce, run the
 * AEAD in place over buf[0..len), write or check the tag. 0 or -1. */
static int seal_open(EVP_CIPHER_CTX *ctx, int enc, uint64_t ctr, uint8_t *buf, uint32_t len, uint8_t *tag)
{
    OSSL_PARAM tp[2] = { OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, WG_TAG),
                         OSSL_PARAM_construct_end() };
    uint8_t nonce[12] = { 0 };
    int n = 0, fin = 0;

    put64le(nonce + 4, ctr);
    if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, enc, enc ? NULL : tp) != 1 ||
        (len && EVP_CipherUpdate(ctx, buf, &n, buf, (int)len) != 1) ||
        EVP_CipherFinal_ex(ctx, buf + n, &fin) != 1 || (uint32_t)(n + fin) != len)
        return -1;
    return enc && EVP_CIPHER_CTX_get_params(ctx, tp) != 1 ? -1 : 0;
}

/* The session and peer whose local index is idx, or NULL. */
static struct wg_session *lookup(struct wg_state *st, uint32_t idx, int *peer, int *slot)
{
    for (uint32_t i = 0; i < st->cfg->npeers; i++) {
        for (int j = 0; j < WG_SLOTS; j++) {
            struct wg_session *s = &st->peers[i].s[j];
            if (s->active && s->local == idx) {
                *peer = (int)i, *slot = j;
                return s;
            }
        }
    }
    return NULL;
}

/* The responder's next session proved itself: it becomes current. */
static void promote(struct wg_state *st, int peer)
{
    struct wg_peer *pp = &st->peers[peer];

    if (pp->prev >= 0)
        session_forget(&pp->s[pp->prev]);
    pp->prev = pp->cur;
    pp->cur = pp->next;
    pp->next = -1;
    st64(&st->sh->peer[peer][C_CURRENT], pp->s[pp->cur].local);
}

/* ---- the two directions -------------------------------------------------------- */

static uint32_t padded_len(uint32_t len, uint32_t mtu)
{
    uint32_t p = (len + 15) & ~15u;

    return p > mtu ? (len > mtu ? len : mtu) : p;
}

static void wg_out(struct wg_state *st, struct tunpump_pkt *p)
{
    int keepalive = p->len == 0, peer = p->peer;
    struct wg_session *s;
    uint64_t *c;
    uint32_t len = keepalive ? 0 : p->len, pad;

    if (!keepalive) {
        uint32_t tot;
        int off, fam = inner(p->data, p->len, &tot, &off);
        if (!fam)
            return drop(st, p, R_BAD_INNER);   /* not an IP packet: nothing to route by */
        peer = route(st->cfg, fam, p->data + off + (fam == 4 ? 4 : 16));
    }
    if (peer < 0 || (uint32_t)peer >= st->cfg->npeers)
        return drop(st, p, R_NO_ROUTE);
    p->peer = (int16_t)peer;
    c = st->sh->peer[peer];
    s = st->peers[peer].cur >= 0 ? &st->peers[peer].s[st->peers[peer].cur] : NULL;
    if (!s || !usable(st, s)) {
        add(&c[C_STAGED], 1);
        p->outcome = TUNPUMP_TO_PYTHON;   /* Python stages it and starts a handshake */
        return;
    }
    pad = padded_len(len, st->cfg->mtu);
    if (p->headroom < WG_HDR || (uint64_t)pad + WG_TAG > (uint64_t)p->len + p->tailroom ||
        pad + WG_HDR + WG_TAG > TUNPUMP_MAX_PACKET)
        return drop(st, p, R_TOO_BIG);
    memset(p->data + len, 0, pad - len);
    if (seal_open(s->enc, 1, s->send_ctr, p->data, pad, p->data + pad) < 0)
        return drop(st, p, R_AUTH);
    p->data -= WG_HDR;
    memset(p->data, 0, 4);
    p->data[0] = 4;
    put32le(p->data + 4, s->remote);
    put64le(p->data + 8, s->send_ctr++);
    p->len = WG_HDR + pad + WG_TAG;
    add(&c[C_TX_BYTES], p->len);
    st64(&c[C_LAST_TX], st->now);
    st64(&c[C_RX_UNANSWERED], 0);
    st64(&c[C_SEND_COUNTER], s->send_ctr);
    if (!keepalive) {
        add(&c[C_TX_DATA], 1);
        if (!ld(&c[C_TX_UNANSWERED]))
            st64(&c[C_TX_UNANSWERED], st->now);
    }
}

static void wg_transport_in(struct wg_state *st, struct tunpump_pkt *p)
{
    int peer, slot, fam, off;
    uint32_t tot, plen;
    uint64_t ctr, *c;
    struct wg_session *s;

    if (p->len < WG_HDR + WG_TAG)
        return drop(st, p, R_SHORT);
    if (!(s = lookup(st, get32le(p->data + 4), &peer, &slot)))
        return drop(st, p, R_NO_SESSION);
    ctr = get64le(p->data + 8);
    if (st->now - s->born_ns >= st->cfg->reject_ns || ctr >= st->cfg->reject_msgs)
        return drop(st, p, R_EXPIRED);
    if (replay_seen(&s->win, ctr))
        return drop(st, p, R_REPLAY);
    plen = p->len - WG_HDR - WG_TAG;
    if (seal_open(s->dec, 0, ctr, p->data + WG_HDR, plen, p->data + WG_HDR + plen) < 0)
        return drop(st, p, R_AUTH);
    if (replay_mark(&s->win, ctr) < 0)
        return drop(st, p, R_REPLAY);
    if (slot == st->peers[peer].next)
        promote(st, peer);
    p->peer = (int16_t)peer;   /* authenticated: the peer's endpoint is this datagram's source */
    p->roam = 1;
    c = st->sh->peer[peer];
    add(&c[C_RX_BYTES], p->len);
    st64(&c[C_LAST_RX], st->now);
    st64(&c[C_TX_UNANSWERED], 0);
    if (plen == 0) {
        add(&c[C_KEEPALIVES_RX], 1);
        return drop(st, p, R_KEEPALIVE);
    }
    p->data += WG_HDR;
    if (!(fam = inner(p->data, plen, &tot, &off)))
        return drop(st, p, R_BAD_INNER);
    if (route(st->cfg, fam, p->data + off) != peer)
        return drop(st, p, R_SRC_FILTER);
    p->len = tot;
    add(&c[C_RX_DATA], 1);
    if (!ld(&c[C_RX_UNANSWERED]))
        st64(&c[C_RX_UNANSWERED], st->now);
}

static void wg_in(struct wg_state *st, struct tunpump_pkt *p)
{
    static const uint32_t sizes[4] = { 148, 92, 64, 0 };
    const uint8_t *d = p->data;

    if (p->len < 4)
        return drop(st, p, R_SHORT);
    if (d[1] | d[2] | d[3] || d[0] < 1 || d[0] > 4)
        return drop(st, p, R_BAD_TYPE);
    if (d[0] == 4)
        return wg_transport_in(st, p);
    if (p->len != sizes[d[0] - 1])
        return drop(st, p, R_BAD_LENGTH);   /* handshake messages have one size each */
    p->outcome = TUNPUMP_TO_PYTHON;    /* a handshake message */
}

static void wg_batch(void *state, enum tunpump_dir dir, struct tunpump_pkt *pkts, unsigned n)
{
    struct wg_state *st = state;

    st->now = now_ns();
    for (unsigned i = 0; i < n; i++) {
        if (dir == TUNPUMP_DIR_TO_ENDPOINT)
            wg_out(st, &pkts[i]);
        else
            wg_in(st, &pkts[i]);
    }
}

/* A free slot: at most three of four are referenced. */
static int free_slot(const struct wg_peer *pp)
{
    for (int j = 0; j < WG_SLOTS; j++)
        if (j != pp->cur && j != pp->prev && j != pp->next)
            return j;
    return -1;
}

/* Install a session the way wireguard-go rotates keypairs: the initiator's
 * becomes current at once; the responder's waits as next until the
 * initiator's first packet under it arrives (promote). */
static void install(struct wg_state *st, int peer, int initiator, const uint8_t *m)
{
    struct wg_peer *pp = &st->peers[peer];
    int f = free_slot(pp);
    struct wg_session *s = &pp->s[f];

    session_forget(s);
    if (EVP_EncryptInit_ex2(s->enc, st->cipher, m + 12, NULL, NULL) != 1 ||
        EVP_DecryptInit_ex2(s->dec, st->cipher, m + 44, NULL, NULL) != 1) {
        session_forget(s);
        return;
    }
    s->local = get32le(m + 4);
    s->remote = get32le(m + 8);
    s->born_ns = now_ns();
    s->send_ctr = 0;
    memset(&s->win, 0, sizeof(s->win));
    s->active = 1;
    if (initiator) {
        if (pp->next >= 0) {
            if (pp->cur >= 0)
                session_forget(&pp->s[pp->cur]);
            if (pp->prev >= 0)
                session_forget(&pp->s[pp->prev]);
            pp->prev = pp->next;
            pp->next = -1;
        } else {
            if (pp->prev >= 0)
                session_forget(&pp->s[pp->prev]);
            pp->prev = pp->cur;
        }
        pp->cur = f;
        st64(&st->sh->peer[peer][C_CURRENT], s->local);
        st64(&st->sh->peer[peer][C_SEND_COUNTER], 0);
    } else {
        if (pp->next >= 0)
            session_forget(&pp->s[pp->next]);
        if (pp->prev >= 0)
            session_forget(&pp->s[pp->prev]);
        pp->prev = -1;
        pp->next = f;
    }
}

static void wg_control(void *state, const uint8_t *m, size_t len)
{
    struct wg_state *st = state;

    if (len < 2 || m[1] >= st->cfg->npeers)
        return;
    if (m[0] == 'I' && len == 76) {
        install(st, m[1], m[2], m);
    } else if (m[0] == 'C' && len == 2) {
        struct wg_peer *pp = &st->peers[m[1]];
        for (int j = 0; j < WG_SLOTS; j++)
            session_forget(&pp->s[j]);
        pp->cur = pp->prev = pp->next = -1;
        st64(&st->sh->peer[m[1]][C_CURRENT], 0);
    }
}

static void wg_destroy(void *state)
{
    struct wg_state *st = state;

    if (!st)
        return;
    for (int i = 0; i < WG_MAX_PEERS; i++) {
        for (int j = 0; j < WG_SLOTS; j++) {
            EVP_CIPHER_CTX_free(st->peers[i].s[j].enc);   /* frees clear the key schedules */
            EVP_CIPHER_CTX_free(st->peers[i].s[j].dec);
        }
    }
    EVP_CIPHER_free(st->cipher);
    OPENSSL_cleanse(st, sizeof(*st));
    free(st);
}

static int wg_create(const void *config, size_t config_len, int queue, int nqueues, void **state)
{
    const struct wg_blob *b = config;
    struct wg_state *st;
    int ok = 1;

    (void)queue;
    if (config_len != sizeof(*b) || nqueues != 1)
        return -EINVAL;
    if (!(st = calloc(1, sizeof(*st))))
        return -ENOMEM;
    st->cfg = &b->cfg;
    st->sh = (struct wg_shared *)&b->sh;   /* the capsule's, written with atomics */
    st->cipher = EVP_CIPHER_fetch(NULL, "chacha20-poly1305", NULL);   /* once, not per key */
    for (int i = 0; i < WG_MAX_PEERS; i++) {
        st->peers[i].cur = st->peers[i].prev = st->peers[i].next = -1;
        for (int j = 0; j < WG_SLOTS; j++) {
            st->peers[i].s[j].enc = EVP_CIPHER_CTX_new();
            st->peers[i].s[j].dec = EVP_CIPHER_CTX_new();
            ok &= st->peers[i].s[j].enc && st->peers[i].s[j].dec;
        }
    }
    if (!st->cipher || !ok) {
        int rc = st->cipher ? -ENOMEM : -ENOTSUP;
        wg_destroy(st);
        return rc;
    }
    *state = st;
    return 0;
}

static const struct tunpump_transform_ops wg_ops = {
    .abi = TUNPUMP_TRANSFORM_ABI,
    /* strangers: initiations, roamers; decryption only strips: no copy in */
    .flags = TUNPUMP_NEEDS_SEGMENTS | TUNPUMP_UNKNOWN_SOURCES | TUNPUMP_IN_PLACE_TO_DEVICE,
    .name = "wireguard",
    .create = wg_create,
    .destroy = wg_destroy,
    .batch = wg_batch,
    .control = wg_control,
    .drop_reasons = reason_names,
};

#ifndef WGDATA_NO_PYTHON
/* ---- Python side ------------------------------------------------------------- */

/* The config blob (little-endian), made by wgtun.py:
 *     "WGT1" | mtu u32 | npeers u32 | nallowed u32 | reject_after_time_ns u64 | reject_after_messages u64
 *     nallowed x (peer u8 | family 4/6 u8 | prefix length u8 | 0 | address[16]) */
static int parse_cfg(const uint8_t *p, Py_ssize_t len, struct wg_cfg *cfg)
{
    if (len < WG_CFG_HDR || memcmp(p, WG_CFG_MAGIC, 4) != 0)
        return PyErr_Format(PyExc_ValueError, "config: not a wgdata config blob"), -1;
    cfg->mtu = get32le(p + 4);
    cfg->npeers = get32le(p + 8);
    cfg->nallowed = get32le(p + 12);
    cfg->reject_ns = get64le(p + 16);
    cfg->reject_msgs = get64le(p + 24);
    if (cfg->mtu < 576 || cfg->mtu > 65535 - WG_HDR - WG_TAG || cfg->npeers < 1 || cfg->npeers > WG_MAX_PEERS ||
        cfg->nallowed > WG_MAX_ALLOWED || len != WG_CFG_HDR + (Py_ssize_t)cfg->nallowed * WG_CFG_ENTRY ||
        !cfg->reject_ns || !cfg->reject_msgs)
        return PyErr_Format(PyExc_ValueError, "config: mtu 576..65503, 1..%d peers, at most %d AllowedIPs "
                            "(got mtu %u, %u peers, %u AllowedIPs)", WG_MAX_PEERS, WG_MAX_ALLOWED,
                            cfg->mtu, cfg->npeers, cfg->nallowed), -1;
    for (uint32_t i = 0; i < cfg->nallowed; i++) {
        const uint8_t *e = p + WG_CFG_HDR + i * WG_CFG_ENTRY;
        struct wg_allowed a = { .peer = e[0], .family = e[1], .plen = e[2] };
        uint32_t j = i;
        memcpy(a.addr, e + 4, 16);
        if (a.peer >= cfg->npeers || (a.family != 4 && a.family != 6) || a.plen > (a.family == 4 ? 32 : 128))
            return PyErr_Format(PyExc_ValueError, "config: AllowedIPs entry %u is invalid", i), -1;
        while (j > 0 && cfg->allowed[j - 1].plen < a.plen) {   /* longest prefix first */
            cfg->allowed[j] = cfg->allowed[j - 1];
            j--;
        }
        cfg->allowed[j] = a;
    }
    return 0;
}

static void capsule_free(PyObject *capsule)
{
    void *b = PyCapsule_GetPointer(capsule, TUNPUMP_TRANSFORM_CAPSULE);

    if (b)
        OPENSSL_cleanse(b, sizeof(struct wg_blob));
    free(b);
}

/* Transform(config): the capsule for tunpump.Pump(transform=...). */
static PyObject *wg_transform(PyObject *self, PyObject *arg)
{
    struct wg_blob *b;
    PyObject *cap;
    char *buf;
    Py_ssize_t len;

    (void)self;
    if (PyBytes_AsStringAndSize(arg, &buf, &len) < 0)
        return NULL;
    if (!(b = calloc(1, sizeof(*b))))
        return PyErr_NoMemory();
    if (parse_cfg((const uint8_t *)buf, len, &b->cfg) < 0) {
        free(b);
        return NULL;
    }
    b->t.ops = &wg_ops;
    b->t.config = b;
    b->t.config_len = sizeof(*b);
    if (!(cap = PyCapsule_New(b, TUNPUMP_TRANSFORM_CAPSULE, capsule_free)))
        free(b);
    return cap;
}

/* counters(capsule) -> (per-peer tuples in COUNTERS order, drop tuple in DROP_REASONS order) */
static PyObject *wg_counters(PyObject *self, PyObject *cap)
{
    struct wg_blob *b = PyCapsule_IsValid(cap, TUNPUMP_TRANSFORM_CAPSULE) ?
                        PyCapsule_GetPointer(cap, TUNPUMP_TRANSFORM_CAPSULE) : NULL;
    PyObject *peers, *drops;

    (void)self;
    if (!b || b->t.ops != &wg_ops)
        return PyErr_Format(PyExc_TypeError, "capsule: not a wgdata transform");
    if (!(peers = PyTuple_New(b->cfg.npeers)) || !(drops = PyTuple_New(R_N))) {
        Py_XDECREF(peers);
        return NULL;
    }
    for (uint32_t i = 0; i < b->cfg.npeers; i++) {
        PyObject *t = PyTuple_New(C_N);
        if (!t)
            goto fail;
        PyTuple_SET_ITEM(peers, i, t);
        for (int j = 0; j < C_N; j++) {
            PyObject *v = PyLong_FromUnsignedLongLong(ld(&b->sh.peer[i][j]));
            if (!v)
                goto fail;
            PyTuple_SET_ITEM(t, j, v);
        }
    }
    for (int j = 0; j < R_N; j++) {
        PyObject *v = PyLong_FromUnsignedLongLong(ld(&b->sh.drops[j]));
        if (!v)
            goto fail;
        PyTuple_SET_ITEM(drops, j, v);
    }
    return Py_BuildValue("(NN)", peers, drops);
fail:
    Py_DECREF(peers);
    Py_DECREF(drops);
    return NULL;
}

static PyMethodDef methods[] = {
    { "Transform", wg_transform, METH_O, "Transform(config: bytes): a tunpump transform capsule" },
    { "counters", wg_counters, METH_O, "counters(capsule): (per-peer counters, drops per reason)" },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wgdata", "WireGuard's data path as a tunpump transform.", -1, methods,
    NULL, NULL, NULL, NULL,
};

static PyObject *names(const char *const *v, int n)
{
    PyObject *t = PyTuple_New(n);

    for (int i = 0; t && i < n; i++) {
        PyObject *s = PyUnicode_FromString(v[i]);
        if (!s) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

PyMODINIT_FUNC PyInit_wgdata(void)
{
    PyObject *m = PyModule_Create(&module);

    if (m && (PyModule_AddObject(m, "COUNTERS", names(counter_names, C_N)) < 0 ||
              PyModule_AddObject(m, "DROP_REASONS", names(reason_names, R_N)) < 0 ||
              PyModule_AddIntConstant(m, "MAX_PEERS", WG_MAX_PEERS) < 0 ||
              PyModule_AddIntConstant(m, "MAX_ALLOWED", WG_MAX_ALLOWED) < 0 ||
              PyModule_AddIntConstant(m, "WINDOW", WG_WINDOW) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
#endif /* WGDATA_NO_PYTHON */
