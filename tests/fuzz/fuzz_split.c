/* GSO split and NEEDS_CSUM completion (tp_vnet_split_begin/next, tp_vnet_split).
 * Input: a 10-byte virtio_net_hdr, one control byte (bit 0: TAP; bits 1-6:
 * the chunk size), the packet. Every segment made must be a whole packet
 * whose checksums verify, made of the original's bytes in order. */
#include "fuzz_util.h"
#include "tp_vnet.h"

static void check_seg(const struct tp_seg *g, const uint8_t *pkt, uint32_t len, int l2)
{
    static uint8_t seg[TP_VNET_HDR_ROOM + 70000];

    require(g->data >= pkt && g->len <= len && g->data + g->len <= pkt + len);
    if (!g->hdr)
        return;
    require(g->hdr_len <= TP_VNET_HDR_ROOM);
    memcpy(seg, g->hdr, g->hdr_len);
    memcpy(seg + g->hdr_len, g->data, g->len);
    require(ref_packet_ok(seg, g->hdr_len + g->len, l2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t scratch[TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM];
    struct tp_seg segs[TP_VNET_MAX_SEGS];
    struct tp_vnet_splitter s;
    struct tp_vnet_hdr h;

    if (size < 11 || size > 70000)
        return 0;
    tp_vnet_hdr_read(data, &h);
    int l2 = data[10] & 1, chunk = 1 + (data[10] >> 1) % TP_VNET_MAX_SEGS;
    uint32_t len = (uint32_t)(size - 11);
    uint8_t *pkt = malloc(len ? len : 1), *copy = malloc(len ? len : 1);
    memcpy(pkt, data + 11, len);
    memcpy(copy, data + 11, len);

    int total = tp_vnet_split_begin(&s, &h, pkt, len, l2);
    if (total < 0) {
        require(total == TP_VNET_EMALFORMED || total == TP_VNET_ETOOMANY || total == TP_VNET_EUNSUPPORTED);
    } else {
        int got = 0, n;
        uint8_t *expect = pkt;
        require(total >= 1 && total <= TP_VNET_SPLIT_MAX_SEGS);
        while ((n = tp_vnet_split_next(&s, scratch, segs, chunk)) > 0) {
            require(n <= chunk);
            for (int i = 0; i < n; i++) {
                check_seg(&segs[i], pkt, len, l2);
                require(segs[i].data == expect || (got == 0 && i == 0));   /* payloads in order */
                expect = segs[i].data + segs[i].len;
            }
            got += n;
        }
        require(got == total);
        /* the one-call API agrees */
        int one = tp_vnet_split(&h, copy, len, l2, scratch, segs, TP_VNET_MAX_SEGS);
        require(one == (total > TP_VNET_MAX_SEGS ? TP_VNET_ETOOMANY : total));
    }
    free(pkt);
    free(copy);
    return 0;
}
