/* Unit tests of the AEAD transform's core (csrc/transform/tp_aead.c) and its
 * replay window (tp_replay.c), built with ASan + UBSan by tests/test_aead_c.py.
 * Every failed check prints a line starting "FAIL"; the last line is
 * "ok N checks" only when none failed.
 *
 * Built with -DTP_HAVE_LIBCRYPTO -lcrypto: known-answer vectors, round trips,
 * each drop reason, rekey grace, counter exhaustion. Built without (and with
 * a poisoned <openssl/evp.h> on the include path): the AEAD reports itself
 * unavailable and the replay window still works.
 * `test_aead bench` prints single-core seal/open throughput instead. */
#include "tp_aead.h"
#include "tp_replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

/* ---- the replay window (pure, built either way) ---------------------------- */

static void test_replay_window(void)
{
    struct tp_replay w;

    CHECK(TP_REPLAY_WINDOW >= 2048, "window %u", TP_REPLAY_WINDOW);
    tp_replay_reset(&w);
    CHECK(tp_replay_check(&w, 0) == TP_REPLAY_OK, "fresh window takes 0");
    CHECK(tp_replay_mark(&w, 0) == TP_REPLAY_OK, "mark 0");
    CHECK(tp_replay_mark(&w, 0) == TP_REPLAY_SEEN, "0 again");
    /* in order, then every one again */
    for (uint64_t c = 1; c < 10000; c++)
        CHECK(tp_replay_mark(&w, c) == TP_REPLAY_OK, "in order %llu", (unsigned long long)c);
    for (uint64_t c = 10000 - TP_REPLAY_WINDOW; c < 10000; c++)
        CHECK(tp_replay_mark(&w, c) == TP_REPLAY_SEEN, "seen %llu", (unsigned long long)c);
    CHECK(tp_replay_mark(&w, 9999 - TP_REPLAY_WINDOW) == TP_REPLAY_TOO_OLD, "just behind");
    CHECK(tp_replay_mark(&w, 0) == TP_REPLAY_TOO_OLD, "far behind");

    /* reordered within the window: newest first, then all older, each once */
    tp_replay_reset(&w);
    uint64_t base = 1000000;
    CHECK(tp_replay_mark(&w, base + TP_REPLAY_WINDOW - 1) == TP_REPLAY_OK, "newest first");
    for (uint64_t c = base; c < base + TP_REPLAY_WINDOW - 1; c++)
        CHECK(tp_replay_mark(&w, c) == TP_REPLAY_OK, "late %llu", (unsigned long long)c);
    for (uint64_t c = base; c < base + TP_REPLAY_WINDOW; c++)
        CHECK(tp_replay_check(&w, c) == TP_REPLAY_SEEN, "late again %llu", (unsigned long long)c);
    CHECK(tp_replay_check(&w, base - 1) == TP_REPLAY_TOO_OLD, "one past the window");

    /* gaps: a jump of a whole ring clears every block; smaller jumps keep the bits */
    tp_replay_reset(&w);
    tp_replay_mark(&w, 100);
    tp_replay_mark(&w, 100 + 64 * 3);           /* three blocks on */
    CHECK(tp_replay_check(&w, 100) == TP_REPLAY_SEEN, "kept across a small slide");
    CHECK(tp_replay_check(&w, 101) == TP_REPLAY_OK, "gap in window is open");
    tp_replay_mark(&w, 1u << 30);
    CHECK(tp_replay_check(&w, (1u << 30) - 1) == TP_REPLAY_OK, "fresh after a big jump");
    CHECK(tp_replay_check(&w, (1u << 30) - 64 * 3 - 2) == TP_REPLAY_OK, "stale bits cleared (same slot as before)");
    CHECK(tp_replay_check(&w, 100 + 64 * 3) == TP_REPLAY_TOO_OLD, "old top now too old");
    /* the top of the counter space */
    tp_replay_mark(&w, UINT64_MAX);
    CHECK(tp_replay_check(&w, UINT64_MAX) == TP_REPLAY_SEEN, "max seen");
    CHECK(tp_replay_check(&w, UINT64_MAX - 1) == TP_REPLAY_OK, "max - 1 open");
    CHECK(tp_replay_check(&w, UINT64_MAX - TP_REPLAY_WINDOW) == TP_REPLAY_TOO_OLD, "max - window");
}

#ifdef TP_HAVE_LIBCRYPTO

/* ---- helpers ---------------------------------------------------------------- */

