/* The built-in pre-shared-key AEAD transform's core: AES-256-GCM or
 * ChaCha20-Poly1305 from OpenSSL 3 libcrypto (EVP), a 16-byte header, an
 * anti-replay window per key and rekeying by key id. One state per worker
 * (no locks, no allocation per packet); the transform hook's adapter calls it.
 *
 * Wire format of one datagram (all integers big-endian):
 *
 *    0        1        2        4                8                16
 *   +--------+--------+--------+----------------+-----------------+-----------+------+
 *   |  0xA1  | key id | 0x0000 | sender (u32)   | counter (u64)   | ciphertext| tag  |
 *   +--------+--------+--------+----------------+-----------------+-----------+------+
 *    type 0xA, version 1          nonce = bytes 4..16 (12 bytes)    len(plain)  16
 *
 * The whole 16-byte header is the AEAD's associated data, so none of it can
 * be changed in flight. Overhead: 32 bytes (16 before the packet, 16 after),
 * within the hook's headroom 32 / tailroom 16.
 *
 * Nonce uniqueness (a repeated nonce under one key breaks GCM and
 * ChaCha20-Poly1305): the nonce is (sender, counter).
 *  - `sender` is distinct for every worker of every end sharing the key: the
 *    adapter sets it to (side << 16 | queue), where side tells the two ends
 *    apart (0/1) and queue is the worker's queue index. Different workers
 *    therefore never share a nonce, whatever their counters.
 *  - The counter only grows, across rekeys too, and starts where the
 *    adapter says (cfg.counter_start): tp_aead_counter_start_now() gives
 *    CLOCK_REALTIME in nanoseconds, so a restarted end does not reuse the
 *    counters of its previous run (as long as it sent fewer than one packet
 *    per nanosecond per worker and the clock did not go back). Rekeying on
 *    every start removes that assumption.
 *  - The counter never wraps: when it reaches TP_AEAD_COUNTER_MAX, seal
 *    refuses every packet with -EOVERFLOW for good (a state whose counter
 *    started at today's clock has 1.6e19 packets before that, centuries at
 *    any rate; the limit exists so a wrap is impossible, not to be reached).
 *
 * Receive: a datagram is accepted only if its sender is cfg.rx_sender (the
 * peer's worker paired with this one: reflected own packets and datagrams
 * redirected to another queue are refused), its key id is the current or
 * (during the grace period) the previous key, its tag verifies, and its
 * counter passes that key's replay window (tp_replay.h, 4032 packets).
 *
 * Rekey: tp_aead_set_key installs a new key; sending switches at once; the
 * previous key stays accepted on receive for cfg.grace_ns after the install
 * (time is given by the caller: tp_aead_tick once per batch), then it is
 * forgotten and its datagrams are refused as unknown_key. tp_aead_stage_key
 * (what the transform's rekey uses) first accepts the new key on receive
 * and switches sending later, so two ends rekeyed a little apart lose
 * nothing.
 *
 * Threads: one state serves both directions of one worker; every call on it
 * (seal, open, set_key, tick) is made from that worker's thread, never two at
 * once. Nothing here locks; seal and open never allocate (set_key lets
 * OpenSSL re-make the new key's contexts: once per rekey, not per packet).
 *
 * Built without libcrypto headers (TP_HAVE_LIBCRYPTO undefined), everything
 * compiles, tp_aead_available() is 0, and tp_aead_new returns -ENOTSUP. */
#ifndef TP_AEAD_H
#define TP_AEAD_H

#include <stdint.h>

#define TP_AEAD_KEY_LEN 32
#define TP_AEAD_HEADER_LEN 16
#define TP_AEAD_TAG_LEN 16
#define TP_AEAD_OVERHEAD (TP_AEAD_HEADER_LEN + TP_AEAD_TAG_LEN)
#define TP_AEAD_TYPE_DATA_V1 0xA1            /* byte 0: not an IPv4/IPv6 first nibble, not WireGuard's 1-4 */
#define TP_AEAD_MAX_PLAIN 65535u              /* longest packet sealed (one IP packet) */
#define TP_AEAD_COUNTER_MAX UINT64_MAX       /* never sent: seal stops before it */

