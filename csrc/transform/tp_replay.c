/* RFC 6479's sliding window: see tp_replay.h. */
#include "tp_replay.h"

#include <string.h>

#define TP__REPLAY_MASK (TP_REPLAY_BLOCKS - 1)

void tp_replay_reset(struct tp_replay *w)
{
    memset(w, 0, sizeof(*w));
}

static inline uint64_t block_of(uint64_t counter) { return counter / TP_REPLAY_BLOCK_BITS; }
static inline uint64_t bit_of(uint64_t counter) { return (uint64_t)1 << (counter % TP_REPLAY_BLOCK_BITS); }

int tp_replay_check(const struct tp_replay *w, uint64_t counter)
{
    if (!w->any || counter > w->top)
        return TP_REPLAY_OK;
    if (w->top - counter >= TP_REPLAY_WINDOW)
        return TP_REPLAY_TOO_OLD;
    return w->bits[block_of(counter) & TP__REPLAY_MASK] & bit_of(counter) ? TP_REPLAY_SEEN : TP_REPLAY_OK;
}

int tp_replay_mark(struct tp_replay *w, uint64_t counter)
{
    int v = tp_replay_check(w, counter);

    if (v != TP_REPLAY_OK)
        return v;
    if (!w->any || counter > w->top) {
        /* Clear the blocks after the old top's block up to the new one's
         * (all of them after a jump of a whole ring, or on the first). */
        uint64_t steps = w->any ? block_of(counter) - block_of(w->top) : TP_REPLAY_BLOCKS;
        if (steps >= TP_REPLAY_BLOCKS)
            memset(w->bits, 0, sizeof(w->bits));
        else
            for (uint64_t i = 1; i <= steps; i++)
                w->bits[(block_of(w->top) + i) & TP__REPLAY_MASK] = 0;
        w->top = counter;
        w->any = 1;
    }
    w->bits[block_of(counter) & TP__REPLAY_MASK] |= bit_of(counter);
    return TP_REPLAY_OK;
}