static const uint8_t KEY1[32] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                  16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };
static uint8_t KEY2[32];

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    for (; s[0] && s[1]; s += 2) {
        unsigned v;
        sscanf(s, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static struct tp_aead *make(int cipher, uint32_t tx, uint32_t rx, uint64_t start, uint64_t grace)
{
    struct tp_aead_cfg cfg = { .cipher = cipher, .tx_sender = tx, .rx_sender = rx,
                               .counter_start = start, .grace_ns = grace };
    struct tp_aead *st = NULL;
    int rc = tp_aead_new(&cfg, &st);
    CHECK(rc == 0 && st, "tp_aead_new(%d) = %d", cipher, rc);
    return st;
}

/* A pair: a (side 0, queue 3) talking to b (side 1, queue 3), both on key id 1. */
static void make_pair(int cipher, struct tp_aead **a, struct tp_aead **b, uint64_t grace)
{
    *a = make(cipher, 0x00000003, 0x00010003, 1000, grace);
    *b = make(cipher, 0x00010003, 0x00000003, 5000, grace);
    CHECK(tp_aead_set_key(*a, 1, KEY1, 0) == 0, "key a");
    CHECK(tp_aead_set_key(*b, 1, KEY1, 0) == 0, "key b");
}

/* A datagram in its own exact-size heap block (ASan sees any overrun). */
struct dgram {
    uint8_t *block;
    uint8_t *data;
    uint32_t len;
};

static struct dgram seal_new(struct tp_aead *st, const uint8_t *plain, uint32_t len, int *rc)
{
    struct dgram d = { malloc(len + TP_AEAD_OVERHEAD + 1), NULL, 0 };
    uint8_t *p = d.block + TP_AEAD_HEADER_LEN;
    memcpy(p, plain, len);
    *rc = tp_aead_seal(st, p, len, TP_AEAD_HEADER_LEN, TP_AEAD_TAG_LEN, &d.data, &d.len);
    return d;
}

/* Open a copy of d (so d can be delivered again); returns the reason. */
static int open_copy(struct tp_aead *st, const struct dgram *d, uint8_t *plain_out, uint32_t *plain_len)
{
    uint8_t *buf = malloc(d->len ? d->len : 1), *out = NULL;
    uint32_t out_len = 0;
    memcpy(buf, d->data, d->len);
    int r = tp_aead_open(st, buf, d->len, &out, &out_len);
    if (r == TP_AEAD_OK) {
        CHECK(out == buf + 16 && out_len == d->len - 32, "open's output place");
        if (plain_out)
            memcpy(plain_out, out, out_len);
        if (plain_len)
            *plain_len = out_len;
    }
    free(buf);
    return r;
}

static int open_bytes(struct tp_aead *st, const uint8_t *data, uint32_t len)
{
    struct dgram d = { NULL, (uint8_t *)data, len };
    return open_copy(st, &d, NULL, NULL);
}

/* ---- known answers ------------------------------------------------------------ */

static void test_rfc8439_vector(void)
{
    /* RFC 8439 section 2.8.2 */
    uint8_t key[32], nonce[12], aad[12], ct[114], tag[16], buf[114];
    const char *plain = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
                        "the future, sunscreen would be it.";
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(0x80 + i);
    unhex("070000004041424344454647", nonce);
    unhex("50515253c0c1c2c3c4c5c6c7", aad);
    unhex("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b"
          "1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
          "3ff4def08e4b7a9de576d26586cec64b6116", ct);
    CHECK(strlen(plain) == 114, "plaintext length");
    memcpy(buf, plain, 114);
    uint8_t got_tag[16];
    CHECK(tp_aead_oneshot(TP_AEAD_CHACHA20_POLY1305, 1, key, nonce, aad, 12, buf, 114, got_tag) == 0, "seal");
    unhex("1ae10b594f09e26a7e902ecbd0600691", tag);
    CHECK(memcmp(buf, ct, 114) == 0, "RFC 8439 ciphertext");
    CHECK(memcmp(got_tag, tag, 16) == 0, "RFC 8439 tag");
    CHECK(tp_aead_oneshot(TP_AEAD_CHACHA20_POLY1305, 0, key, nonce, aad, 12, buf, 114, tag) == 0, "open");
    CHECK(memcmp(buf, plain, 114) == 0, "RFC 8439 plaintext back");
    memcpy(buf, ct, 114);
    tag[15] ^= 1;
    CHECK(tp_aead_oneshot(TP_AEAD_CHACHA20_POLY1305, 0, key, nonce, aad, 12, buf, 114, tag) == -EBADMSG,
          "wrong tag refused");
}

static void test_gcm_vector(void)
{
    /* The GCM specification's (McGrew & Viega) test case 16: AES-256, 60-byte
     * plaintext, 20-byte AAD (also in NIST's gcmEncryptExtIV256 set). */
    uint8_t key[32], nonce[12], aad[20], pt[60], ct[60], tag[16], buf[60], got_tag[16];
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key);
    unhex("cafebabefacedbaddecaf888", nonce);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
          "b16aedf5aa0de657ba637b39", pt);
    unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838"
          "c5f61e6393ba7a0abcc9f662", ct);
    unhex("76fc6ece0f4e1768cddf8853bb2d551b", tag);
    memcpy(buf, pt, 60);
    CHECK(tp_aead_oneshot(TP_AEAD_AES_256_GCM, 1, key, nonce, aad, 20, buf, 60, got_tag) == 0, "seal");
    CHECK(memcmp(buf, ct, 60) == 0, "GCM ciphertext");
    CHECK(memcmp(got_tag, tag, 16) == 0, "GCM tag");
    CHECK(tp_aead_oneshot(TP_AEAD_AES_256_GCM, 0, key, nonce, aad, 20, buf, 60, tag) == 0, "open");
    CHECK(memcmp(buf, pt, 60) == 0, "GCM plaintext back");
    memcpy(buf, ct, 60);
    aad[0] ^= 0x80;
    CHECK(tp_aead_oneshot(TP_AEAD_AES_256_GCM, 0, key, nonce, aad, 20, buf, 60, tag) == -EBADMSG,
          "changed AAD refused");
}

/* The whole datagram as the docs describe it, computed independently with
 * Python's `cryptography` (AESGCM / ChaCha20Poly1305, nonce = header[4:16],
 * AAD = header): key 00..1f, key id 7, sender 0x00010002, counter
 * 0x0102030405060708. */
