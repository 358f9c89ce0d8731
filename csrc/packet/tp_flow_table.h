/* A worker's flow table: bounded size, LRU eviction, idle timeouts,
 * per-flow counters and the verdict Python gave. No locks: one worker owns
 * it. Not packet parsing (that is tp_flow_key), but kept with the packet
 * code since it is pure data-structure code over memory (malloc only). */
#ifndef TP_FLOW_TABLE_H
#define TP_FLOW_TABLE_H

#include <stdint.h>

#include "tp_flow_key.h"

/* The most entries a table may hold (tunpump.Pump's flow_table_size limit). */
#define TP_FLOW_TABLE_MAX (1u << 24)

enum tp_verdict {
    TP_VERDICT_NONE = 0,   /* still waiting for Python */
    TP_VERDICT_FORWARD = 1,
    TP_VERDICT_DROP = 2,
    TP_VERDICT_PUNT = 3,
    TP_VERDICT_ROUTE = 4,
};

struct tp_flow {
    struct tp_flow_key key;
    uint64_t packets, bytes;
    int64_t created_ns, last_ns, expires_ns;   /* expires_ns: the verdict's TTL, 0 = none */
    int64_t pending_since_ns;                   /* while the verdict is NONE */
    uint32_t gen;          /* bumped when the slot is reused: stale verdicts are ignored */
    uint8_t verdict;
    uint8_t route;
    int32_t hnext;         /* hash chain */
    int32_t prev, next;    /* LRU list: head is most recent */
};

struct tp_flow_table {
    uint32_t cap;          /* entries */
    uint32_t nbuckets;     /* power of two */
    int32_t *buckets;
    struct tp_flow *e;
    int32_t free_head;
    int32_t lru_head, lru_tail;
    uint32_t count;
};

/* 0, -EINVAL for cap 0 or over TP_FLOW_TABLE_MAX, or -ENOMEM. */
int tp_flow_table_init(struct tp_flow_table *t, uint32_t cap);
void tp_flow_table_free(struct tp_flow_table *t);

/* The entry for key, or -1. */
int32_t tp_flow_lookup(struct tp_flow_table *t, const struct tp_flow_key *k, uint32_t hash);
/* Insert a new entry; when full, *evicted receives the index of the LRU entry
 * that made room (its contents are copied to *old first), else -1. */
int32_t tp_flow_insert(struct tp_flow_table *t, const struct tp_flow_key *k, uint32_t hash,
                       int64_t now, struct tp_flow *old, int32_t *evicted);
void tp_flow_touch(struct tp_flow_table *t, int32_t i);
void tp_flow_remove(struct tp_flow_table *t, int32_t i);
/* The least recently used entry, or -1. */
int32_t tp_flow_oldest(const struct tp_flow_table *t);

#endif
