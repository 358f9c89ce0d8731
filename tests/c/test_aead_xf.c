/* Unit tests of the AEAD transform's adapter (csrc/transform/tp_aead_xf.c)
 * through its tunpump.h ops, as the pump calls them, built with ASan + UBSan
 * by tests/test_aead_c.py: each packet in its own exact-size heap block (on
 * the way in with the hook's room around it; on the way out its read-only
 * pieces and its out each in their own), so any access outside is caught. Every
 * failed check prints a line starting "FAIL"; the last line is "ok N checks". */
#include "tp_aead_xf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define ROOM 64

struct slot {
    uint8_t *block;
    struct tunpump_pkt p;
};

/* A packet as the hook hands it over: ROOM bytes each side, outcome PASS. */
static struct slot slot_new(const uint8_t *data, uint32_t len, uint32_t room)
{
    struct slot s = { malloc(2 * room + len + 1), { 0 } };
    memcpy(s.block + room, data, len);
    s.p.data = s.block + room;
    s.p.len = len;
    s.p.headroom = room;
    s.p.tailroom = room;
    s.p.queue = 3;
    return s;
}

static void *make(int side, uint8_t key_byte, uint64_t grace_ns)
{
    struct tp_aead_xf_cfg cfg = { .cipher = TP_AEAD_AES_256_GCM, .side = (uint32_t)side, .grace_ns = grace_ns,
                                  .key_id = 1 };
    void *st = NULL;
    memset(cfg.key, key_byte, sizeof(cfg.key));
    int rc = tp_aead_xf_ops.create(&cfg, sizeof(cfg), 3, 4, &st);
    CHECK(rc == 0 && st, "create side %d: %d", side, rc);
    return st;
}

/* A packet as the hook hands it over device -> endpoint
 * (TUNPUMP_GATHER_TO_ENDPOINT): read-only pieces head[0 .. split) (NULL
 * when split is 0) and data, and the scratch out, each in its own
 * exact-size heap block, so a read or write past any of them is caught. */
struct gslot {
    uint8_t *head, *data, *out;
    struct tunpump_pkt p;
};

static struct gslot gslot_new(const uint8_t *plain, uint32_t len, uint32_t split, uint32_t out_size)
{
    struct gslot s = { split ? malloc(split) : NULL, malloc(len > split ? len - split : 1), malloc(out_size), { 0 } };
    if (split)
        memcpy(s.head, plain, split);
    memcpy(s.data, plain + split, len - split);
    s.p.head = s.head;
    s.p.head_len = split;
    s.p.data = s.data;
    s.p.len = len - split;
    s.p.out = s.out;
    s.p.out_size = out_size;
    s.p.queue = 3;
    return s;
}

/* The out the hook gives: room for a copy of the packet (tunpump.h). */
#define OUT_SIZE(len) ((len) + TUNPUMP_MIN_HEADROOM + TUNPUMP_MIN_TAILROOM)

static void gslot_free(struct gslot *s)
{
    free(s->head);
    free(s->data);
    free(s->out);
}

/* Sealed: passed, the datagram at out's start in one piece, the pieces as they were. */
static int sealed_ok(const struct gslot *s, const uint8_t *plain, uint32_t len, uint32_t split)
{
    return s->p.outcome == TUNPUMP_PASS && s->p.len == len + TP_AEAD_OVERHEAD && s->p.data == s->out &&
           s->p.head == NULL && s->p.head_len == 0 && (!split || memcmp(s->head, plain, split) == 0) &&
           memcmp(s->data, plain + split, len - split) == 0;
}

/* Seal plain on `from` (in two pieces when long enough, as a segment's
 * headers and payload), then hand the datagram (copied into a fresh slot)
 * to `to`; returns the receive slot (caller frees block). */
static struct slot carry(void *from, void *to, const uint8_t *plain, uint32_t len)
{
    uint32_t split = len > 20 ? 20 : 0;
    struct gslot s = gslot_new(plain, len, split, OUT_SIZE(len));
    tp_aead_xf_ops.batch(from, TUNPUMP_DIR_TO_ENDPOINT, &s.p, 1);
    CHECK(sealed_ok(&s, plain, len, split), "sealed into out, outcome %d len %u", s.p.outcome, s.p.len);
    struct slot r = slot_new(s.p.data, s.p.len, ROOM);
    gslot_free(&s);
    if (to)
        tp_aead_xf_ops.batch(to, TUNPUMP_DIR_TO_DEVICE, &r.p, 1);
    return r;
}

