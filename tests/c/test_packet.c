/* Unit tests of the pure packet code (csrc/packet), built on its own with
 * ASan + UBSan by tests/test_packet_c.py: that it compiles with only
 * csrc/packet on the include path shows packet code needs nothing from the
 * OS layer. Every failed check prints a line starting "FAIL"; the last line
 * is "ok N checks" only when none failed. Packets are built here with a plain
 * byte-by-byte checksum, independent of tp_csum_*. */
#include "tp_dgram.h"
#include "tp_flow.h"
#include "tp_parse.h"
#include "tp_proto.h"
#include "tp_vnet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ---- reference checksum and packet builders ------------------------------- */

static uint32_t ref_sum(uint32_t s, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s += (i & 1) ? p[i] : (uint32_t)p[i] << 8;
    return s;
}

static uint16_t ref_fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

static uint16_t ref_csum(const uint8_t *p, size_t n) { return (uint16_t)~ref_fold(ref_sum(0, p, n)); }

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

/* The L4 checksum of an IP packet at ip verifies (sum of all == 0xffff). */
static int ref_l4_ok(const uint8_t *ip)
{
    int v6 = ip[0] >> 4 == 6;
    uint32_t hl = v6 ? 40 : (uint32_t)(ip[0] & 0xf) * 4;
    uint32_t l4len = v6 ? get16(ip + 4) : get16(ip + 2) - hl;
    uint8_t ph[4] = { 0, 0, 0, v6 ? ip[6] : ip[9] };
    uint32_t s = ref_sum(0, v6 ? ip + 8 : ip + 12, v6 ? 32 : 8);
    s = ref_sum(s, ph, 4) + l4len;
    return ref_fold(ref_sum(s, ip + hl, l4len)) == 0xffff;
}

/* An IPv4 or IPv6 TCP/UDP packet with payload bytes (i * 7) into out; returns its length. */
static uint32_t build(uint8_t *out, int v6, int proto, uint32_t seq, uint32_t plen, uint16_t ident)
{
    uint32_t hl = v6 ? 40 : 20, l4hl = proto == TP_IPPROTO_TCP ? 20 : 8, l4len = l4hl + plen;
    uint8_t *l4 = out + hl;

    memset(out, 0, hl + l4len);
    if (v6) {
        out[0] = 0x60;
        put16(out + 4, (uint16_t)l4len);
        out[6] = (uint8_t)proto;
        out[7] = 64;
        out[8] = out[24] = 0xfd;
        out[23] = 1;
        out[39] = 2;
    } else {
        out[0] = 0x45;
        put16(out + 2, (uint16_t)(hl + l4len));
        put16(out + 4, ident);
        out[6] = 0x40;
        out[8] = 64;
        out[9] = (uint8_t)proto;
        out[12] = out[16] = 198;
        out[13] = out[17] = 18;
        out[15] = 1;
        out[19] = 2;
        put16(out + 10, ref_csum(out, 20));
    }
    put16(l4, 40000);
    put16(l4 + 2, 5201);
    if (proto == TP_IPPROTO_TCP) {
        l4[4] = (uint8_t)(seq >> 24); l4[5] = (uint8_t)(seq >> 16); l4[6] = (uint8_t)(seq >> 8); l4[7] = (uint8_t)seq;
        l4[11] = 1;
        l4[12] = 5 << 4;
        l4[13] = TP_TCP_ACK;
        put16(l4 + 14, 65000);
    } else {
        put16(l4 + 4, (uint16_t)l4len);
    }
    for (uint32_t i = 0; i < plen; i++)
        l4[l4hl + i] = (uint8_t)((seq + i) * 7);
    /* checksum over pseudo-header + L4 */
    uint8_t ph[4] = { 0, 0, 0, (uint8_t)proto };
    uint32_t s = ref_sum(0, v6 ? out + 8 : out + 12, v6 ? 32 : 8);
    s = ref_sum(s, ph, 4) + l4len;
    uint16_t c = (uint16_t)~ref_fold(ref_sum(s, l4, l4len));
    put16(l4 + (proto == TP_IPPROTO_TCP ? 16 : 6), proto == TP_IPPROTO_UDP && c == 0 ? 0xffff : c);
    return hl + l4len;
}

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_checksum(void)
{
    uint8_t buf[600];

    for (int round = 0; round < 2000; round++) {
        size_t len = rnd() % sizeof(buf), cut = (rnd() % (len + 1)) & ~(size_t)1;
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rnd();
        if (round % 7 == 0)
            memset(buf, 0xff, len);
        /* two pieces, the first of even length, give the same sum as one */
        uint16_t c = (uint16_t)~tp_csum_fold(tp_csum_add(tp_csum_add(0, buf, cut), buf + cut, len - cut));
        uint8_t b[2];
        memcpy(b, &c, 2);
        CHECK(get16(b) == ref_csum(buf, len), "len %zu cut %zu: %04x != %04x", len, cut, get16(b),
              ref_csum(buf, len));
    }
}

