/* The AEAD transform's adapter (tp_aead_xf.h): tunpump.h's ops over tp_aead. */
#include "tp_aead_xf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(TP_AEAD_XF__END - 1 <= TUNPUMP_MAX_DROP_REASONS, "too many drop reasons for the ABI");
_Static_assert(TUNPUMP_MIN_HEADROOM >= TP_AEAD_HEADER_LEN && TUNPUMP_MIN_TAILROOM >= TP_AEAD_TAG_LEN,
               "the hook's room holds the AEAD's header and tag");

/* drop_reason k names drop_reasons[k - 1]: tp_aead's receive reasons keep
 * their numbers (tp_aead_reason_name; tests/c/test_aead.c checks they agree). */
static const char *const aead_drop_reasons[TP_AEAD_XF__END] = {
    [TP_AEAD_DROP_TRUNCATED - 1] = "truncated",
    [TP_AEAD_DROP_GARBAGE - 1] = "garbage",
    [TP_AEAD_DROP_BAD_SENDER - 1] = "bad_sender",
    [TP_AEAD_DROP_UNKNOWN_KEY - 1] = "unknown_key",
    [TP_AEAD_DROP_AUTH - 1] = "auth_failed",
    [TP_AEAD_DROP_REPLAY - 1] = "replay",
    [TP_AEAD_DROP_TOO_OLD - 1] = "too_old",
    [TP_AEAD_XF_SAME_SIDE - 1] = "same_side",
    [TP_AEAD_XF_NO_KEY - 1] = "no_key",
    [TP_AEAD_XF_TOO_BIG - 1] = "too_big",
    [TP_AEAD_XF_EXHAUSTED - 1] = "counters_exhausted",
    [TP_AEAD_XF_SEAL_FAILED - 1] = "seal_failed",
    [TP_AEAD_XF__END - 1] = NULL,
};

struct aead_xf {
    struct tp_aead *aead;
    uint32_t side;
    uint64_t grace_ns;
};

/* Time for grace and switch deadlines: a coarse monotonic clock (vDSO, a
 * few ns), read once per batch. */
static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int aead_create(const void *config, size_t config_len, int queue, int nqueues, void **state)
{
    const struct tp_aead_xf_cfg *c = config;
    struct tp_aead_cfg ac;
    struct aead_xf *x;
    int rc;

    (void)nqueues;
    if (config_len != sizeof(*c) || c->side > 1 || queue < 0 || queue > 0xffff)
        return -EINVAL;
    x = calloc(1, sizeof(*x));
    if (!x)
        return -ENOMEM;
    x->side = c->side;
    x->grace_ns = c->grace_ns;
    ac = (struct tp_aead_cfg){
        .cipher = c->cipher,
        .tx_sender = c->side << 16 | (uint32_t)queue,
        .rx_sender = (c->side ^ 1u) << 16 | (uint32_t)queue,
        .counter_start = tp_aead_counter_start_now(),
        .grace_ns = c->grace_ns,
    };
    rc = tp_aead_new(&ac, &x->aead);
    if (rc == 0)
        rc = tp_aead_set_key(x->aead, c->key_id, c->key, now_ns());
    if (rc < 0) {
        tp_aead_free(x->aead);
        free(x);
        return rc;
    }
    *state = x;
    return 0;
}

static void aead_destroy(void *state)
{
    struct aead_xf *x = state;

    if (x)
        tp_aead_free(x->aead);
    free(x);
}

static uint8_t seal_reason(int rc)
{
    switch (rc) {
    case -ENOKEY: return TP_AEAD_XF_NO_KEY;
    case -EMSGSIZE: case -ENOBUFS: return TP_AEAD_XF_TOO_BIG;
    case -EOVERFLOW: return TP_AEAD_XF_EXHAUSTED;
    default: return TP_AEAD_XF_SEAL_FAILED;
    }
}

/* TUNPUMP_GATHER_TO_ENDPOINT: each packet is sealed from its one or two
 * read-only pieces into its out area (tp_aead_seal_gather), with no copy
 * into room before; the datagram then lies at the start of out. */
