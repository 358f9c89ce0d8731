#include "tp_flow.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static int tp__is_ext(uint8_t nh)
{
    return nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 44;
}

void tp_flow_parse(const uint8_t *p, uint32_t len, int l2, struct tp_flow_key *k)
{
    uint32_t off = 0, l4;
    uint16_t et;
    uint8_t proto;

    memset(k, 0, sizeof(*k));
    k->cls = TP_FLOW_OTHER;
    if (l2) {
        if (len < 14)
            return;
        et = rd16(p + 12);
        off = 14;
        for (int tags = 0; (et == 0x8100 || et == 0x88a8) && tags < 2; tags++) {
            if (len < off + 4)
                return;
            k->vlan = rd16(p + off) & 0x0fff;   /* the innermost tag wins */
            et = rd16(p + off + 2);
            off += 4;
        }
        k->ethertype = et;
        if (et == 0x0806) {
            k->cls = TP_FLOW_ARP;
            return;
        }
        if (et != 0x0800 && et != 0x86DD)
            return;
    } else {
        if (len < 1)
            return;
        et = (p[0] >> 4) == 4 ? 0x0800 : (p[0] >> 4) == 6 ? 0x86DD : 0;
        k->ethertype = et;
        if (!et)
            return;
    }
    if (et == 0x0800) {
        if (len < off + 20 || (p[off] >> 4) != 4)
            return;
        uint32_t ihl = (uint32_t)(p[off] & 0xf) * 4;
        if (ihl < 20 || len < off + ihl)
            return;
        k->ip_version = 4;
        proto = p[off + 9];
        memcpy(k->src, p + off + 12, 4);
        memcpy(k->dst, p + off + 16, 4);
        k->proto = proto;
        if (rd16(p + off + 6) & 0x3fff) {   /* MF or an offset: a fragment */
            k->cls = TP_FLOW_FRAGMENT;
            return;
        }
        l4 = off + ihl;
    } else {
        if (len < off + 40 || (p[off] >> 4) != 6)
            return;
        k->ip_version = 6;
        memcpy(k->src, p + off + 8, 16);
        memcpy(k->dst, p + off + 24, 16);
        proto = p[off + 6];
        l4 = off + 40;
        /* Walk extension headers to the L4 header (a few at most). */
        for (int n = 0; tp__is_ext(proto) && n < 8; n++) {
            if (len < l4 + 8)
                break;
            if (proto == 44) {
                k->proto = p[l4];
                k->cls = TP_FLOW_FRAGMENT;
                return;
            }
            uint32_t ext = proto == 51 ? ((uint32_t)p[l4 + 1] + 2) * 4 : ((uint32_t)p[l4 + 1] + 1) * 8;
            proto = p[l4];
            l4 += ext;
        }
        k->proto = proto;
        if (tp__is_ext(proto))
            return;   /* too many or truncated: an IP flow without ports */
    }
    k->cls = TP_FLOW_IP;
    if ((proto == 6 || proto == 17 || proto == 132 || proto == 136) && len >= l4 + 4) {
        k->sport = rd16(p + l4);
        k->dport = rd16(p + l4 + 2);
    } else if ((proto == 1 || proto == 58) && len >= l4 + 8) {
        uint8_t type = p[l4];
        if (proto == 58 && l2 && type >= 133 && type <= 137) {
            /* neighbour discovery on a TAP link: a control packet, one flow per VLAN */
            memset(k->src, 0, sizeof(k->src));
            memset(k->dst, 0, sizeof(k->dst));
            k->cls = TP_FLOW_ND;
            return;
        }
        if (type == 8 || type == 0 || type == 128 || type == 129)
            k->sport = k->dport = rd16(p + l4 + 4);   /* echo: the identifier */
    }
}

uint32_t tp_flow_hash(const struct tp_flow_key *k)
{
    const uint8_t *b = (const uint8_t *)k;
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    size_t i;

    for (i = 0; i + 8 <= sizeof(*k); i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h ^= w;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    for (; i < sizeof(*k); i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    return (uint32_t)h;
}

int tp_flow_table_init(struct tp_flow_table *t, uint32_t cap)
{
    memset(t, 0, sizeof(*t));
    if (cap == 0)
        return -EINVAL;
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
