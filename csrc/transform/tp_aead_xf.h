/* The built-in AEAD (tp_aead.h) as a transform (tunpump.h): one tp_aead
 * state per worker, sealing on the way out (from the packet's one or two
 * pieces into out: TUNPUMP_GATHER_TO_ENDPOINT) and opening in place
 * on the way in (TUNPUMP_IN_PLACE_TO_DEVICE), with TUNPUMP_NEEDS_SEGMENTS
 * (each wire datagram is sealed on its own).
 *
 * Nonces: worker q of the end on side s sends as sender (s << 16 | q) and
 * accepts only (!s << 16 | q), its paired worker on the other end (worker
 * q talks to port P+q). The binding decides the side (tunpump/transforms.py)
 * and refuses to guess when it cannot tell the two ends apart. */
#ifndef TP_AEAD_XF_H
#define TP_AEAD_XF_H

#include <stdint.h>

#include "tp_aead.h"
#include "tunpump.h"

/* The capsule's config blob. */
struct tp_aead_xf_cfg {
    int32_t cipher;                 /* enum tp_aead_cipher */
    uint32_t side;                  /* 0 or 1 */
    uint64_t grace_ns;              /* the old key's grace; also a staged key's latest switch */
    uint8_t key_id;
    uint8_t key[TP_AEAD_KEY_LEN];
};

/* Control message: rekey. [TP_AEAD_XF_REKEY][key id][32-byte key]. The key
 * is staged (tp_aead_stage_key) with switch time grace_ns. */
#define TP_AEAD_XF_REKEY 1
#define TP_AEAD_XF_REKEY_LEN (2 + TP_AEAD_KEY_LEN)

/* drop_reason values beyond tp_aead's receive reasons (enum tp_aead_reason
 * 1..TP_AEAD_NREASONS-1 are used as they are). */
enum tp_aead_xf_reason {
    TP_AEAD_XF_SAME_SIDE = TP_AEAD_NREASONS,   /* receive: the sender is on our own side */
    TP_AEAD_XF_NO_KEY,                         /* seal: no key */
    TP_AEAD_XF_TOO_BIG,                        /* seal: longer than the AEAD seals */
    TP_AEAD_XF_EXHAUSTED,                      /* seal: counters used up */
    TP_AEAD_XF_SEAL_FAILED,                    /* seal: libcrypto failed */
    TP_AEAD_XF__END
};

extern const struct tunpump_transform_ops tp_aead_xf_ops;

/* A transform for a capsule: the struct and the config in one block (the
 * key inside), or NULL (ENOMEM). Free it with tp_aead_xf_release, which
 * wipes the key. */
struct tunpump_transform *tp_aead_xf_make(const struct tp_aead_xf_cfg *cfg);
void tp_aead_xf_release(struct tunpump_transform *t);

#endif