static void seal_all(struct aead_xf *x, struct tunpump_pkt *pkts, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct tunpump_pkt *p = &pkts[i];
        uint32_t out_len;
        int rc = tp_aead_seal_gather(x->aead, p->head, p->head_len, p->data, p->len, p->out, p->out_size, &out_len);

        if (rc == 0) {
            p->data = p->out;
            p->len = out_len;
            p->head = NULL;
            p->head_len = 0;
        } else {
            p->outcome = TUNPUMP_DROP;
            p->drop_reason = seal_reason(rc);
        }
    }
}

/* Bytes 4..6 of a datagram are the sender's side (tp_aead.h). One sealed
 * with our key by a sender on our own side means the other end chose the
 * same side (both use the same nonces: a misconfiguration to name, apart
 * from a stranger's bad_sender), or one of our own datagrams came back.
 * Only datagrams that authenticate count, so a stranger cannot fake it. */
static int same_side(const struct aead_xf *x, const struct tunpump_pkt *p)
{
    return p->len >= TP_AEAD_OVERHEAD && p->data[4] == 0 && p->data[5] == x->side &&
           tp_aead_authentic(x->aead, p->data, p->len);
}

static void open_all(struct aead_xf *x, struct tunpump_pkt *pkts, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct tunpump_pkt *p = &pkts[i];
        uint8_t *out;
        uint32_t out_len;
        int r = tp_aead_open(x->aead, p->data, p->len, &out, &out_len);

        if (r == TP_AEAD_OK) {
            p->data = out;
            p->len = out_len;
        } else {
            p->outcome = TUNPUMP_DROP;
            p->drop_reason = (uint8_t)(r == TP_AEAD_DROP_BAD_SENDER && same_side(x, p) ? TP_AEAD_XF_SAME_SIDE : r);
        }
    }
}

static void aead_batch(void *state, enum tunpump_dir dir, struct tunpump_pkt *pkts, unsigned n)
{
    struct aead_xf *x = state;

    tp_aead_tick(x->aead, now_ns());
    if (dir == TUNPUMP_DIR_TO_ENDPOINT)
        seal_all(x, pkts, n);
    else
        open_all(x, pkts, n);
}

/* A rekey from Python (AEAD.rekey): staged, so neither end drops the other's
 * packets while the two ends take the new key a little apart. A message of
 * another shape, or the current key id again, changes nothing (the binding
 * checks both before sending). */
static void aead_control(void *state, const uint8_t *msg, size_t len)
{
    struct aead_xf *x = state;

    if (len != TP_AEAD_XF_REKEY_LEN || msg[0] != TP_AEAD_XF_REKEY)
        return;
    (void)tp_aead_stage_key(x->aead, msg[1], msg + 2, now_ns(), x->grace_ns);
}

const struct tunpump_transform_ops tp_aead_xf_ops = {
    .abi = TUNPUMP_TRANSFORM_ABI,
    /* AUTHENTICATED: every packet passed toward the device had its tag
     * verified over all its bytes. IN_PLACE_TO_DEVICE: opens in place.
     * GATHER_TO_ENDPOINT: seals from the packet's pieces into out (no copy
     * into room before the seal). */
    .flags = TUNPUMP_NEEDS_SEGMENTS | TUNPUMP_AUTHENTICATED | TUNPUMP_IN_PLACE_TO_DEVICE | TUNPUMP_GATHER_TO_ENDPOINT,
    .name = "aead",
    .create = aead_create,
    .destroy = aead_destroy,
    .batch = aead_batch,
    .control = aead_control,
    .drop_reasons = aead_drop_reasons,
};

struct tunpump_transform *tp_aead_xf_make(const struct tp_aead_xf_cfg *cfg)
{
    struct tunpump_transform *t = malloc(sizeof(*t) + sizeof(*cfg));

    if (!t)
        return NULL;
    memcpy(t + 1, cfg, sizeof(*cfg));
    t->ops = &tp_aead_xf_ops;
    t->config = t + 1;
    t->config_len = sizeof(*cfg);
    return t;
}

void tp_aead_xf_release(struct tunpump_transform *t)
{
    if (!t)
        return;
    /* explicit_bzero: a plain memset before free may be optimised away */
    explicit_bzero(t + 1, sizeof(struct tp_aead_xf_cfg));
    free(t);
}
