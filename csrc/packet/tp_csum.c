#include "tp_csum.h"

uint64_t tp_csum_add(uint64_t sum, const void *data, size_t len)
{
    const uint8_t *p = data;

    /* 32-bit words into a 64-bit accumulator: no carry handling in the loop. */
    while (len >= 16) {
        uint32_t a, b, c, d;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        memcpy(&c, p + 8, 4);
        memcpy(&d, p + 12, 4);
        sum += (uint64_t)a + b + c + d;
        p += 16;
        len -= 16;
    }
    while (len >= 4) {
        uint32_t a;
        memcpy(&a, p, 4);
        sum += a;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t a;
        memcpy(&a, p, 2);
        sum += a;
        p += 2;
        len -= 2;
    }
    if (len) {
        uint8_t last[2] = { p[0], 0 };   /* pad the odd byte on the right */
        uint16_t a;
        memcpy(&a, last, 2);
        sum += a;
    }
    return sum;
}

uint16_t tp_csum_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}
