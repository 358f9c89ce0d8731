/* The anti-replay window, RFC 6479 style: a ring of 64-bit blocks of bits,
 * one bit per counter, slid a block at a time so sliding clears whole words
 * instead of shifting the bitmap. Pure code over one struct, no locks: one
 * window belongs to one worker (see tp_aead.h for why that is enough).
 *
 * A counter is accepted once, and only if it is newer than the highest seen
 * minus TP_REPLAY_WINDOW. Check before the (costly) authentication, mark
 * after it succeeded, so forged packets never move the window. */
#ifndef TP_REPLAY_H
#define TP_REPLAY_H

#include <stdint.h>

#define TP_REPLAY_BLOCKS 64u                                   /* a power of two */
#define TP_REPLAY_BLOCK_BITS 64u
/* Counters this far behind the newest are still judged by their bit: one
 * block is kept spare so the block being slid into is never the oldest. */
#define TP_REPLAY_WINDOW ((TP_REPLAY_BLOCKS - 1) * TP_REPLAY_BLOCK_BITS)   /* 4032 */

enum tp_replay_verdict {
    TP_REPLAY_OK = 0,       /* new: may be accepted */
    TP_REPLAY_SEEN = 1,     /* this counter was accepted before */
    TP_REPLAY_TOO_OLD = 2,  /* behind the window: cannot tell, refused */
};

struct tp_replay {
    uint64_t top;           /* highest counter accepted; valid when any != 0 */
    int any;                /* a counter was accepted since the last reset */
    uint64_t bits[TP_REPLAY_BLOCKS];
};

void tp_replay_reset(struct tp_replay *w);
/* Would `counter` be accepted? Does not change the window. */
int tp_replay_check(const struct tp_replay *w, uint64_t counter);
/* Check and, when new, record `counter` (slide the window forward if it is
 * the newest). Returns the check's verdict. */
int tp_replay_mark(struct tp_replay *w, uint64_t counter);

#endif
