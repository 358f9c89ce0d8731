/* Single-producer single-consumer rings of fixed-size records: how a worker
 * tells the control side about flows and events, and how verdicts come back.
 * Lock-free: the producer owns `head`, the consumer `tail`. */
#ifndef TP_RING_H
#define TP_RING_H

#include <stddef.h>
#include <stdint.h>

struct tp_ring {
    uint32_t head __attribute__((aligned(64)));   /* next slot the producer fills */
    uint32_t tail __attribute__((aligned(64)));   /* next slot the consumer reads */
    uint32_t mask;
    uint32_t rec_size;
    uint8_t *slots;
};

/* capacity: a power of two. Returns 0 or -ENOMEM / -EINVAL. */
int tp_ring_init(struct tp_ring *r, uint32_t capacity, uint32_t rec_size);
void tp_ring_free(struct tp_ring *r);

/* Producer: a slot to fill, or NULL when full; then publish it. */
void *tp_ring_reserve(struct tp_ring *r);
void tp_ring_publish(struct tp_ring *r);

/* Consumer: the oldest record, or NULL when empty; then release it. */
void *tp_ring_peek(struct tp_ring *r);
void tp_ring_release(struct tp_ring *r);

uint32_t tp_ring_count(const struct tp_ring *r);

#endif