static void test_wire_vectors(void)
{
    static const char *plain = "tunpump AEAD wire format v1 test vector";
    static const struct { int cipher; const char *hex; } cases[] = {
        { TP_AEAD_AES_256_GCM,
          "a107000000010002010203040506070804288b822935c731793537511596099b95235f8d5ce30ddc69f670ebb58fb12f"
          "214a485c124688224dd6e87c3512689d7fcaa3bde08bef" },
        { TP_AEAD_CHACHA20_POLY1305,
          "a10700000001000201020304050607085ce12b3bf227f3d6364e1a66de709ed32fa48e438923fc8be0a6d9757dcc87dd"
          "b76d6823b4fe329dd7d15a45928f6f016b571491197a1c" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t want[128], got_plain[64];
        uint32_t plen = 0;
        size_t n = unhex(cases[i].hex, want);
        struct tp_aead *tx = make(cases[i].cipher, 0x00010002, 0, 0x0102030405060708ull, 0);
        struct tp_aead *rx = make(cases[i].cipher, 0, 0x00010002, 0, 0);
        CHECK(tp_aead_set_key(tx, 7, KEY1, 0) == 0 && tp_aead_set_key(rx, 7, KEY1, 0) == 0, "keys");
        int rc;
        struct dgram d = seal_new(tx, (const uint8_t *)plain, (uint32_t)strlen(plain), &rc);
        CHECK(rc == 0 && d.len == n && memcmp(d.data, want, n) == 0, "%s wire bytes", tp_aead_cipher_name(cases[i].cipher));
        CHECK(d.data == d.block, "header written into the headroom");
        CHECK(open_bytes(rx, want, (uint32_t)n) == TP_AEAD_OK, "vector opens");
        CHECK(open_copy(rx, &d, got_plain, &plen) == TP_AEAD_DROP_REPLAY, "and only once");
        struct tp_aead *rx2 = make(cases[i].cipher, 0, 0x00010002, 0, 0);
        tp_aead_set_key(rx2, 7, KEY1, 0);
        CHECK(open_copy(rx2, &d, got_plain, &plen) == TP_AEAD_OK && plen == strlen(plain) &&
              memcmp(got_plain, plain, plen) == 0, "plaintext back");
        CHECK(tp_aead_next_counter(tx) == 0x0102030405060709ull, "counter advanced by one");
        free(d.block);
        tp_aead_free(tx);
        tp_aead_free(rx);
        tp_aead_free(rx2);
    }
}

/* ---- behaviour tables --------------------------------------------------------- */

static const int CIPHERS[] = { TP_AEAD_AES_256_GCM, TP_AEAD_CHACHA20_POLY1305 };

static void test_round_trip(int cipher)
{
    static const uint32_t sizes[] = { 0, 1, 15, 16, 17, 63, 64, 1280, 1400, 9000, TP_AEAD_MAX_PLAIN };
    struct tp_aead *a, *b;
    uint8_t *plain = malloc(TP_AEAD_MAX_PLAIN), *back = malloc(TP_AEAD_MAX_PLAIN);

    make_pair(cipher, &a, &b, 0);
    for (uint32_t i = 0; i < TP_AEAD_MAX_PLAIN; i++)
        plain[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int dir = 0; dir < 2; dir++) {
            struct tp_aead *tx = dir ? b : a, *rx = dir ? a : b;
            int rc;
            uint32_t blen = 0;
            struct dgram d = seal_new(tx, plain, sizes[i], &rc);
            CHECK(rc == 0 && d.len == sizes[i] + 32, "%s seal %u: %d", tp_aead_cipher_name(cipher), sizes[i], rc);
            CHECK(sizes[i] < 16 || memcmp(d.data + 16, plain, 16) != 0, "ciphertext is not the plaintext");
            CHECK(open_copy(rx, &d, back, &blen) == TP_AEAD_OK && blen == sizes[i] &&
                  memcmp(back, plain, blen) == 0, "%s round trip %u dir %d", tp_aead_cipher_name(cipher), sizes[i], dir);
            /* a's own datagram reflected back to a: refused */
            CHECK(open_copy(tx, &d, NULL, NULL) == TP_AEAD_DROP_BAD_SENDER, "reflection");
            free(d.block);
        }
    }
    tp_aead_free(a);
    tp_aead_free(b);
    free(plain);
    free(back);
}

