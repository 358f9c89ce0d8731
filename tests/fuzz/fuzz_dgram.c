/* The UDP receive path's cut (tp_dgram_of, tp_dgram_cut): a batch of
 * received buffers, each with the UDP_GRO segment size the kernel reported
 * (any length, any size, counts far past the kernel's 128), cut into one
 * packet array from any starting position, the way udp_read / udp_cut fill
 * d->pkts. Every write stays inside the arrays (each malloc'd to the exact
 * size, so ASan sees one entry too many) and every byte is accounted for:
 * delivered in order, or in segments counted as dropped.
 * Input: array capacity (2 bytes), starting position (2 bytes), then records
 * of 8 bytes: length (4, big-endian) and UDP_GRO size (4, signed). */
#include "fuzz_util.h"
#include "tp_dgram.h"

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t cap = 1 + rd16(data) % 2048, n = rd16(data + 2) % (cap + 1);
    struct tp_dgram_seg *pkts = malloc(sizeof(*pkts) * cap);

    for (size_t at = 4; at + 8 <= size; at += 8) {
        uint32_t len = rd32(data + at);
        int gro = (int)rd32(data + at + 4);
        struct tp_dgram g = tp_dgram_of(len, gro);

        /* What the datagram carries, from the reported size alone. */
        uint32_t seg = gro > 0 && (uint32_t)gro < len ? (uint32_t)gro : len;
        uint64_t want_nseg = len == 0 ? 1 : ((uint64_t)len + seg - 1) / seg;
        require(g.len == len && g.seg == seg && g.nseg == want_nseg);

        uint32_t room = cap - n < TP_DGRAM_MAX_SEGS ? cap - n : TP_DGRAM_MAX_SEGS;
        struct tp_dgram_seg *segs = malloc(sizeof(*segs) * (room ? room : 1));
        uint32_t got = tp_dgram_cut(&g, segs, room);
        uint64_t delivered = 0;

        require(got <= room && got <= g.nseg);
        require(len != 0 || got == 0);
        require(got == g.nseg || got == room || len == 0);   /* only a full array leaves segments out */
        for (uint32_t k = 0; k < got; k++) {
            require(segs[k].off == delivered);                /* in order, no gap, no overlap */
            require(segs[k].len >= 1 && segs[k].len <= seg);
            require(segs[k].len == seg || k + 1 == g.nseg);   /* only the last may be short */
            delivered += segs[k].len;
            pkts[n++] = segs[k];                              /* as udp_cut fills d->pkts */
        }
        require(n <= cap);
        /* Every byte: delivered, or in the nseg - got segments counted as dropped. */
        uint64_t dropped_segs = g.nseg - got, left = (uint64_t)len - delivered;
        require(delivered <= len);
        require(len == 0 ? dropped_segs == 1 : dropped_segs == (left + seg - 1) / seg);
        free(segs);
        if (n == cap && (len & 1))
            n = 0;   /* a new batch; otherwise the array stays full and the next buffers find no room */
    }
    free(pkts);
    return 0;
}
