/* GRO coalescing (tp_gro_coalesce). Input: one control byte (bit 0: TAP;
 * bit 1: TCP; bit 2: UDP; bit 3: fix the checksums of every packet first, so
 * the merge rules are reached; bit 4: TP_GRO_CSUM_TRUSTED, checksums are not
 * verified, as after an AEAD), then packets as [length, 2 bytes][bytes].
 * Every packet must land in exactly one unit, in order; a unit of one is
 * the packet unchanged; a super-packet must verify once its partial
 * checksum is completed and split back into exactly its packets' payloads. */
#include "fuzz_util.h"
#include "tp_vnet.h"

#define MAXP 80

static void check_super(const struct tp_gro_unit *u, uint8_t **bufs, const uint32_t *lens, uint8_t **orig,
                        const int *next, const uint32_t *skip, int l2)
{
    static uint8_t sp[70000 + 64 * 2000], scratch[TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM];
    struct tp_seg segs[TP_VNET_MAX_SEGS];
    uint32_t n = lens[u->first];

    require(u->count <= TP_VNET_MAX_SEGS && u->vh.flags == TP_VNET_F_NEEDS_CSUM);
    memcpy(sp, bufs[u->first], n);
    for (int k = next[u->first]; k >= 0; k = next[k]) {
        require(skip[k] <= lens[k]);
        memcpy(sp + n, bufs[k] + skip[k], lens[k] - skip[k]);
        n += lens[k] - skip[k];
    }
    /* complete the partial checksum as the kernel would */
    uint32_t start = u->vh.csum_start, at = start + u->vh.csum_offset;
    require(at + 2 <= n);
    wr16(sp + at, (uint16_t)~ref_fold(ref_sum(0, sp + start, n - start)));
    if (sp[at] == 0 && sp[at + 1] == 0 && u->vh.gso_type == TP_VNET_GSO_UDP_L4)
        wr16(sp + at, 0xffff);
    require(ref_packet_ok(sp, n, l2));
    struct tp_vnet_hdr h = u->vh;
    h.flags = 0;   /* already complete */
    int nseg = tp_vnet_split(&h, sp, n, l2, scratch, segs, TP_VNET_MAX_SEGS);
    require(nseg == u->count);
    int k = u->first;
    for (int i = 0; i < nseg; i++, k = next[k]) {
        uint32_t hl = segs[i].hdr_len;
        require(k >= 0 && segs[i].len == lens[k] - hl && memcmp(segs[i].data, orig[k] + hl, segs[i].len) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tp_gro_pkt pk[MAXP];
    struct tp_gro_unit units[MAXP];
    uint8_t *bufs[MAXP], *orig[MAXP];
    uint32_t lens[MAXP], skip[MAXP];
    int next[MAXP], n = 0, seen[MAXP] = { 0 };

    if (size < 1)
        return 0;
    int l2 = data[0] & 1;
    unsigned what = (data[0] & 2 ? TP_GRO_TCP : 0) | (data[0] & 4 ? TP_GRO_UDP : 0) |
                    (data[0] & 16 ? TP_GRO_CSUM_TRUSTED : 0);
    size_t off = 1;
    while (n < MAXP && off + 2 <= size) {
        uint32_t len = rd16(data + off);
        off += 2;
        if (len == 0 || len > size - off)
            len = (uint32_t)(size - off);
        if (len == 0)
            break;
        bufs[n] = malloc(len);
        orig[n] = malloc(len);
        memcpy(bufs[n], data + off, len);
        if (data[0] & 8)
            fix_checksums(bufs[n], len, l2);
        memcpy(orig[n], bufs[n], len);
        lens[n] = len;
        pk[n] = (struct tp_gro_pkt){ bufs[n], len };
        off += len;
        n++;
    }
    if (n) {
        int nu = tp_gro_coalesce(pk, n, l2, what, next, skip, units);
        require(nu >= 1 && nu <= n);
        for (int u = 0; u < nu; u++) {
            int k = units[u].first, c = 0, last = -1;
            require(u == 0 || units[u].first > units[u - 1].first);
            for (; k >= 0; last = k, k = next[k], c++) {
                require(k < n && !seen[k] && (last < 0 || k > last));
                seen[k] = 1;
            }
            require(c == units[u].count && last == units[u].last);
            if (c == 1)
                require(memcmp(bufs[units[u].first], orig[units[u].first], lens[units[u].first]) == 0 &&
                        units[u].vh.gso_type == 0 && units[u].vh.flags == 0);
            else
                check_super(&units[u], bufs, lens, orig, next, skip, l2);
        }
        for (int k = 0; k < n; k++)
            require(seen[k]);
    }
    for (int k = 0; k < n; k++) {
        free(bufs[k]);
        free(orig[k]);
    }
    return 0;
}
