/* The AEAD's receive path (tp_aead_open) on arbitrary datagrams, mixed with
 * datagrams it sealed itself, forged copies of them, and rekeys.
 *
 * Input: byte 0 picks the cipher (bit 0); then records [op][len u16][data]:
 *   op % 4 == 0  open data as a datagram
 *   op % 4 == 1  seal data, open it: accepted with the plaintext intact (or
 *                refused as too_old / replay after the input's own datagrams)
 *   op % 4 == 2  seal data, change one bit (where: data[0..2], which: op), open:
 *                never accepted
 *   op % 4 == 3  both ends install the next key (id = op), time moves by data[0] s
 * Invariants: an accepted datagram's plaintext is inside it and 32 bytes
 * shorter; no (key id, counter) is accepted twice under one key; a reason is
 * always one of the named ones. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_aead.h"

#include "fuzz_require.h"

#define MAX_SEEN 4096
#define NS 1000000000ull

struct seen {
    uint8_t id;
    uint64_t counter;
};

static struct seen seen[MAX_SEEN];
static int nseen;

static void note_accepted(const uint8_t *d)
{
    uint64_t c = 0;
    for (int i = 8; i < 16; i++)
        c = c << 8 | d[i];
    for (int i = 0; i < nseen; i++)
        require(!(seen[i].id == d[1] && seen[i].counter == c));   /* accepted twice: a replay got through */
    if (nseen < MAX_SEEN)
        seen[nseen++] = (struct seen){ d[1], c };
}

static void forget_id(uint8_t id)
{
    int k = 0;
    for (int i = 0; i < nseen; i++)
        if (seen[i].id != id)
            seen[k++] = seen[i];
    nseen = k;
}

/* Open a private copy of d[0..len) exactly sized (so ASan sees overreads). */
static int open_checked(struct tp_aead *rx, const uint8_t *d, uint32_t len, const uint8_t *want, uint32_t want_len)
{
    uint8_t *buf = malloc(len ? len : 1), *out = NULL;
    uint32_t out_len = 0;
    memcpy(buf, d, len);
    int r = tp_aead_open(rx, buf, len, &out, &out_len);
    require(r >= 0 && r < TP_AEAD_NREASONS);
    if (r == TP_AEAD_OK) {
        require(len >= TP_AEAD_OVERHEAD && out == buf + TP_AEAD_HEADER_LEN && out_len == len - TP_AEAD_OVERHEAD);
        require(!want || (out_len == want_len && memcmp(out, want, want_len) == 0));
        note_accepted(d);
    }
    free(buf);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t key0[32] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31 };
    if (size < 1)
        return 0;
    int cipher = data[0] & 1 ? TP_AEAD_CHACHA20_POLY1305 : TP_AEAD_AES_256_GCM;
    struct tp_aead_cfg tcfg = { cipher, 0x00000003, 0x00010003, 1000, 2 * NS };
    struct tp_aead_cfg rcfg = { cipher, 0x00010003, 0x00000003, 1, 2 * NS };
    struct tp_aead *tx, *rx;
    uint64_t now = 0;
    uint8_t key[32];

    require(tp_aead_new(&tcfg, &tx) == 0 && tp_aead_new(&rcfg, &rx) == 0);
    require(tp_aead_set_key(tx, 1, key0, now) == 0 && tp_aead_set_key(rx, 1, key0, now) == 0);
    nseen = 0;
    for (size_t at = 1; at + 3 <= size;) {
        uint8_t op = data[at];
        uint32_t len = (uint32_t)data[at + 1] << 8 | data[at + 2];
        at += 3;
        if (len > size - at)
            len = (uint32_t)(size - at);
        const uint8_t *p = data + at;
        at += len;
        if (op % 4 == 0) {
            open_checked(rx, p, len, NULL, 0);
        } else if (op % 4 == 3) {
            now += (uint64_t)(len ? p[0] : 0) * NS;
            for (int i = 0; i < 32; i++)
                key[i] = (uint8_t)(op + i);
            int a = tp_aead_set_key(tx, op, key, now), b = tp_aead_set_key(rx, op, key, now);
            require(a == b);
            if (b == 0)
                forget_id(op);
            tp_aead_tick(rx, now);
        } else {
            uint8_t *buf = malloc(len + TP_AEAD_OVERHEAD), *out;
            uint32_t out_len;
            memcpy(buf + TP_AEAD_HEADER_LEN, p, len);
            if (tp_aead_seal(tx, buf + TP_AEAD_HEADER_LEN, len, TP_AEAD_HEADER_LEN, TP_AEAD_TAG_LEN, &out, &out_len) == 0) {
                if (op % 4 == 1) {
                    int r = open_checked(rx, out, out_len, p, len);
                    /* too_old / replay: the input's own datagrams moved the window past it */
                    require(r == TP_AEAD_OK || r == TP_AEAD_DROP_TOO_OLD || r == TP_AEAD_DROP_REPLAY);
                } else {
                    uint32_t pos = len >= 2 ? (uint32_t)(p[0] << 8 | p[1]) : op;
                    out[pos % out_len] ^= (uint8_t)(1u << ((op >> 2) & 7));
                    require(open_checked(rx, out, out_len, NULL, 0) != TP_AEAD_OK);
                }
            }
            free(buf);
        }
    }
    tp_aead_free(tx);
    tp_aead_free(rx);
    return 0;
}