enum tp_aead_cipher {
    TP_AEAD_AES_256_GCM = 1,
    TP_AEAD_CHACHA20_POLY1305 = 2,
};

/* open's outcome: 0 accepted, else why the datagram is dropped. */
enum tp_aead_reason {
    TP_AEAD_OK = 0,
    TP_AEAD_DROP_TRUNCATED,     /* shorter than header + tag */
    TP_AEAD_DROP_GARBAGE,       /* not our type/version, reserved bits set, or too long */
    TP_AEAD_DROP_BAD_SENDER,    /* sender is not the paired peer worker (reflected, misrouted) */
    TP_AEAD_DROP_UNKNOWN_KEY,   /* key id neither current nor previous-in-grace */
    TP_AEAD_DROP_AUTH,          /* the tag does not verify */
    TP_AEAD_DROP_REPLAY,        /* counter already accepted */
    TP_AEAD_DROP_TOO_OLD,       /* counter behind the replay window */
    TP_AEAD_NREASONS
};

struct tp_aead_cfg {
    int cipher;                 /* enum tp_aead_cipher */
    uint32_t tx_sender;         /* this worker's sender id (nonce prefix) */
    uint32_t rx_sender;         /* the only sender id accepted on receive */
    uint64_t counter_start;     /* first counter sent (see above) */
    uint64_t grace_ns;          /* previous key accepted this long after a rekey */
};

struct tp_aead;                 /* per-worker state, opaque */

/* One packet of a batch: data points at the packet, with headroom bytes
 * writable before it and tailroom after it. The batch calls update data and
 * len in place and set result (seal: 0 or -errno; open: enum tp_aead_reason). */
struct tp_aead_pkt {
    uint8_t *data;
    uint32_t len;
    uint32_t headroom;
    uint32_t tailroom;
    int32_t result;
};

int tp_aead_available(void);
/* Why the AEAD is unavailable (for the binding's error), or NULL if it is. */
const char *tp_aead_unavailable_reason(void);
const char *tp_aead_cipher_name(int cipher);    /* "aes-256-gcm", ..., NULL if unknown */
const char *tp_aead_reason_name(int reason);    /* "truncated", ..., "?" if out of range */
uint64_t tp_aead_counter_start_now(void);       /* CLOCK_REALTIME in ns */

/* Make a worker's state (all cipher contexts made here, none per packet).
 * -EINVAL (bad cipher), -ENOMEM, -ENOTSUP (built without libcrypto), -EIO. */
int tp_aead_new(const struct tp_aead_cfg *cfg, struct tp_aead **out);
void tp_aead_free(struct tp_aead *st);

/* Install key `id` (sending uses it from now on; the current key becomes the
 * previous, accepted on receive until now_ns + grace_ns). -EEXIST if id is
 * the current key's, -EIO if libcrypto refuses. A previous key with the same
 * id is replaced. */
int tp_aead_set_key(struct tp_aead *st, uint8_t id, const uint8_t key[TP_AEAD_KEY_LEN], uint64_t now_ns);
/* Stage key `id` for a rekey without loss: it is accepted on receive at
 * once, and sending switches to it (the current key then becoming the
 * previous, in grace as above) at now_ns + switch_ns at the latest (on the
 * first tick after), or as soon as a datagram under it authenticates (the
 * peer has the key). With both ends staging the same key within switch_ns
 * of each other, neither ever receives a key it does not know. Staging
 * replaces a previous key still in grace (and a key staged before). With no
 * current key it is set_key. -EEXIST if id is the current key's, -EIO. */