struct parse_row {
    const char *name;
    int l2, status;
    uint32_t l3, l4;
    int version, proto, n_ext, frag;
};

static void check_parse(const struct parse_row *r, const uint8_t *p, uint32_t len)
{
    struct tp_parsed pp;
    int st = tp_parse(p, len, r->l2, &pp);

    CHECK(st == r->status, "%s: status %d, want %d", r->name, st, r->status);
    CHECK(pp.l3 == r->l3 && pp.l4 == r->l4, "%s: l3 %u l4 %u, want %u %u", r->name, pp.l3, pp.l4, r->l3, r->l4);
    CHECK(pp.ip_version == r->version && pp.proto == r->proto, "%s: version %d proto %d", r->name,
          pp.ip_version, pp.proto);
    CHECK(pp.n_ext == r->n_ext && pp.frag == r->frag, "%s: n_ext %d frag %d", r->name, pp.n_ext, pp.frag);
    CHECK(pp.end <= len, "%s: end %u past len %u", r->name, pp.end, len);
}

/* IPv6 UDP behind n destination-options headers. */
static uint32_t build_ext(uint8_t *out, int n)
{
    uint8_t inner[100];
    uint32_t ilen = build(inner, 1, TP_IPPROTO_UDP, 0, 4, 0);

    memcpy(out, inner, 40);
    out[6] = n ? TP_IPPROTO_DSTOPTS : TP_IPPROTO_UDP;
    for (int i = 0; i < n; i++) {
        memset(out + 40 + 8 * i, 0, 8);
        out[40 + 8 * i] = i + 1 < n ? TP_IPPROTO_DSTOPTS : TP_IPPROTO_UDP;
    }
    memcpy(out + 40 + 8 * n, inner + 40, ilen - 40);
    put16(out + 4, (uint16_t)(8 * n + ilen - 40));
    return 40 + 8 * (uint32_t)n + ilen - 40;
}

