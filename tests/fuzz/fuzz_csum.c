/* The checksum helpers (tp_csum_add, tp_csum_fold) against a plain
 * byte-by-byte reference, at any alignment and cut into pieces at even
 * offsets. Input: two bytes choosing the cut and the alignment, then data. */
#include "fuzz_util.h"
#include "tp_vnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t len = size - 2, cut = len ? ((size_t)rd16(data) % (len + 1)) & ~(size_t)1 : 0;
    uint8_t *buf = malloc(len + 8);
    size_t align = data[1] % 8;
    memcpy(buf + align, data + 2, len);
    const uint8_t *p = buf + align;

    uint64_t seed = (uint64_t)data[1] << 40;   /* a running sum carried in, as callers do */
    uint16_t got = tp_csum_fold(tp_csum_add(tp_csum_add(seed, p, cut), p + cut, len - cut));
    uint16_t whole = tp_csum_fold(tp_csum_add(seed, p, len));
    require(got == whole);
    uint8_t b[2];
    uint16_t c = (uint16_t)~tp_csum_fold(tp_csum_add(0, p, len));
    memcpy(b, &c, 2);
    uint16_t want = (uint16_t)~ref_fold(ref_sum(0, p, len));
    require(rd16(b) == want);
    free(buf);
    return 0;
}