static void test_drop_reasons(int cipher)
{
    struct tp_aead *a, *b;
    uint8_t plain[100], buf[200];
    int rc;

    make_pair(cipher, &a, &b, 0);
    memset(plain, 'x', sizeof(plain));
    struct dgram d = seal_new(a, plain, sizeof(plain), &rc);
    CHECK(rc == 0, "seal");
    const char *cn = tp_aead_cipher_name(cipher);

    /* truncated: shorter than header + tag, down to nothing */
    for (uint32_t n = 0; n < TP_AEAD_OVERHEAD; n++)
        CHECK(open_bytes(b, d.data, n) == TP_AEAD_DROP_TRUNCATED, "%s truncated to %u", cn, n);
    /* a valid datagram cut anywhere past the header: the tag fails */
    CHECK(open_bytes(b, d.data, d.len - 1) == TP_AEAD_DROP_AUTH, "cut by one");
    CHECK(open_bytes(b, d.data, TP_AEAD_OVERHEAD) == TP_AEAD_DROP_AUTH, "cut to header + tag");

    /* garbage: wrong type/version, reserved bytes, an IPv4 packet, over-long */
    struct { int at; uint8_t xor; int want; const char *what; } flips[] = {
        { 0, 0x01, TP_AEAD_DROP_GARBAGE, "version" },
        { 0, 0xf0, TP_AEAD_DROP_GARBAGE, "type" },
        { 2, 0x80, TP_AEAD_DROP_GARBAGE, "reserved byte 2" },
        { 3, 0x01, TP_AEAD_DROP_GARBAGE, "reserved byte 3" },
        { 1, 0x02, TP_AEAD_DROP_UNKNOWN_KEY, "key id" },
        { 4, 0x01, TP_AEAD_DROP_BAD_SENDER, "sender side" },
        { 7, 0x01, TP_AEAD_DROP_BAD_SENDER, "sender queue" },
        { 8, 0x80, TP_AEAD_DROP_AUTH, "counter high bit (nonce)" },
        { 15, 0x01, TP_AEAD_DROP_AUTH, "counter low bit (nonce)" },
        { 16, 0x01, TP_AEAD_DROP_AUTH, "first ciphertext byte" },
        { 16 + 99, 0x80, TP_AEAD_DROP_AUTH, "last ciphertext byte" },
        { 16 + 100, 0x01, TP_AEAD_DROP_AUTH, "first tag byte" },
        { 16 + 115, 0x01, TP_AEAD_DROP_AUTH, "last tag byte" },
    };
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        memcpy(buf, d.data, d.len);
        buf[flips[i].at] ^= flips[i].xor;
        int r = open_bytes(b, buf, d.len);
        CHECK(r == flips[i].want, "%s %s: got %s want %s", cn, flips[i].what, tp_aead_reason_name(r),
              tp_aead_reason_name(flips[i].want));
    }
    uint8_t ipv4[60] = { 0x45, 0, 0, 60 };
    CHECK(open_bytes(b, ipv4, sizeof(ipv4)) == TP_AEAD_DROP_GARBAGE, "a plaintext IPv4 packet");
    uint8_t *huge = calloc(1, TP_AEAD_MAX_PLAIN + TP_AEAD_OVERHEAD + 1);
    memcpy(huge, d.data, 16);
    CHECK(open_bytes(b, huge, TP_AEAD_MAX_PLAIN + TP_AEAD_OVERHEAD + 1) == TP_AEAD_DROP_GARBAGE, "over-long");
    CHECK(open_bytes(b, huge, TP_AEAD_MAX_PLAIN + TP_AEAD_OVERHEAD) == TP_AEAD_DROP_AUTH, "longest is judged by its tag");
    free(huge);

    /* none of the refused copies moved the window: the original still opens, once */
    CHECK(open_copy(b, &d, NULL, NULL) == TP_AEAD_OK, "%s original after forgeries", cn);
    CHECK(open_copy(b, &d, NULL, NULL) == TP_AEAD_DROP_REPLAY, "%s replayed", cn);

    /* wrong key (same id), and the other cipher with the right key */
    struct tp_aead *wrong = make(cipher, 0x00000003, 0x00010003, 1, 0);
    memset(KEY2, 0x55, sizeof(KEY2));
    tp_aead_set_key(wrong, 1, KEY2, 0);
    struct dgram w = seal_new(wrong, plain, sizeof(plain), &rc);
    CHECK(open_copy(b, &w, NULL, NULL) == TP_AEAD_DROP_AUTH, "%s wrong key", cn);
    free(w.block);
    tp_aead_free(wrong);
    int other = cipher == TP_AEAD_AES_256_GCM ? TP_AEAD_CHACHA20_POLY1305 : TP_AEAD_AES_256_GCM;
    wrong = make(other, 0x00000003, 0x00010003, 1, 0);
    tp_aead_set_key(wrong, 1, KEY1, 0);
    w = seal_new(wrong, plain, sizeof(plain), &rc);
    CHECK(open_copy(b, &w, NULL, NULL) == TP_AEAD_DROP_AUTH, "%s opened as the other cipher", cn);
    free(w.block);
    tp_aead_free(wrong);

    free(d.block);
    tp_aead_free(a);
    tp_aead_free(b);
}

static void test_replay_and_reorder(int cipher)
{
    enum { N = TP_REPLAY_WINDOW + 200 };
    struct tp_aead *a, *b;
    struct dgram *d = malloc(N * sizeof(*d));
    uint8_t plain[64] = { 1 };
    int rc, bad = 0;

    make_pair(cipher, &a, &b, 0);
    for (int i = 0; i < N; i++)
        d[i] = seal_new(a, plain, sizeof(plain), &rc), bad += rc != 0;
    CHECK(bad == 0, "seal all");
    /* the newest first, then the window's worth of older ones in reverse: all accepted */
    CHECK(open_copy(b, &d[N - 1], NULL, NULL) == TP_AEAD_OK, "newest");
    for (int i = N - 2; i >= N - (int)TP_REPLAY_WINDOW; i--)
        bad += open_copy(b, &d[i], NULL, NULL) != TP_AEAD_OK;
    CHECK(bad == 0, "%d reordered within the window refused", bad);
    /* every one of them again: replays */
    for (int i = N - (int)TP_REPLAY_WINDOW; i < N; i++)
        bad += open_copy(b, &d[i], NULL, NULL) != TP_AEAD_DROP_REPLAY;
    CHECK(bad == 0, "%d replays accepted", bad);
    /* behind the window, never seen: too old */
    for (int i = 0; i < N - (int)TP_REPLAY_WINDOW; i++)
        bad += open_copy(b, &d[i], NULL, NULL) != TP_AEAD_DROP_TOO_OLD;
    CHECK(bad == 0, "%d behind the window not too_old", bad);
    for (int i = 0; i < N; i++)
        free(d[i].block);
    free(d);
    tp_aead_free(a);
    tp_aead_free(b);
}