static void test_parse(void)
{
    uint8_t p[400], f[400];
    uint32_t n;

    n = build(p, 0, TP_IPPROTO_TCP, 1, 10, 1);
    check_parse(&(struct parse_row){ "tcp4", 0, TP_PARSE_OK, 0, 20, 4, 6, 0, 0 }, p, n);
    check_parse(&(struct parse_row){ "tcp4 padded", 0, TP_PARSE_OK, 0, 20, 4, 6, 0, 0 }, p, n + 6);
    check_parse(&(struct parse_row){ "tcp4 cut", 0, TP_PARSE_UNPARSED, 0, 0, 4, 6, 0, 0 }, p, n - 1);
    check_parse(&(struct parse_row){ "ipv4 header cut", 0, TP_PARSE_BAD_IP, 0, 0, 0, 0, 0, 0 }, p, 19);
    memcpy(f, "\0\0\0\0\0\0\2\0\0\0\0\1\x81\0\0\x2a\x08\0", 18);
    memcpy(f + 18, p, n);
    check_parse(&(struct parse_row){ "tap vlan tcp4", 1, TP_PARSE_OK, 18, 38, 4, 6, 0, 0 }, f, n + 18);
    check_parse(&(struct parse_row){ "tap vlan cut", 1, TP_PARSE_BAD_L2, 0, 0, 0, 0, 0, 0 }, f, 15);
    f[12] = 0x08, f[13] = 0x06;
    check_parse(&(struct parse_row){ "tap arp", 1, TP_PARSE_NOT_IP, 14, 0, 0, 0, 0, 0 }, f, 60);
    p[6] = 0x20, p[7] = 0x10;   /* MF, offset 16: a later fragment (the header checksum does not matter here) */
    check_parse(&(struct parse_row){ "ipv4 fragment", 0, TP_PARSE_FRAGMENT, 0, 20, 4, 6, 0, TP_FRAG_LATER }, p, n);
    n = build_ext(p, 3);
    check_parse(&(struct parse_row){ "ipv6 3 ext", 0, TP_PARSE_OK, 0, 64, 6, 17, 3, 0 }, p, n);
    n = build_ext(p, TP_PARSE_MAX_EXT);
    check_parse(&(struct parse_row){ "ipv6 max ext", 0, TP_PARSE_OK, 0, 40 + 8 * TP_PARSE_MAX_EXT, 6, 17,
                                     TP_PARSE_MAX_EXT, 0 }, p, n);
    n = build_ext(p, TP_PARSE_MAX_EXT + 1);
    check_parse(&(struct parse_row){ "ipv6 too many ext", 0, TP_PARSE_UNPARSED, 0, 0, 6, TP_IPPROTO_DSTOPTS,
                                     TP_PARSE_MAX_EXT, 0 }, p, n);
    p[0] = 0x10;
    check_parse(&(struct parse_row){ "tun version 1", 0, TP_PARSE_BAD_IP, 0, 0, 0, 0, 0, 0 }, p, n);
    check_parse(&(struct parse_row){ "tun empty", 0, TP_PARSE_BAD_IP, 0, 0, 0, 0, 0, 0 }, p, 0);
}

static void test_flow_key(void)
{
    uint8_t p[400];
    struct tp_flow_key k;
    uint32_t n = build_ext(p, TP_PARSE_MAX_EXT + 1);

    /* issue 12 bug 4: past the extension-header bound the class was "other" */
    tp_flow_parse(p, n, TP_L2_NONE, &k);
    CHECK(k.cls == TP_FLOW_UNPARSED && k.ip_version == 6 && k.sport == 0 && k.src[0] == 0xfd,
          "cls %d version %d", k.cls, k.ip_version);
    n = build_ext(p, 2);
    tp_flow_parse(p, n, TP_L2_NONE, &k);
    CHECK(k.cls == TP_FLOW_IP && k.proto == 17 && k.sport == 40000 && k.dport == 5201, "cls %d", k.cls);
}

/* issue 12 bug 8: a 64 KB TSO packet at MSS 536 was dropped whole. */
static void test_split_chunks(int v6)
{
    static uint8_t pkt[70000], scratch[TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM], seg[2000];
    struct tp_seg segs[TP_VNET_MAX_SEGS];
    struct tp_vnet_splitter s;
    uint32_t hl = v6 ? 60 : 40;   /* the largest packet: 64 KB of IP (v4) or of payload (v6) */
    uint32_t len = build(pkt, v6, TP_IPPROTO_TCP, 1000, v6 ? 65535 - 20 : 65535 - 40, 7);
    struct tp_vnet_hdr h = { TP_VNET_F_NEEDS_CSUM, v6 ? TP_VNET_GSO_TCPV6 : TP_VNET_GSO_TCPV4, (uint16_t)hl, 536,
                             (uint16_t)(hl - 20), 16 };
    uint32_t payload = len - hl, want = (payload + 535) / 536, got = 0, bytes = 0;

    int total = tp_vnet_split_begin(&s, &h, pkt, len, TP_L2_NONE);
    CHECK(total == (int)want, "v6 %d: %d segments, want %u", v6, total, want);
    CHECK(tp_vnet_split(&h, pkt, len, TP_L2_NONE, scratch, segs, TP_VNET_MAX_SEGS) == TP_VNET_ETOOMANY,
          "the one-call API keeps its limit");
    for (int n; (n = tp_vnet_split_next(&s, scratch, segs, TP_VNET_MAX_SEGS)) > 0;) {
        for (int i = 0; i < n; i++, got++) {
            memcpy(seg, segs[i].hdr, segs[i].hdr_len);
            memcpy(seg + segs[i].hdr_len, segs[i].data, segs[i].len);
            CHECK(ref_l4_ok(seg), "v6 %d segment %u: bad L4 checksum", v6, got);
            CHECK(v6 || ref_csum(seg, 20) == 0, "segment %u: bad IPv4 header checksum", got);
            CHECK(get32(seg + hl - 16) == 1000 + got * 536, "segment %u: seq %u", got, get32(seg + hl - 16));
            CHECK(segs[i].data == pkt + hl + bytes, "segment %u: payload not in order", got);
            CHECK(v6 || get16(seg + 4) == (uint16_t)(7 + got), "segment %u: IPv4 id", got);
            bytes += segs[i].len;
        }
    }
    CHECK(got == want && bytes == payload, "v6 %d: %u segments, %u bytes of %u", v6, got, bytes, payload);
    CHECK(tp_vnet_split_next(&s, scratch, segs, TP_VNET_MAX_SEGS) == 0, "done stays done");
    h.gso_size = (uint16_t)((payload + TP_VNET_SPLIT_MAX_SEGS - 1) / TP_VNET_SPLIT_MAX_SEGS);
    CHECK(tp_vnet_split_begin(&s, &h, pkt, len, TP_L2_NONE) <= TP_VNET_SPLIT_MAX_SEGS, "at the bound");
    h.gso_size--;
    CHECK(tp_vnet_split_begin(&s, &h, pkt, len, TP_L2_NONE) == TP_VNET_ETOOMANY, "past the bound");
}

