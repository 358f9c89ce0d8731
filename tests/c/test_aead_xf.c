/* Unit tests of the AEAD transform's adapter (csrc/transform/tp_aead_xf.c)
 * through its tunpump.h ops, as the pump calls them, built with ASan + UBSan
 * by tests/test_aead_c.py: each packet in its own exact-size heap block with
 * the hook's room around it, so any write outside the room is caught. Every
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

/* Seal plain on `from`, then hand the datagram (copied into a fresh slot) to
 * `to`; returns the receive slot (caller frees block). */
static struct slot carry(void *from, void *to, const uint8_t *plain, uint32_t len)
{
    struct slot s = slot_new(plain, len, ROOM);
    tp_aead_xf_ops.batch(from, TUNPUMP_DIR_TO_ENDPOINT, &s.p, 1);
    CHECK(s.p.outcome == TUNPUMP_PASS && s.p.len == len + TP_AEAD_OVERHEAD && s.p.data == s.block + ROOM - 16,
          "sealed in place, outcome %d len %u", s.p.outcome, s.p.len);
    struct slot r = slot_new(s.p.data, s.p.len, ROOM);
    free(s.block);
    if (to)
        tp_aead_xf_ops.batch(to, TUNPUMP_DIR_TO_DEVICE, &r.p, 1);
    return r;
}

static void test_ops_table(void)
{
    const struct tunpump_transform_ops *o = &tp_aead_xf_ops;
    unsigned n = 0;

    CHECK(o->abi == TUNPUMP_TRANSFORM_ABI &&
          o->flags == (TUNPUMP_NEEDS_SEGMENTS | TUNPUMP_AUTHENTICATED | TUNPUMP_IN_PLACE_TO_DEVICE) &&
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
    /* a batch of several: each sealed and opened on its own */
    struct slot s[4];
    for (int i = 0; i < 4; i++)
        s[i] = slot_new(plain, 40u + 50u * (unsigned)i, ROOM);
    struct tunpump_pkt pk[4];
    for (int i = 0; i < 4; i++)
        pk[i] = s[i].p;
    tp_aead_xf_ops.batch(a, TUNPUMP_DIR_TO_ENDPOINT, pk, 4);
    for (int i = 0; i < 4; i++) {
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
        free(s[i].block);
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
    /* a packet without room for the header cannot be sealed: dropped, named */
    struct slot tight = slot_new(plain, 100, 8);
    tp_aead_xf_ops.batch(a, TUNPUMP_DIR_TO_ENDPOINT, &tight.p, 1);
    CHECK(tight.p.outcome == TUNPUMP_DROP && tight.p.drop_reason == TP_AEAD_XF_TOO_BIG, "no room: too_big");
    free(tight.block);
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
