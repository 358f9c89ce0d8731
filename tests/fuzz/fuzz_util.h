/* Shared by the fuzz targets: a plain byte-by-byte checksum (the reference
 * the optimised tp_csum_* is checked against), checksum fixing so fuzzed
 * packets reach the merge logic, and require(), which aborts so both
 * libFuzzer and the replay driver report a broken invariant as a crash. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_parse.h"
#include "tp_proto.h"

#include "fuzz_require.h"

static inline uint32_t ref_sum(uint32_t s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s += (i & 1) ? p[i] : (uint32_t)p[i] << 8;
    return s;
}

static inline uint16_t ref_fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

/* The pseudo-header plus L4 sum of a parsed TCP/UDP packet (field included). */
static inline uint32_t ref_l4_sum(const uint8_t *p, const struct tp_parsed *pp)
{
    const uint8_t *ip = p + pp->l3;
    uint32_t l4len = pp->end - pp->l4;
    uint8_t ph[4] = { 0, 0, 0, pp->proto };
    uint32_t s = ref_sum(0, pp->ip_version == 6 ? ip + 8 : ip + 12, pp->ip_version == 6 ? 32 : 8);

    s = ref_sum(s, ph, 4) + l4len;
    return ref_sum(s, p + pp->l4, l4len);
}

static inline int l4_csum_at(int proto) { return proto == TP_IPPROTO_TCP ? 16 : 6; }

/* Give a TCP/UDP packet correct IPv4 header and L4 checksums, so fuzzed
 * packets get past the checksum checks into the merge rules. */
static inline void fix_checksums(uint8_t *p, uint32_t len, int l2)
{
    struct tp_parsed pp;

    if (tp_parse(p, len, l2, &pp) != TP_PARSE_OK)
        return;
    if (pp.ip_version == 4) {
        wr16(p + pp.l3 + 10, 0);
        wr16(p + pp.l3 + 10, (uint16_t)~ref_fold(ref_sum(0, p + pp.l3, pp.l4 - pp.l3)));
    }
    if ((pp.proto != TP_IPPROTO_TCP && pp.proto != TP_IPPROTO_UDP) ||
        pp.end - pp.l4 < (pp.proto == TP_IPPROTO_TCP ? 20u : 8u))
        return;
    uint8_t *c = p + pp.l4 + l4_csum_at(pp.proto);
    wr16(c, 0);
    uint16_t v = (uint16_t)~ref_fold(ref_l4_sum(p, &pp));
    wr16(c, pp.proto == TP_IPPROTO_UDP && v == 0 ? 0xffff : v);
}

/* A whole IP packet at p[0..len) whose headers and checksums verify. */
static inline int ref_packet_ok(const uint8_t *p, uint32_t len, int l2)
{
    struct tp_parsed pp;

    if (tp_parse(p, len, l2, &pp) != TP_PARSE_OK || pp.end != len)
        return 0;
    if (pp.ip_version == 4 && ref_fold(ref_sum(0, p + pp.l3, pp.l4 - pp.l3)) != 0xffff)
        return 0;
    return ref_fold(ref_l4_sum(p, &pp)) == 0xffff;
}

#endif