int tp_aead_stage_key(struct tp_aead *st, uint8_t id, const uint8_t key[TP_AEAD_KEY_LEN], uint64_t now_ns,
                      uint64_t switch_ns);
/* Time passes (once per batch, a coarse clock is fine): a staged key whose
 * time has come is switched to; a previous key whose grace is over is
 * forgotten. */
void tp_aead_tick(struct tp_aead *st, uint64_t now_ns);
/* The id of the key sealing uses, -1 if none. */
int tp_aead_sending_key(const struct tp_aead *st);
/* The next counter seal will use. */
uint64_t tp_aead_next_counter(const struct tp_aead *st);

/* Seal from two read-only pieces: the plaintext is head[0 .. head_len)
 * then data[0 .. len) (either piece may be empty, and then NULL). One piece
 * is sealed from where it lies; two are joined in out first (one cipher
 * call beats two: tp_aead.c says by how much). The datagram (header, ciphertext, tag:
 * head_len + len + 32 bytes, *out_len) is written at out[0 ..), never
 * beyond out_size. out must not overlap the pieces (but see tp_aead_seal).
 * 0, or -ENOKEY (no key yet), -EMSGSIZE (head_len + len >
 * TP_AEAD_MAX_PLAIN), -ENOBUFS (out_size < head_len + len + 32),
 * -EOVERFLOW (counters used up), -EIO (libcrypto: the counter is spent and
 * out may hold part of a datagram), -ENOTSUP (built without libcrypto).
 * Checked in that order; the refusals spend no counter and write nothing. */
int tp_aead_seal_gather(struct tp_aead *st, const uint8_t *head, uint32_t head_len, const uint8_t *data, uint32_t len,
                        uint8_t *out, uint32_t out_size, uint32_t *out_len);
/* Seal in place (tp_aead_seal_gather with data as the only piece and out =
 * data - 16): header into the 16 bytes before data, tag after it.
 * *out, *out_len: the datagram (data - 16, len + 32). Errors as above,
 * -ENOBUFS meaning headroom < 16 or tailroom < 16. */
int tp_aead_seal(struct tp_aead *st, uint8_t *data, uint32_t len, uint32_t headroom, uint32_t tailroom,
                 uint8_t **out, uint32_t *out_len);
/* Open in place: on TP_AEAD_OK, *out, *out_len is the plaintext (data + 16,
 * len - 32); otherwise the reason to drop it (the buffer may be garbled). */
int tp_aead_open(struct tp_aead *st, uint8_t *data, uint32_t len, uint8_t **out, uint32_t *out_len);

/* Whether the datagram's tag verifies under the key it names, whatever its
 * sender and counter (no replay window is consulted or moved): to tell a
 * datagram sealed with our key by the wrong sender (the other end chose our
 * side) from a stranger's. Decrypts in place (the buffer is garbled): only
 * for datagrams about to be dropped. 1 or 0. */
int tp_aead_authentic(struct tp_aead *st, uint8_t *data, uint32_t len);

/* The AEAD primitive seal and open use, once, with a context made for the
 * call (allocates: for known-answer tests and tools, never per packet):
 * transform buf[0..len) in place under key and the 12-byte nonce with aad,
 * writing (enc = 1) or checking (enc = 0) tag. 0, -EBADMSG (tag does not
 * verify), -EINVAL, -EIO, -ENOTSUP (built without libcrypto). */
int tp_aead_oneshot(int cipher, int enc, const uint8_t key[TP_AEAD_KEY_LEN], const uint8_t nonce[12],
                    const uint8_t *aad, uint32_t aad_len, uint8_t *buf, uint32_t len, uint8_t tag[TP_AEAD_TAG_LEN]);

/* The same over a batch; each packet's result as above. */
void tp_aead_seal_batch(struct tp_aead *st, struct tp_aead_pkt *pkts, unsigned n);
void tp_aead_open_batch(struct tp_aead *st, struct tp_aead_pkt *pkts, unsigned n);

#endif
