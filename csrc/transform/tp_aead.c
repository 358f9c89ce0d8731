/* The PSK AEAD transform's core over OpenSSL 3 EVP: see tp_aead.h for the
 * wire format, the nonce rule, the replay window and the rekey grace. */
#include "tp_aead.h"
#include "tp_replay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const reason_names[TP_AEAD_NREASONS] = {
    [TP_AEAD_OK] = "ok",
    [TP_AEAD_DROP_TRUNCATED] = "truncated",
    [TP_AEAD_DROP_GARBAGE] = "garbage",
    [TP_AEAD_DROP_BAD_SENDER] = "bad_sender",
    [TP_AEAD_DROP_UNKNOWN_KEY] = "unknown_key",
    [TP_AEAD_DROP_AUTH] = "auth_failed",
    [TP_AEAD_DROP_REPLAY] = "replay",
    [TP_AEAD_DROP_TOO_OLD] = "too_old",
};

const char *tp_aead_reason_name(int reason)
{
    return reason >= 0 && reason < TP_AEAD_NREASONS ? reason_names[reason] : "?";
}

const char *tp_aead_cipher_name(int cipher)
{
    switch (cipher) {
    case TP_AEAD_AES_256_GCM: return "aes-256-gcm";
    case TP_AEAD_CHACHA20_POLY1305: return "chacha20-poly1305";
    default: return NULL;
    }
}

uint64_t tp_aead_counter_start_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* In place: the gather seal with the packet as its only piece, the
 * datagram starting 16 bytes before it (out + 16 == data: the one overlap
 * allowed). Without 16 bytes of headroom there is no place to start: size 0
 * makes it -ENOBUFS, after the checks that come first. */
int tp_aead_seal(struct tp_aead *st, uint8_t *data, uint32_t len, uint32_t headroom, uint32_t tailroom,
                 uint8_t **out, uint32_t *out_len)
{
    uint8_t *dgram = headroom >= TP_AEAD_HEADER_LEN ? data - TP_AEAD_HEADER_LEN : data;
    uint64_t room = headroom >= TP_AEAD_HEADER_LEN ? (uint64_t)TP_AEAD_HEADER_LEN + len + tailroom : 0;
    int rc = tp_aead_seal_gather(st, NULL, 0, data, len, dgram, room > UINT32_MAX ? UINT32_MAX : (uint32_t)room,
                                 out_len);

    if (rc == 0)
        *out = dgram;
    return rc;
}

void tp_aead_seal_batch(struct tp_aead *st, struct tp_aead_pkt *pkts, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct tp_aead_pkt *p = &pkts[i];
        uint8_t *out;
        uint32_t out_len;
        p->result = tp_aead_seal(st, p->data, p->len, p->headroom, p->tailroom, &out, &out_len);
        if (p->result == 0) {
            p->headroom -= TP_AEAD_HEADER_LEN;
            p->tailroom -= TP_AEAD_TAG_LEN;
            p->data = out;
            p->len = out_len;
        }
    }
}

void tp_aead_open_batch(struct tp_aead *st, struct tp_aead_pkt *pkts, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct tp_aead_pkt *p = &pkts[i];
        uint8_t *out;
        uint32_t out_len;
        p->result = tp_aead_open(st, p->data, p->len, &out, &out_len);
        if (p->result == TP_AEAD_OK) {
            p->headroom += TP_AEAD_HEADER_LEN;
            p->tailroom += TP_AEAD_TAG_LEN;
            p->data = out;
            p->len = out_len;
        }
    }
}

#ifdef TP_HAVE_LIBCRYPTO

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR < 3
#error "tp_aead needs OpenSSL 3 (EVP_CIPHER_fetch, EVP_EncryptInit_ex2): setup.py should not have defined TP_HAVE_LIBCRYPTO"
#endif

/* One key: its contexts hold the expanded key, so a packet only sets the
 * nonce. Slots are swapped on rekey, never reallocated. */
struct tp_aead_key {
    int valid;
    uint8_t id;
    uint64_t until;                 /* as the previous key: accepted until this time */
    EVP_CIPHER_CTX *enc, *dec;
    struct tp_replay win;           /* counters accepted under this key */
};