static void test_ops_table(void)
{
    const struct tunpump_transform_ops *o = &tp_aead_xf_ops;
    unsigned n = 0;

    CHECK(o->abi == TUNPUMP_TRANSFORM_ABI &&
          o->flags == (TUNPUMP_NEEDS_SEGMENTS | TUNPUMP_AUTHENTICATED | TUNPUMP_IN_PLACE_TO_DEVICE |
                       TUNPUMP_GATHER_TO_ENDPOINT) &&
          strcmp(o->name, "aead") == 0, "ops header");
    while (o->drop_reasons[n])
        n++;
    CHECK(n == TP_AEAD_XF__END - 1 && n <= TUNPUMP_MAX_DROP_REASONS, "%u reasons", n);
    for (int r = 1; r < TP_AEAD_NREASONS; r++)
        CHECK(strcmp(o->drop_reasons[r - 1], tp_aead_reason_name(r)) == 0, "reason %d is the core's %s", r,
              tp_aead_reason_name(r));
    struct tp_aead_xf_cfg cfg = { .cipher = TP_AEAD_AES_256_GCM, .side = 2 };
    void *st = NULL;
    CHECK(o->create(&cfg, sizeof(cfg), 0, 1, &st) == -EINVAL && !st, "side 2 refused");
    cfg.side = 0;
    CHECK(o->create(&cfg, sizeof(cfg) - 1, 0, 1, &st) == -EINVAL && !st, "short config refused");
    cfg.cipher = 99;
    CHECK(o->create(&cfg, sizeof(cfg), 0, 1, &st) == -EINVAL && !st, "unknown cipher refused");
}

static void test_round_trip_and_reasons(void)
{
    uint8_t plain[200];
    void *a = make(0, 0x11, 0), *b = make(1, 0x11, 0), *stranger = make(0, 0x22, 0);

    for (unsigned i = 0; i < sizeof(plain); i++)
        plain[i] = (uint8_t)(i * 7);
    /* a batch of several, in one piece and in two (split 0, 10, 20, 30):
     * each sealed from its pieces and opened on its own */
    struct gslot s[4];
    struct tunpump_pkt pk[4];
    for (int i = 0; i < 4; i++) {
        uint32_t len = 40u + 50u * (unsigned)i;
        s[i] = gslot_new(plain, len, 10u * (unsigned)i, OUT_SIZE(len));
        pk[i] = s[i].p;
    }
    tp_aead_xf_ops.batch(a, TUNPUMP_DIR_TO_ENDPOINT, pk, 4);
    for (int i = 0; i < 4; i++) {
        s[i].p = pk[i];
        CHECK(sealed_ok(&s[i], plain, 40u + 50u * (unsigned)i, 10u * (unsigned)i), "packet %d sealed", i);
        struct slot r = slot_new(pk[i].data, pk[i].len, ROOM);
        tp_aead_xf_ops.batch(b, TUNPUMP_DIR_TO_DEVICE, &r.p, 1);
        CHECK(r.p.outcome == TUNPUMP_PASS && r.p.len == 40u + 50u * (unsigned)i &&
              memcmp(r.p.data, plain, r.p.len) == 0, "packet %d back", i);
        /* the same datagram again: a replay */
        struct slot again = slot_new(pk[i].data, pk[i].len, ROOM);
        tp_aead_xf_ops.batch(b, TUNPUMP_DIR_TO_DEVICE, &again.p, 1);
        CHECK(again.p.outcome == TUNPUMP_DROP && again.p.drop_reason == TP_AEAD_DROP_REPLAY, "replay %d", i);
        free(r.block);
        free(again.block);
        gslot_free(&s[i]);
    }
    /* what b gets from a's own side: same_side if it is sealed with the key, else bad_sender */
    struct slot own = carry(a, a, plain, 60);
    CHECK(own.p.outcome == TUNPUMP_DROP && own.p.drop_reason == TP_AEAD_XF_SAME_SIDE, "reflected: same_side (%u)",
          own.p.drop_reason);
    struct slot forged = carry(stranger, a, plain, 60);
    CHECK(forged.p.outcome == TUNPUMP_DROP && forged.p.drop_reason == TP_AEAD_DROP_BAD_SENDER,
          "another key on our side: bad_sender (%u)", forged.p.drop_reason);
    struct slot wrong = carry(stranger, b, plain, 60);
    CHECK(wrong.p.outcome == TUNPUMP_DROP && wrong.p.drop_reason == TP_AEAD_DROP_AUTH, "wrong key: auth_failed");
    free(own.block);
    free(forged.block);
    free(wrong.block);
    /* garbage and truncated */
    struct slot g = slot_new(plain, 100, ROOM), t = slot_new((const uint8_t *)"\xa1", 1, ROOM);
    tp_aead_xf_ops.batch(b, TUNPUMP_DIR_TO_DEVICE, &g.p, 1);
    tp_aead_xf_ops.batch(b, TUNPUMP_DIR_TO_DEVICE, &t.p, 1);
    CHECK(g.p.drop_reason == TP_AEAD_DROP_GARBAGE && t.p.drop_reason == TP_AEAD_DROP_TRUNCATED, "garbage, truncated");
    free(g.block);
    free(t.block);
    /* an out too small for the datagram (one byte short): dropped, named,
     * nothing written past it, the packet left as given */
    struct gslot tight = gslot_new(plain, 100, 20, 100 + TP_AEAD_OVERHEAD - 1);
    tp_aead_xf_ops.batch(a, TUNPUMP_DIR_TO_ENDPOINT, &tight.p, 1);
    CHECK(tight.p.outcome == TUNPUMP_DROP && tight.p.drop_reason == TP_AEAD_XF_TOO_BIG && tight.p.data == tight.data &&
          tight.p.head_len == 20, "no room: too_big");
    gslot_free(&tight);
    tp_aead_xf_ops.destroy(a);
    tp_aead_xf_ops.destroy(b);
    tp_aead_xf_ops.destroy(stranger);
}