static void test_rekey_grace(int cipher)
{
    const uint64_t S = 1000000000ull;
    struct tp_aead *a, *b;
    uint8_t plain[32] = { 9 }, back[32];
    uint32_t blen;
    int rc;

    make_pair(cipher, &a, &b, 2 * S);
    struct dgram old1 = seal_new(a, plain, sizeof(plain), &rc);
    struct dgram old2 = seal_new(a, plain, sizeof(plain), &rc);
    CHECK(old1.data[1] == 1, "sent under key 1");
    /* both ends install id 2 (same bytes as id 1 here: the id alone picks the key slot) */
    memset(KEY2, 0x77, sizeof(KEY2));
    CHECK(tp_aead_set_key(b, 1, KEY2, 10 * S) == -EEXIST, "the current id again is refused");
    CHECK(tp_aead_set_key(a, 2, KEY1, 10 * S) == 0, "a installs key 2");
    CHECK(tp_aead_set_key(b, 2, KEY1, 10 * S) == 0, "b installs key 2");
    struct dgram new1 = seal_new(a, plain, sizeof(plain), &rc);
    CHECK(rc == 0 && new1.data[1] == 2, "sending switched to key 2");
    CHECK(open_copy(b, &new1, back, &blen) == TP_AEAD_OK, "new key accepted");
    tp_aead_tick(b, 11 * S);
    CHECK(open_copy(b, &old1, back, &blen) == TP_AEAD_OK, "old key accepted in grace");
    CHECK(open_copy(b, &old1, back, &blen) == TP_AEAD_DROP_REPLAY, "old key's window still guards it");
    tp_aead_tick(b, 12 * S);
    CHECK(open_copy(b, &old2, back, &blen) == TP_AEAD_DROP_UNKNOWN_KEY, "old key refused after grace");
    CHECK(open_copy(b, &new1, back, &blen) == TP_AEAD_DROP_REPLAY, "new key still in force");
    free(old1.block);
    free(old2.block);
    free(new1.block);
    tp_aead_free(a);
    tp_aead_free(b);

    /* grace 0: the previous key is gone at once; a third key drops the first */
    make_pair(cipher, &a, &b, 0);
    old1 = seal_new(a, plain, sizeof(plain), &rc);
    CHECK(tp_aead_set_key(b, 2, KEY2, 0) == 0, "rekey without grace");
    CHECK(open_copy(b, &old1, NULL, NULL) == TP_AEAD_DROP_UNKNOWN_KEY, "no grace: old id refused");
    free(old1.block);
    tp_aead_free(a);
    tp_aead_free(b);

    make_pair(cipher, &a, &b, 100 * S);
    old1 = seal_new(a, plain, sizeof(plain), &rc);
    tp_aead_set_key(b, 2, KEY2, 0);
    tp_aead_set_key(b, 3, KEY2, 0);
    CHECK(open_copy(b, &old1, NULL, NULL) == TP_AEAD_DROP_UNKNOWN_KEY, "two keys on: key 1 forgotten");
    /* reusing a forgotten id installs a fresh key with a fresh window */
    CHECK(tp_aead_set_key(b, 1, KEY1, 0) == 0, "id 1 again");
    CHECK(open_copy(b, &old1, NULL, NULL) == TP_AEAD_OK, "id 1's key back");
    free(old1.block);
    tp_aead_free(a);
    tp_aead_free(b);
}

/* Staged rekey: the new key is accepted at once, sending switches when the
 * peer is seen using it or when the switch time comes; nothing either end
 * sends in between is refused. */
static void test_rekey_staged(int cipher)
{
    const uint64_t S = 1000000000ull;
    struct tp_aead *a, *b;
    uint8_t plain[32] = { 5 }, back[32];
    uint32_t blen;
    int rc;

    make_pair(cipher, &a, &b, 2 * S);
    tp_aead_tick(a, 10 * S);
    tp_aead_tick(b, 10 * S);
    CHECK(tp_aead_stage_key(a, 1, KEY2, 10 * S, S) == -EEXIST, "staging the current id is refused");
    CHECK(tp_aead_stage_key(a, 2, KEY2, 10 * S, 3 * S) == 0, "a stages key 2");
    struct dgram a_old = seal_new(a, plain, sizeof(plain), &rc);
    CHECK(rc == 0 && a_old.data[1] == 1 && tp_aead_sending_key(a) == 1, "a still sends with key 1");
    CHECK(open_copy(b, &a_old, back, &blen) == TP_AEAD_OK, "b (not rekeyed) takes a's key 1");
    /* b stages a second later, and its switch time has already passed: it sends key 2 */
    CHECK(tp_aead_stage_key(b, 2, KEY2, 11 * S, 0) == 0, "b stages key 2");
    tp_aead_tick(b, 11 * S);
    CHECK(tp_aead_sending_key(b) == 2, "b switched at its switch time");
    struct dgram b_new = seal_new(b, plain, sizeof(plain), &rc);
    CHECK(rc == 0 && b_new.data[1] == 2, "b sends key 2");
    CHECK(open_copy(a, &b_new, back, &blen) == TP_AEAD_OK, "a takes key 2 while staged");
    CHECK(tp_aead_sending_key(a) == 2, "a switched on seeing key 2 from b");
    struct dgram a_new = seal_new(a, plain, sizeof(plain), &rc);
    CHECK(rc == 0 && a_new.data[1] == 2, "a sends key 2");
    CHECK(open_copy(b, &a_new, back, &blen) == TP_AEAD_OK, "b takes a's key 2");
    /* key 1 stays accepted for the grace after each end's switch, then goes */
    tp_aead_tick(b, 12 * S);
    CHECK(open_copy(b, &a_old, back, &blen) == TP_AEAD_DROP_REPLAY, "key 1 still known (in grace)");
    tp_aead_tick(b, 13 * S + 1);
    CHECK(open_copy(b, &a_old, back, &blen) == TP_AEAD_DROP_UNKNOWN_KEY, "key 1 gone after grace");
    free(a_old.block);
    free(b_new.block);
    free(a_new.block);

    /* a staged key whose switch time passes without the peer: switch anyway */
    CHECK(tp_aead_stage_key(a, 3, KEY1, 20 * S, S) == 0, "a stages key 3");
    tp_aead_tick(a, 20 * S + S / 2);
    CHECK(tp_aead_sending_key(a) == 2, "not yet");
    tp_aead_tick(a, 21 * S);
    CHECK(tp_aead_sending_key(a) == 3, "switched at the switch time");
    tp_aead_free(a);
    tp_aead_free(b);

    /* the first key of a state is set at once */
    a = make(cipher, 1, 2, 0, S);
    CHECK(tp_aead_sending_key(a) == -1, "no key yet");
    CHECK(tp_aead_stage_key(a, 4, KEY1, 0, S) == 0 && tp_aead_sending_key(a) == 4, "first key at once");
    tp_aead_free(a);
}