struct tp_aead {
    struct tp_aead_cfg cfg;
    EVP_CIPHER *cipher;
    uint64_t counter;               /* next to send */
    int cur;                        /* keys[cur] current, keys[!cur] previous (or staged) */
    int staged;                     /* keys[!cur] is a staged key: accepted, not yet sent with */
    uint64_t switch_at;             /* staged: sending switches to it at this time */
    uint64_t now;                   /* the last tick's time */
    struct tp_aead_key keys[2];
};

/* What one AEAD call transforms: data[0 .. len) into out[0 .. len), the
 * tag at tag. In place: out == data (OpenSSL allows exactly that overlap,
 * no other). */
struct aead_io {
    const uint8_t *data;
    uint32_t len;
    uint8_t *out, *tag;
};

static struct aead_io in_place(uint8_t *buf, uint32_t len)
{
    return (struct aead_io){ .data = buf, .len = len, .out = buf, .tag = buf + len };
}

/* The one place libcrypto runs the AEAD: ctx already holds the key. Sets
 * the nonce, feeds aad, transforms io->data into io->out, and writes (enc)
 * or checks (!enc) the 16-byte tag. 0, or -1 if libcrypto fails, the output
 * length is not the input's, or the tag does not verify. */
static int aead_crypt(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *nonce, const uint8_t *aad, int aad_len,
                      const struct aead_io *io)
{
    /* The tag goes through an OSSL_PARAM made here, not EVP_CIPHER_CTX_ctrl,
     * which would build one per call and is a measurable share of a small
     * packet's cost; on open it rides along with the nonce's init. */
    OSSL_PARAM tp[2] = { OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, io->tag, TP_AEAD_TAG_LEN),
                         OSSL_PARAM_construct_end() };
    int n, d = 0, fin;

    /* An empty packet is not fed (data may be NULL). */
    if (EVP_CipherInit_ex2(ctx, NULL, NULL, nonce, enc, enc ? NULL : tp) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &n, aad, aad_len) != 1 ||
        (io->len && EVP_CipherUpdate(ctx, io->out, &d, io->data, (int)io->len) != 1) ||
        EVP_CipherFinal_ex(ctx, io->out + d, &fin) != 1 || (uint64_t)d + (uint64_t)fin != io->len)
        return -1;
    return enc && EVP_CIPHER_CTX_get_params(ctx, tp) != 1 ? -1 : 0;
}

int tp_aead_oneshot(int cipher, int enc, const uint8_t key[TP_AEAD_KEY_LEN], const uint8_t nonce[12],
                    const uint8_t *aad, uint32_t aad_len, uint8_t *buf, uint32_t len, uint8_t tag[TP_AEAD_TAG_LEN])
{
    const char *name = tp_aead_cipher_name(cipher);
    EVP_CIPHER *c = name ? EVP_CIPHER_fetch(NULL, name, NULL) : NULL;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    struct aead_io io = in_place(buf, len);
    int rc = -EINVAL;

    io.tag = tag;
    if (name && len <= TP_AEAD_MAX_PLAIN && aad_len <= TP_AEAD_MAX_PLAIN) {
        rc = -EIO;
        if (c && ctx && EVP_CipherInit_ex2(ctx, c, key, NULL, enc, NULL) == 1)
            rc = aead_crypt(ctx, enc, nonce, aad, (int)aad_len, &io) == 0 ? 0 : -EBADMSG;
    }
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(c);
    return rc;
}

int tp_aead_available(void) { return 1; }
const char *tp_aead_unavailable_reason(void) { return NULL; }

void tp_aead_free(struct tp_aead *st)
{
    if (!st)
        return;
    for (int i = 0; i < 2; i++) {
        EVP_CIPHER_CTX_free(st->keys[i].enc);   /* clears the key schedule */
        EVP_CIPHER_CTX_free(st->keys[i].dec);
    }
    EVP_CIPHER_free(st->cipher);
    OPENSSL_cleanse(st, sizeof(*st));
    free(st);
}