static void test_rekey_by_control(void)
{
    uint8_t msg[TP_AEAD_XF_REKEY_LEN] = { TP_AEAD_XF_REKEY, 2 }, plain[64] = { 1 };
    void *a = make(0, 0x11, 0), *b = make(1, 0x11, 0);   /* grace 0: a staged key switches at the next batch */

    memset(msg + 2, 0x33, TP_AEAD_KEY_LEN);
    tp_aead_xf_ops.control(a, msg, sizeof(msg) - 1);      /* malformed: ignored */
    struct slot r = carry(a, b, plain, sizeof(plain));
    CHECK(r.p.outcome == TUNPUMP_PASS && r.block[ROOM + 1] == 1, "still key 1");
    free(r.block);
    tp_aead_xf_ops.control(a, msg, sizeof(msg));
    tp_aead_xf_ops.control(b, msg, sizeof(msg));
    r = carry(a, b, plain, sizeof(plain));
    CHECK(r.p.outcome == TUNPUMP_PASS && r.block[ROOM + 1] == 2, "key 2 after the rekey (%u)", r.block[ROOM + 1]);
    free(r.block);
    r = carry(b, a, plain, sizeof(plain));
    CHECK(r.p.outcome == TUNPUMP_PASS && r.block[ROOM + 1] == 2, "both ways");
    free(r.block);
    tp_aead_xf_ops.destroy(a);
    tp_aead_xf_ops.destroy(b);
}

static void test_capsule_blob(void)
{
    struct tp_aead_xf_cfg cfg = { .cipher = TP_AEAD_CHACHA20_POLY1305, .side = 1, .key_id = 4 };
    memset(cfg.key, 0x5a, sizeof(cfg.key));
    struct tunpump_transform *t = tp_aead_xf_make(&cfg);
    CHECK(t && t->ops == &tp_aead_xf_ops && t->config_len == sizeof(cfg) && memcmp(t->config, &cfg, sizeof(cfg)) == 0,
          "the capsule's transform");
    void *st = NULL;
    CHECK(t->ops->create(t->config, t->config_len, 0, 1, &st) == 0, "made from the blob");
    t->ops->destroy(st);
    tp_aead_xf_release(t);
    tp_aead_xf_release(NULL);
}

int main(void)
{
    test_ops_table();
    test_round_trip_and_reasons();
    test_rekey_by_control();
    test_capsule_blob();
    printf("ok %d checks\n", checks);
    return failures != 0;
}