static void test_seal_errors_and_exhaustion(int cipher)
{
    struct tp_aead *st = make(cipher, 1, 2, UINT64_MAX - 2, 0);
    uint8_t *buf = malloc(TP_AEAD_MAX_PLAIN + 64), *out;
    uint32_t out_len;
    uint8_t *p = buf + 32;

    memset(buf, 0, TP_AEAD_MAX_PLAIN + 64);
    CHECK(tp_aead_seal(st, p, 10, 32, 16, &out, &out_len) == -ENOKEY, "no key yet");
    tp_aead_set_key(st, 1, KEY1, 0);
    CHECK(tp_aead_seal(st, p, 10, 15, 16, &out, &out_len) == -ENOBUFS, "headroom 15");
    CHECK(tp_aead_seal(st, p, 10, 16, 15, &out, &out_len) == -ENOBUFS, "tailroom 15");
    CHECK(tp_aead_seal(st, p, TP_AEAD_MAX_PLAIN + 1, 32, 16, &out, &out_len) == -EMSGSIZE, "too long");
    CHECK(tp_aead_next_counter(st) == UINT64_MAX - 2, "refusals spend no counter");
    CHECK(tp_aead_seal(st, p, 10, 32, 16, &out, &out_len) == 0, "max - 2");
    CHECK(tp_aead_seal(st, p, 10, 32, 16, &out, &out_len) == 0, "max - 1");
    CHECK(out[8] == 0xff && out[15] == 0xfe, "counter max - 1 on the wire");
    CHECK(tp_aead_seal(st, p, 10, 32, 16, &out, &out_len) == -EOVERFLOW, "counters used up");
    tp_aead_set_key(st, 2, KEY2, 0);
    CHECK(tp_aead_seal(st, p, 10, 32, 16, &out, &out_len) == -EOVERFLOW, "a rekey does not restart the counter");
    CHECK(tp_aead_next_counter(st) == UINT64_MAX, "stays at max");
    free(buf);
    tp_aead_free(st);

    struct tp_aead_cfg bad = { .cipher = 99 };
    struct tp_aead *none = (struct tp_aead *)&bad;
    CHECK(tp_aead_new(&bad, &none) == -EINVAL && none == NULL, "unknown cipher");
}

/* ---- sealing from two pieces (the transform's TUNPUMP_GATHER_TO_ENDPOINT) ---- */

/* A copy of src[0 .. len) in its own exact-size heap block (ASan sees any
 * read past it); NULL for an empty piece, as the hook gives head. */
static uint8_t *piece(const uint8_t *src, uint32_t len)
{
    uint8_t *p = len ? malloc(len) : NULL;
    if (len)
        memcpy(p, src, len);
    return p;
}

/* Seal plain[0 .. len) on g from two pieces split at `split` into an
 * exact-size out, and on ref (same key, sender, counter) in place; both
 * datagrams must be the same bytes, the pieces untouched, and b must open
 * g's to plain. */
static void check_gather_split(struct tp_aead *g, struct tp_aead *ref, struct tp_aead *b, const uint8_t *plain,
                               uint32_t len, uint32_t split, const char *name)
{
    uint8_t *head = piece(plain, split), *data = piece(plain + split, len - split);
    uint8_t *out = malloc(len + TP_AEAD_OVERHEAD), *back = malloc(len ? len : 1);
    uint32_t out_len = 0, blen = 0;
    int rc, rrc;
    uint64_t c = tp_aead_next_counter(g);
    struct dgram d = seal_new(ref, plain, len, &rrc);

    rc = tp_aead_seal_gather(g, head, split, data, len - split, out, len + TP_AEAD_OVERHEAD, &out_len);
    CHECK(rc == 0 && rrc == 0 && out_len == len + TP_AEAD_OVERHEAD && d.len == out_len, "%s gather %u/%u: %d %d",
          name, split, len, rc, rrc);
    CHECK(rc == 0 && rrc == 0 && memcmp(out, d.data, out_len) == 0, "%s split %u/%u: same datagram as in place",
          name, split, len);
    CHECK(tp_aead_next_counter(g) == c + 1, "%s split %u/%u: one counter", name, split, len);
    CHECK((!split || memcmp(head, plain, split) == 0) && (split == len || memcmp(data, plain + split, len - split) == 0),
          "%s split %u/%u: pieces untouched", name, split, len);
    struct dgram od = { NULL, out, out_len };
    CHECK(rc == 0 && open_copy(b, &od, back, &blen) == TP_AEAD_OK && blen == len && memcmp(back, plain, len) == 0,
          "%s split %u/%u opens to the original", name, split, len);
    free(head);
    free(data);
    free(out);
    free(back);
    free(d.block);
}

static void test_seal_gather(int cipher)
{
    static const uint32_t sizes[] = { 0, 1, 15, 16, 17, 100, 1400 };
    const char *name = tp_aead_cipher_name(cipher);
    struct tp_aead *a, *b, *ref = make(cipher, 0x00000003, 0x00010003, 1000, 0);
    uint8_t *plain = malloc(TP_AEAD_MAX_PLAIN);

    make_pair(cipher, &a, &b, 0);
    CHECK(tp_aead_set_key(ref, 1, KEY1, 0) == 0, "key ref");
    for (uint32_t i = 0; i < TP_AEAD_MAX_PLAIN; i++)
        plain[i] = (uint8_t)(i * 13 + 5);
    /* every split of each size, both pieces empty included */
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (uint32_t split = 0; split <= sizes[i]; split++)
            check_gather_split(a, ref, b, plain, sizes[i], split, name);
    /* the longest packet, split as a segment's headers and payload would be */
    check_gather_split(a, ref, b, plain, TP_AEAD_MAX_PLAIN, 0, name);
    check_gather_split(a, ref, b, plain, TP_AEAD_MAX_PLAIN, 52, name);
    check_gather_split(a, ref, b, plain, TP_AEAD_MAX_PLAIN, TP_AEAD_MAX_PLAIN, name);
    tp_aead_free(a);
    tp_aead_free(b);
    tp_aead_free(ref);
    free(plain);
}

/* Refusals: each spends no counter and writes nothing into out, in an
 * exact-size block (ASan catches a write past out_size). */