int tp_aead_new(const struct tp_aead_cfg *cfg, struct tp_aead **out)
{
    const char *name = tp_aead_cipher_name(cfg->cipher);
    struct tp_aead *st;

    *out = NULL;
    if (!name)
        return -EINVAL;
    st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->cfg = *cfg;
    st->counter = cfg->counter_start;
    st->cipher = EVP_CIPHER_fetch(NULL, name, NULL);   /* fetched once, not per init */
    if (!st->cipher) {
        tp_aead_free(st);
        return -ENOTSUP;          /* e.g. a FIPS-only provider without ChaCha20 */
    }
    for (int i = 0; i < 2; i++) {
        st->keys[i].enc = EVP_CIPHER_CTX_new();
        st->keys[i].dec = EVP_CIPHER_CTX_new();
        if (!st->keys[i].enc || !st->keys[i].dec) {
            tp_aead_free(st);
            return -ENOMEM;
        }
    }
    *out = st;
    return 0;
}

static void key_forget(struct tp_aead_key *k)
{
    k->valid = 0;
    EVP_CIPHER_CTX_reset(k->enc);   /* wipe the old key's schedule now */
    EVP_CIPHER_CTX_reset(k->dec);
}

/* keys[!cur] := key `id`, accepted on receive until `until`. -EIO. */
static int key_install(struct tp_aead *st, uint8_t id, const uint8_t key[TP_AEAD_KEY_LEN], uint64_t until)
{
    struct tp_aead_key *next = &st->keys[!st->cur];

    st->staged = 0;
    key_forget(next);
    if (EVP_EncryptInit_ex2(next->enc, st->cipher, key, NULL, NULL) != 1 ||
        EVP_DecryptInit_ex2(next->dec, st->cipher, key, NULL, NULL) != 1) {
        key_forget(next);
        return -EIO;
    }
    next->id = id;
    next->valid = 1;
    next->until = until;
    tp_replay_reset(&next->win);
    return 0;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

/* Send with keys[!cur] from now on; the current key becomes the previous,
 * accepted until now + grace. */
static void key_switch(struct tp_aead *st, uint64_t now_ns)
{
    struct tp_aead_key *cur = &st->keys[st->cur];

    st->staged = 0;
    cur->until = sat_add(now_ns, st->cfg.grace_ns);
    st->cur = !st->cur;
    if (cur->valid && st->cfg.grace_ns == 0)
        key_forget(cur);
}

int tp_aead_set_key(struct tp_aead *st, uint8_t id, const uint8_t key[TP_AEAD_KEY_LEN], uint64_t now_ns)
{
    struct tp_aead_key *cur = &st->keys[st->cur];
    int rc;

    if (cur->valid && cur->id == id)
        return -EEXIST;
    if ((rc = key_install(st, id, key, UINT64_MAX)) < 0)
        return rc;
    key_switch(st, now_ns);
    return 0;
}

int tp_aead_stage_key(struct tp_aead *st, uint8_t id, const uint8_t key[TP_AEAD_KEY_LEN], uint64_t now_ns,
                      uint64_t switch_ns)
{
    struct tp_aead_key *cur = &st->keys[st->cur];
    int rc;

    if (!cur->valid)
        return tp_aead_set_key(st, id, key, now_ns);   /* nothing to keep sending with */
    if (cur->id == id)
        return -EEXIST;
    if ((rc = key_install(st, id, key, UINT64_MAX)) < 0)
        return rc;
    st->staged = 1;
    st->switch_at = sat_add(now_ns, switch_ns);
    return 0;
}

void tp_aead_tick(struct tp_aead *st, uint64_t now_ns)
{
    struct tp_aead_key *prev = &st->keys[!st->cur];

    st->now = now_ns;
    if (st->staged) {
        if (now_ns >= st->switch_at)
            key_switch(st, now_ns);
    } else if (prev->valid && now_ns >= prev->until) {
        key_forget(prev);
    }
}

int tp_aead_sending_key(const struct tp_aead *st)
{
    const struct tp_aead_key *cur = &st->keys[st->cur];

    return cur->valid ? cur->id : -1;
}

uint64_t tp_aead_next_counter(const struct tp_aead *st)
{
    return st->counter;
}

/* Header of the next datagram under k into h[0 .. 16), and the counter
 * spent: a nonce is used once, even if libcrypto then fails. */
static void put_header(struct tp_aead *st, const struct tp_aead_key *k, uint8_t *h)
{
    h[0] = TP_AEAD_TYPE_DATA_V1;
    h[1] = k->id;
    h[2] = h[3] = 0;
    put32(h + 4, st->cfg.tx_sender);
    put32(h + 8, (uint32_t)(st->counter >> 32));
    put32(h + 12, (uint32_t)st->counter);
    st->counter++;
}

/* The one sealing path (tp_aead_seal is this with one piece, in place). */
int tp_aead_seal_gather(struct tp_aead *st, const uint8_t *head, uint32_t head_len, const uint8_t *data, uint32_t len,
                        uint8_t *out, uint32_t out_size, uint32_t *out_len)
{
    struct tp_aead_key *k = &st->keys[st->cur];
    uint64_t plen = (uint64_t)head_len + len;
    uint8_t *plain;
    struct aead_io io;

    if (!k->valid)
        return -ENOKEY;
    if (plen > TP_AEAD_MAX_PLAIN)
        return -EMSGSIZE;
    if (out_size < plen + TP_AEAD_OVERHEAD)
        return -ENOBUFS;
    if (st->counter == TP_AEAD_COUNTER_MAX)
        return -EOVERFLOW;
    put_header(st, k, out);
    plain = out + TP_AEAD_HEADER_LEN;   /* out is known to hold a datagram (not NULL) only from here */
    io = (struct aead_io){ .data = head_len ? head : data, .len = (uint32_t)plen, .out = plain };
    if (head_len && len) {
        /* Two pieces (a split segment's headers and payload) are joined in
         * out and sealed there in one update: two updates, reading each
         * piece where it lies, cost more than this copy (OpenSSL's work per
         * call and the partial block at the seam: 11 % more for AES-256-GCM
         * over 52 + 1348 bytes, benchmarks/aead_seal.py). One piece is
         * sealed from where it lies into out. */
        memcpy(plain, head, head_len);
        memcpy(plain + head_len, data, len);
        io.data = plain;
    }
    io.tag = plain + plen;
    if (aead_crypt(k->enc, 1, out + 4, out, TP_AEAD_HEADER_LEN, &io) != 0)
        return -EIO;
    *out_len = (uint32_t)plen + TP_AEAD_OVERHEAD;
    return 0;
}

/* The key a datagram names: current, or previous while in grace. */
static struct tp_aead_key *key_for(struct tp_aead *st, uint8_t id)
{
    struct tp_aead_key *cur = &st->keys[st->cur], *prev = &st->keys[!st->cur];

    if (cur->valid && cur->id == id)
        return cur;
    return prev->valid && prev->id == id ? prev : NULL;
}

int tp_aead_open(struct tp_aead *st, uint8_t *data, uint32_t len, uint8_t **out, uint32_t *out_len)
{
    uint8_t *plain = data + TP_AEAD_HEADER_LEN;
    struct tp_aead_key *k;
    struct aead_io io;
    uint64_t counter;
    uint32_t plen;
    int v;

    if (len < TP_AEAD_OVERHEAD)
        return TP_AEAD_DROP_TRUNCATED;
    plen = len - TP_AEAD_OVERHEAD;
    if (plen > TP_AEAD_MAX_PLAIN || data[0] != TP_AEAD_TYPE_DATA_V1 || data[2] || data[3])
        return TP_AEAD_DROP_GARBAGE;
    if (get32(data + 4) != st->cfg.rx_sender)
        return TP_AEAD_DROP_BAD_SENDER;
    if (!(k = key_for(st, data[1])))
        return TP_AEAD_DROP_UNKNOWN_KEY;
    counter = (uint64_t)get32(data + 8) << 32 | get32(data + 12);
    /* The cheap window check first; it is marked only after the tag verified. */
    if ((v = tp_replay_check(&k->win, counter)) != TP_REPLAY_OK)
        return v == TP_REPLAY_SEEN ? TP_AEAD_DROP_REPLAY : TP_AEAD_DROP_TOO_OLD;
    io = in_place(plain, plen);
    if (aead_crypt(k->dec, 0, data + 4, data, TP_AEAD_HEADER_LEN, &io) != 0)
        return TP_AEAD_DROP_AUTH;
    tp_replay_mark(&k->win, counter);
    if (st->staged && k == &st->keys[!st->cur])
        key_switch(st, st->now);    /* the peer sends with the staged key: it has it, so can we */
    *out = plain;
    *out_len = plen;
    return TP_AEAD_OK;
}

int tp_aead_authentic(struct tp_aead *st, uint8_t *data, uint32_t len)
{
    struct tp_aead_key *k;
    struct aead_io io;
    uint32_t plen;

    if (len < TP_AEAD_OVERHEAD || data[0] != TP_AEAD_TYPE_DATA_V1 || data[2] || data[3])
        return 0;
    plen = len - TP_AEAD_OVERHEAD;
    if (plen > TP_AEAD_MAX_PLAIN || !(k = key_for(st, data[1])))
        return 0;
    io = in_place(data + TP_AEAD_HEADER_LEN, plen);
    return aead_crypt(k->dec, 0, data + 4, data, TP_AEAD_HEADER_LEN, &io) == 0;
}

#else   /* built without libcrypto headers: the AEAD says so and makes no state */

struct tp_aead {
    int unused;
};

int tp_aead_available(void) { return 0; }

const char *tp_aead_unavailable_reason(void)
{
    return "tunpump was built without OpenSSL 3 libcrypto headers (<openssl/evp.h>): install them "
           "(Debian/Ubuntu: apt-get install libssl-dev; Fedora: dnf install openssl-devel) and rebuild tunpump";
}

int tp_aead_new(const struct tp_aead_cfg *cfg, struct tp_aead **out)
{
    (void)cfg;
    *out = NULL;
    return -ENOTSUP;
}

/* No state can exist without libcrypto, so these are never reached with one. */
void tp_aead_free(struct tp_aead *st) { free(st); }
int tp_aead_set_key(struct tp_aead *st, uint8_t id, const uint8_t key[TP_AEAD_KEY_LEN], uint64_t now_ns)
{
    (void)st; (void)id; (void)key; (void)now_ns;
    return -ENOTSUP;
}
int tp_aead_stage_key(struct tp_aead *st, uint8_t id, const uint8_t key[TP_AEAD_KEY_LEN], uint64_t now_ns,
                      uint64_t switch_ns)
{
    (void)st; (void)id; (void)key; (void)now_ns; (void)switch_ns;
    return -ENOTSUP;
}
void tp_aead_tick(struct tp_aead *st, uint64_t now_ns) { (void)st; (void)now_ns; }
int tp_aead_sending_key(const struct tp_aead *st) { (void)st; return -1; }
uint64_t tp_aead_next_counter(const struct tp_aead *st) { (void)st; return 0; }
int tp_aead_seal_gather(struct tp_aead *st, const uint8_t *head, uint32_t head_len, const uint8_t *data, uint32_t len,
                        uint8_t *out, uint32_t out_size, uint32_t *out_len)
{
    (void)st; (void)head; (void)head_len; (void)data; (void)len; (void)out; (void)out_size; (void)out_len;
    return -ENOTSUP;
}
int tp_aead_open(struct tp_aead *st, uint8_t *data, uint32_t len, uint8_t **out, uint32_t *out_len)
{
    (void)st; (void)data; (void)len; (void)out; (void)out_len;
    return TP_AEAD_DROP_GARBAGE;
}
int tp_aead_authentic(struct tp_aead *st, uint8_t *data, uint32_t len)
{
    (void)st; (void)data; (void)len;
    return 0;
}
int tp_aead_oneshot(int cipher, int enc, const uint8_t key[TP_AEAD_KEY_LEN], const uint8_t nonce[12],
                    const uint8_t *aad, uint32_t aad_len, uint8_t *buf, uint32_t len, uint8_t tag[TP_AEAD_TAG_LEN])
{
    (void)cipher; (void)enc; (void)key; (void)nonce; (void)aad; (void)aad_len; (void)buf; (void)len; (void)tag;
    return -ENOTSUP;
}

#endif
