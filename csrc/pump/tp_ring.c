#include "tp_ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tp_ring_init(struct tp_ring *r, uint32_t capacity, uint32_t rec_size)
{
    memset(r, 0, sizeof(*r));
    if (capacity == 0 || (capacity & (capacity - 1)) != 0 || rec_size == 0)
        return -EINVAL;
    r->slots = malloc((size_t)capacity * rec_size);
    if (!r->slots)
        return -ENOMEM;
    r->mask = capacity - 1;
    r->rec_size = rec_size;
    return 0;
}

void tp_ring_free(struct tp_ring *r)
{
    free(r->slots);
    r->slots = NULL;
}

void *tp_ring_reserve(struct tp_ring *r)
{
    uint32_t head = r->head;   /* only this thread writes it */
    uint32_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);

    if (head - tail > r->mask)
        return NULL;
    return r->slots + (size_t)(head & r->mask) * r->rec_size;
}

void tp_ring_publish(struct tp_ring *r)
{
    __atomic_store_n(&r->head, r->head + 1, __ATOMIC_RELEASE);
}

void *tp_ring_peek(struct tp_ring *r)
{
    uint32_t tail = r->tail;
    uint32_t head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);

    if (head == tail)
        return NULL;
    return r->slots + (size_t)(tail & r->mask) * r->rec_size;
}

void tp_ring_release(struct tp_ring *r)
{
    __atomic_store_n(&r->tail, r->tail + 1, __ATOMIC_RELEASE);
}

uint32_t tp_ring_count(const struct tp_ring *r)
{
    return __atomic_load_n(&r->head, __ATOMIC_ACQUIRE) - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
}