/* Three back-to-back 1000-byte TCP segments of one flow, which coalesce. */
static void build_run(uint8_t bufs[3][1200], struct tp_gro_pkt pk[3])
{
    for (int i = 0; i < 3; i++) {
        pk[i].len = build(bufs[i], 0, TP_IPPROTO_TCP, 1000 + 1000 * (uint32_t)i, 1000, (uint16_t)(1 + i));
        pk[i].data = bufs[i];
    }
}

/* issue 12 bug 3: bytes after the IP length went into the super-packet. */
static void test_coalesce_trailing(void)
{
    static uint8_t bufs[3][1200];
    struct tp_gro_pkt pk[3];
    struct tp_gro_unit units[3];
    int next[3];
    uint32_t skip[3];

    build_run(bufs, pk);
    CHECK(tp_gro_coalesce(pk, 3, TP_L2_NONE, TP_GRO_TCP, next, skip, units) == 1, "a clean run merges");
    build_run(bufs, pk);
    memcpy(bufs[1] + pk[1].len, "JUNK", 4);
    pk[1].len += 4;
    int n = tp_gro_coalesce(pk, 3, TP_L2_NONE, TP_GRO_TCP, next, skip, units);
    CHECK(n == 3, "%d units, want 3", n);
    for (int u = 0; u < n; u++)
        CHECK(units[u].count == 1 || units[u].first != 1, "the padded packet was merged");
}

/* Authenticated packets (TP_GRO_CSUM_TRUSTED): a bad inner checksum no longer
 * stops the merge, and the super-packet still gets a fresh checksum. */
static void test_coalesce_trusted(void)
{
    static uint8_t bufs[3][1200];
    struct tp_gro_pkt pk[3];
    struct tp_gro_unit units[3];
    int next[3];
    uint32_t skip[3];

    for (int trusted = 0; trusted < 2; trusted++) {
        build_run(bufs, pk);
        bufs[1][pk[1].len - 1] ^= 0x5a;   /* the second segment's TCP checksum no longer verifies */
        int n = tp_gro_coalesce(pk, 3, TP_L2_NONE, TP_GRO_TCP | (trusted ? TP_GRO_CSUM_TRUSTED : 0), next, skip,
                                units);
        CHECK(n == (trusted ? 1 : 3), "trusted %d: %d units", trusted, n);
        CHECK(!trusted || (units[0].count == 3 && (units[0].vh.flags & TP_VNET_F_NEEDS_CSUM)),
              "merged, the checksum left to the device");
    }
}

