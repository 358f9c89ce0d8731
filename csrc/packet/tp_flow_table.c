#include "tp_flow_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int tp_flow_table_init(struct tp_flow_table *t, uint32_t cap)
{
    memset(t, 0, sizeof(*t));
    if (cap == 0 || cap > TP_FLOW_TABLE_MAX)
        return -EINVAL;   /* also keeps cap * 2 below from overflowing */
    t->nbuckets = 1;
    while (t->nbuckets < cap * 2)
        t->nbuckets <<= 1;
    t->buckets = malloc(sizeof(*t->buckets) * t->nbuckets);
    t->e = calloc(cap, sizeof(*t->e));
    if (!t->buckets || !t->e) {
        tp_flow_table_free(t);
        return -ENOMEM;
    }
    t->cap = cap;
    for (uint32_t i = 0; i < t->nbuckets; i++)
        t->buckets[i] = -1;
    for (uint32_t i = 0; i < cap; i++)
        t->e[i].hnext = i + 1 < cap ? (int32_t)(i + 1) : -1;
    t->free_head = 0;
    t->lru_head = t->lru_tail = -1;
    return 0;
}

void tp_flow_table_free(struct tp_flow_table *t)
{
    free(t->buckets);
    free(t->e);
    t->buckets = NULL;
    t->e = NULL;
}

int32_t tp_flow_lookup(struct tp_flow_table *t, const struct tp_flow_key *k, uint32_t hash)
{
    for (int32_t i = t->buckets[hash & (t->nbuckets - 1)]; i >= 0; i = t->e[i].hnext)
        if (memcmp(&t->e[i].key, k, sizeof(*k)) == 0)
            return i;
    return -1;
}

static void tp__lru_unlink(struct tp_flow_table *t, int32_t i)
{
    struct tp_flow *f = &t->e[i];

    if (f->prev >= 0)
        t->e[f->prev].next = f->next;
    else
        t->lru_head = f->next;
    if (f->next >= 0)
        t->e[f->next].prev = f->prev;
    else
        t->lru_tail = f->prev;
}

static void tp__lru_push(struct tp_flow_table *t, int32_t i)
{
    struct tp_flow *f = &t->e[i];

    f->prev = -1;
    f->next = t->lru_head;
    if (t->lru_head >= 0)
        t->e[t->lru_head].prev = i;
    t->lru_head = i;
    if (t->lru_tail < 0)
        t->lru_tail = i;
}

void tp_flow_touch(struct tp_flow_table *t, int32_t i)
{
    if (t->lru_head == i)
        return;
    tp__lru_unlink(t, i);
    tp__lru_push(t, i);
}

void tp_flow_remove(struct tp_flow_table *t, int32_t i)
{
    uint32_t b = tp_flow_hash(&t->e[i].key) & (t->nbuckets - 1);
    int32_t *link = &t->buckets[b];

    while (*link >= 0 && *link != i)
        link = &t->e[*link].hnext;
    if (*link == i)
        *link = t->e[i].hnext;
    tp__lru_unlink(t, i);
    t->e[i].hnext = t->free_head;
    t->free_head = i;
    t->count--;
}

int32_t tp_flow_oldest(const struct tp_flow_table *t)
{
    return t->lru_tail;
}

int32_t tp_flow_insert(struct tp_flow_table *t, const struct tp_flow_key *k, uint32_t hash,
                       int64_t now, struct tp_flow *old, int32_t *evicted)
{
    int32_t i;
    uint32_t gen;

    *evicted = -1;
    if (t->free_head < 0) {
        i = t->lru_tail;
        *old = t->e[i];
        *evicted = i;
        tp_flow_remove(t, i);
    }
    i = t->free_head;
    t->free_head = t->e[i].hnext;
    gen = t->e[i].gen + 1;
    memset(&t->e[i], 0, sizeof(t->e[i]));
    t->e[i].gen = gen;
    t->e[i].key = *k;
    t->e[i].created_ns = t->e[i].last_ns = now;
    t->e[i].hnext = t->buckets[hash & (t->nbuckets - 1)];
    t->buckets[hash & (t->nbuckets - 1)] = i;
    tp__lru_push(t, i);
    t->count++;
    return i;
}
