/* The null transform (tp_null.h), written against the public ABI only, as
 * any third-party transform would be. */
#include "tp_null.h"

static void null_batch(void *state, enum tunpump_dir dir, struct tunpump_pkt *pkts, unsigned n)
{
    (void)state;
    (void)dir;
    (void)pkts;   /* outcomes are preset to TUNPUMP_PASS */
    (void)n;
}

static const struct tunpump_transform_ops null_ops = {
    .abi = TUNPUMP_TRANSFORM_ABI,
    .flags = TUNPUMP_NEEDS_SEGMENTS | TUNPUMP_IN_PLACE_TO_DEVICE | TUNPUMP_GATHER_TO_ENDPOINT,   /* what an AEAD wants */
    .name = "null",
    .batch = null_batch,
};

const struct tunpump_transform tp_null_transform = { .ops = &null_ops };