/* issue 12 bug 10: init never returned for a size above 2^30. */
static void test_flow_table(void)
{
    struct tp_flow_table t;
    struct tp_flow_key k;
    struct tp_flow old;
    int32_t ev, idx[5];

    CHECK(tp_flow_table_init(&t, (1u << 30) + 1) == -EINVAL, "2^30 + 1");
    CHECK(tp_flow_table_init(&t, 0xffffffffu) == -EINVAL, "2^32 - 1");
    CHECK(tp_flow_table_init(&t, TP_FLOW_TABLE_MAX + 1) == -EINVAL, "max + 1");
    CHECK(tp_flow_table_init(&t, 0) == -EINVAL, "0");
    CHECK(tp_flow_table_init(&t, 4) == 0, "4");
    for (int i = 0; i < 5; i++) {
        memset(&k, 0, sizeof(k));
        k.sport = (uint16_t)i;
        idx[i] = tp_flow_insert(&t, &k, tp_flow_hash(&k), i, &old, &ev);
        CHECK(ev == (i < 4 ? -1 : idx[0]), "insert %d evicted %d", i, ev);
        CHECK(tp_flow_lookup(&t, &k, tp_flow_hash(&k)) == idx[i], "lookup %d", i);
    }
    CHECK(old.key.sport == 0 && t.count == 4, "the oldest went: sport %u count %u", old.key.sport, t.count);
    CHECK(tp_flow_oldest(&t) == idx[1], "oldest");
    tp_flow_touch(&t, idx[1]);
    CHECK(tp_flow_oldest(&t) == idx[2], "touch moves to the front");
    tp_flow_remove(&t, idx[2]);
    k.sport = 2;
    CHECK(tp_flow_lookup(&t, &k, tp_flow_hash(&k)) == -1 && t.count == 3, "removed");
    tp_flow_table_free(&t);
}

/* issue 12 bug 1: a UDP_GRO buffer is cut into at most `room` datagrams. */
static void test_dgram(void)
{
    static const struct { uint32_t len; int gro; uint32_t room, seg, nseg, got, last; } rows[] = {
        { 1400, 0, 64, 1400, 1, 1, 1400 },              /* no UDP_GRO: one datagram */
        { 0, 0, 64, 0, 1, 0, 0 },                       /* empty: one (malformed), nothing cut */
        { 1000, 1400, 64, 1000, 1, 1, 1000 },           /* a size above the length: one */
        { 1000, 1000, 64, 1000, 1, 1, 1000 },           /* equal: one */
        { 6000, 60, 128, 60, 100, 100, 60 },            /* 100 segments, room for all */
        { 6000, 60, 64, 60, 100, 64, 60 },              /* room for 64: the rest is the caller's to drop */
        { 6001, 60, 128, 60, 101, 101, 1 },             /* a short last segment */
        { 7680, 60, 128, 60, 128, 128, 60 },            /* the kernel's 128 */
        { 100, -5, 8, 100, 1, 1, 100 },                 /* a negative size is no size */
        { 0xffffffffu, 1, 4, 1, 0xffffffffu, 4, 1 },    /* a count that would wrap len + seg - 1 */
        { 600, 100, 0, 100, 6, 0, 0 },                  /* a full array */
    };
    struct tp_dgram_seg segs[128];

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct tp_dgram g = tp_dgram_of(rows[i].len, rows[i].gro);
        uint32_t got = tp_dgram_cut(&g, segs, rows[i].room), off = 0;
        CHECK(g.seg == rows[i].seg && g.nseg == rows[i].nseg, "row %zu: seg %u nseg %u", i, g.seg, g.nseg);
        CHECK(got == rows[i].got, "row %zu: cut %u", i, got);
        for (uint32_t k = 0; k < got; k++) {
            CHECK(segs[k].off == off, "row %zu seg %u: off %u", i, k, segs[k].off);
            off += segs[k].len;
        }
        CHECK(!got || segs[got - 1].len == rows[i].last, "row %zu: last %u", i, got ? segs[got - 1].len : 0);
    }
}

int main(void)
{
    test_checksum();
    test_parse();
    test_flow_key();
    test_split_chunks(0);
    test_split_chunks(1);
    test_coalesce_trailing();
    test_coalesce_trusted();
    test_flow_table();
    test_dgram();
    if (failures) {
        printf("%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("ok %d checks\n", checks);
    return 0;
}
