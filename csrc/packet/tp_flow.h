/* Flows: the key parsed from a packet, and a per-worker table (no locks:
 * one worker owns it) with a bounded size, LRU eviction, idle timeouts,
 * per-flow counters and the verdict Python gave. */
#ifndef TP_FLOW_H
#define TP_FLOW_H

#include <stdint.h>

enum tp_flow_class {
    TP_FLOW_IP = 0,        /* an IPv4/IPv6 flow: protocol, addresses, ports or ICMP id */
    TP_FLOW_FRAGMENT = 1,  /* IP fragments: addresses and protocol only */
    TP_FLOW_ARP = 2,       /* TAP: ARP, one flow per VLAN */
    TP_FLOW_ND = 3,        /* TAP: IPv6 neighbour discovery, one flow per VLAN */
    TP_FLOW_OTHER = 4,     /* anything else, by EtherType (TAP) or IP version (TUN) */
};

struct tp_flow_key {
    uint8_t cls;           /* enum tp_flow_class */
    uint8_t ip_version;    /* 4, 6 or 0 */
    uint8_t proto;         /* IP protocol after extension headers */
    uint8_t pad;
    uint16_t sport, dport; /* ports; ICMP echo: id in both */
    uint16_t vlan;         /* 802.1Q id, 0 for none */
    uint16_t ethertype;    /* TAP; for TUN the IP EtherType */
    uint8_t src[16], dst[16];
};

/* Parse the flow key of a packet (l2 = 1 for TAP Ethernet frames). */
void tp_flow_parse(const uint8_t *p, uint32_t len, int l2, struct tp_flow_key *k);
uint32_t tp_flow_hash(const struct tp_flow_key *k);

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