static void test_seal_gather_refusals(int cipher)
{
    const char *name = tp_aead_cipher_name(cipher);
    struct tp_aead *st = make(cipher, 1, 2, UINT64_MAX - 1, 0);
    uint8_t head[40], *data = malloc(TP_AEAD_MAX_PLAIN), *out = malloc(100 + 40 + 31), *big = malloc(200);
    uint32_t out_len = 7;

    memset(head, 'h', sizeof(head));
    memset(data, 'd', TP_AEAD_MAX_PLAIN);
    memset(out, 0x5c, 100 + 40 + 31);
    CHECK(tp_aead_seal_gather(st, head, 40, data, 100, big, 200, &out_len) == -ENOKEY, "%s no key", name);
    tp_aead_set_key(st, 1, KEY1, 0);
    CHECK(tp_aead_seal_gather(st, head, 40, data, 100, out, 100 + 40 + 31, &out_len) == -ENOBUFS,
          "%s out one byte short", name);
    CHECK(tp_aead_seal_gather(st, head, 40, data, 100, out, 0, &out_len) == -ENOBUFS, "%s out size 0", name);
    CHECK(tp_aead_seal_gather(st, head, 40, data, 100, NULL, 0, &out_len) == -ENOBUFS, "%s out NULL", name);
    int untouched = 1;
    for (int i = 0; i < 100 + 40 + 31; i++)
        untouched &= out[i] == 0x5c;
    CHECK(untouched && out_len == 7, "%s a refused seal writes nothing", name);
    CHECK(tp_aead_seal_gather(st, head, 40, data, TP_AEAD_MAX_PLAIN - 39, big, UINT32_MAX, &out_len) == -EMSGSIZE,
          "%s total one past the limit", name);
    /* the total is summed wide: head_len + len wrapping 32 bits is still too long */
    CHECK(tp_aead_seal_gather(st, head, UINT32_MAX, data, 2, big, 200, &out_len) == -EMSGSIZE, "%s no 32-bit wrap",
          name);
    CHECK(tp_aead_next_counter(st) == UINT64_MAX - 1, "%s refusals spend no counter", name);
    /* room to spare: the datagram is written at out's start and nothing after it */
    memset(big, 0x5c, 200);
    CHECK(tp_aead_seal_gather(st, head, 40, data, 60, big, 200, &out_len) == 0 && out_len == 132 &&
          big[0] == TP_AEAD_TYPE_DATA_V1 && big[132] == 0x5c && big[199] == 0x5c, "%s the datagram only", name);
    CHECK(tp_aead_seal_gather(st, head, 40, data, 60, big, 200, &out_len) == -EOVERFLOW, "%s counters used up", name);
    free(data);
    free(out);
    free(big);
    tp_aead_free(st);
}

static void test_batches(int cipher)
{
    enum { N = 8 };
    struct tp_aead *a, *b;
    uint8_t *blocks[N];
    struct tp_aead_pkt pk[N];

    make_pair(cipher, &a, &b, 0);
    for (int i = 0; i < N; i++) {
        uint32_t len = (uint32_t)(i * 100);
        blocks[i] = malloc(len + 48);
        memset(blocks[i] + 32, 'a' + i, len);
        pk[i] = (struct tp_aead_pkt){ blocks[i] + 32, len, 32, 16, -1 };
    }
    pk[3].headroom = 8;                                  /* one without room */
    tp_aead_seal_batch(a, pk, N);
    for (int i = 0; i < N; i++)
        CHECK(pk[i].result == (i == 3 ? -ENOBUFS : 0), "seal %d: %d", i, pk[i].result);
    CHECK(pk[0].data == blocks[0] + 16 && pk[0].headroom == 16 && pk[0].tailroom == 0, "seal moves the room");
    tp_aead_open_batch(b, pk, N);
    for (int i = 0; i < N; i++) {
        int want = i == 3 ? TP_AEAD_DROP_GARBAGE : TP_AEAD_OK;   /* unsealed 'd' bytes */
        CHECK(pk[i].result == want, "open %d: %s", i, tp_aead_reason_name(pk[i].result));
        if (want == TP_AEAD_OK)
            CHECK(pk[i].data == blocks[i] + 32 && pk[i].len == (uint32_t)i * 100 && pk[i].headroom == 32 &&
                  (pk[i].len == 0 || (pk[i].data[0] == 'a' + i && pk[i].data[pk[i].len - 1] == 'a' + i)),
                  "batch plaintext %d", i);
    }
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    tp_aead_free(a);
    tp_aead_free(b);
}

/* Random datagrams, some starting with a valid header: never accepted, never
 * a crash (the fuzz target does this at scale). */
static void test_random_garbage(int cipher)
{
    struct tp_aead *a, *b;
    uint32_t x = 12345;
    int accepted = 0;

    make_pair(cipher, &a, &b, 0);
    for (int i = 0; i < 20000; i++) {
        uint32_t len = (x = x * 1103515245u + 12345u) >> 20;     /* 0..4095 */
        uint8_t *buf = malloc(len ? len : 1);
        for (uint32_t j = 0; j < len; j++)
            buf[j] = (uint8_t)((x = x * 1103515245u + 12345u) >> 24);
        if (len >= 16 && (i & 1)) {
            static const uint8_t hdr[8] = { 0xa1, 1, 0, 0, 0, 0, 0, 3 };
            memcpy(buf, hdr, 8);
        }
        uint8_t *out;
        uint32_t out_len;
        accepted += tp_aead_open(b, buf, len, &out, &out_len) == TP_AEAD_OK;
        free(buf);
    }
    CHECK(accepted == 0, "%d random datagrams accepted", accepted);
    tp_aead_free(a);
    tp_aead_free(b);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Single-core throughput of seal and open over one packet size (a quick
 * figure for the report, not a benchmark: nothing asserts on it). */
static void bench(int cipher, uint32_t size)
{
    struct tp_aead *a, *b;
    uint8_t *buf = malloc(size + 64), *out;
    uint32_t out_len;
    int n = size < 256 ? 2000000 : 300000, bad = 0;

    make_pair(cipher, &a, &b, 0);
    memset(buf, 'p', size + 64);
    double t0 = now_s();
    for (int i = 0; i < n; i++)
        bad += tp_aead_seal(a, buf + 32, size, 32, 16, &out, &out_len) != 0;
    double t1 = now_s();
    /* open needs fresh counters: seal once per opened packet into a copy */
    struct tp_aead *c = make(cipher, 0x00000003, 0x00010003, 1, 0);
    tp_aead_set_key(c, 1, KEY1, 0);
    uint8_t *tmpl = malloc(size + 64);
    tp_aead_seal(c, buf + 32, size, 32, 16, &out, &out_len);
    memcpy(tmpl, out, out_len);
    double topen = 0;
    for (int i = 0; i < n; i++) {
        /* the counter field is bytes 8..16; open checks the window before
         * the tag, so only an in-window, unseen counter reaches the cipher:
         * give each a fresh counter and accept auth failure as the work done */
        memcpy(buf, tmpl, out_len);
        uint64_t c64 = (uint64_t)i + 100;
        for (int k = 0; k < 8; k++)
            buf[8 + k] = (uint8_t)(c64 >> (56 - 8 * k));
        double s = now_s();
        tp_aead_open(b, buf, out_len, &out, &out_len);
        topen += now_s() - s;
        out_len = size + 32;
    }
    printf("bench %-18s %5u B: seal %8.1f MB/s %6.2f Mpps   open %8.1f MB/s %6.2f Mpps\n",
           tp_aead_cipher_name(cipher), size, (double)n * size / (t1 - t0) / 1e6, n / (t1 - t0) / 1e6,
           (double)n * size / topen / 1e6, n / topen / 1e6);
    CHECK(bad == 0, "bench seals");
    free(tmpl);
    free(buf);
    tp_aead_free(a);
    tp_aead_free(b);
    tp_aead_free(c);
}

/* `test_aead allocs N`: N seal + open pairs per cipher and nothing else, for
 * the allocation count of tests/test_aead_c.py (run with count_malloc.so). */
static int seal_open_loop(int n)
{
    int ok = 0;
    for (int c = 0; c < 2; c++) {
        struct tp_aead *a, *b;
        uint8_t *buf = calloc(1, 1500), *out, *plain;
        uint32_t out_len, plain_len;
        make_pair(CIPHERS[c], &a, &b, 0);
        for (int i = 0; i < n; i++) {
            tp_aead_seal(a, buf + 32, 1000, 32, 16, &out, &out_len);
            ok += tp_aead_open(b, out, out_len, &plain, &plain_len) == TP_AEAD_OK;
        }
        tp_aead_free(a);
        tp_aead_free(b);
        free(buf);
    }
    printf("opened %d\n", ok);
    return ok != 2 * n;
}

int main(int argc, char **argv)
{
    CHECK(tp_aead_available() == 1 && tp_aead_unavailable_reason() == NULL, "available");
    if (argc > 2 && strcmp(argv[1], "allocs") == 0)
        return seal_open_loop(atoi(argv[2]));
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        for (int c = 0; c < 2; c++) {
            bench(CIPHERS[c], 1400);
            bench(CIPHERS[c], 64);
        }
        return failures != 0;
    }
    CHECK(strcmp(tp_aead_reason_name(TP_AEAD_DROP_TOO_OLD), "too_old") == 0 &&
          strcmp(tp_aead_reason_name(-1), "?") == 0 && strcmp(tp_aead_reason_name(TP_AEAD_NREASONS), "?") == 0,
          "reason names");
    test_replay_window();
    test_rfc8439_vector();
    test_gcm_vector();
    test_wire_vectors();
    for (int c = 0; c < 2; c++) {
        test_round_trip(CIPHERS[c]);
        test_drop_reasons(CIPHERS[c]);
        test_replay_and_reorder(CIPHERS[c]);
        test_rekey_grace(CIPHERS[c]);
        test_rekey_staged(CIPHERS[c]);
        test_seal_errors_and_exhaustion(CIPHERS[c]);
        test_batches(CIPHERS[c]);
        test_seal_gather(CIPHERS[c]);
        test_seal_gather_refusals(CIPHERS[c]);
        test_random_garbage(CIPHERS[c]);
    }
    printf("ok %d checks\n", checks);
    return failures != 0;
}

#else   /* built without libcrypto */

int main(void)
{
    struct tp_aead_cfg cfg = { .cipher = TP_AEAD_AES_256_GCM };
    struct tp_aead *st = (struct tp_aead *)&cfg;
    uint8_t key[32] = { 0 }, nonce[12] = { 0 }, buf[1], tag[16];

    CHECK(tp_aead_available() == 0, "unavailable");
    CHECK(tp_aead_unavailable_reason() && strstr(tp_aead_unavailable_reason(), "libssl-dev") &&
          strstr(tp_aead_unavailable_reason(), "OpenSSL 3"), "the reason names the package");
    CHECK(tp_aead_new(&cfg, &st) == -ENOTSUP && st == NULL, "no state");
    CHECK(tp_aead_oneshot(TP_AEAD_AES_256_GCM, 1, key, nonce, NULL, 0, buf, 0, tag) == -ENOTSUP, "no oneshot");
    uint8_t *out = NULL;
    uint32_t out_len = 0;
    CHECK(tp_aead_seal_gather(st, buf, 0, buf, 0, tag, sizeof(tag), &out_len) == -ENOTSUP, "no gather seal");
    CHECK(tp_aead_seal(st, key + 16, 0, 16, 16, &out, &out_len) == -ENOTSUP && out == NULL, "no seal");
    test_replay_window();
    printf("ok %d checks\n", checks);
    return failures != 0;
}

#endif
