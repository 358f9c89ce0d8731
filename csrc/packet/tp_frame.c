#include "tp_frame.h"

enum tp_frame_status tp_frame_next(const uint8_t *buf, size_t avail, unsigned max_frame, uint32_t *len)
{
    uint32_t flen;

    *len = 0;
    if (avail < TP_FRAME_HDR)
        return TP_FRAME_NEED;
    flen = ((uint32_t)buf[0] << 8) | buf[1];
    if (flen == 0 || flen > max_frame)
        return TP_FRAME_BAD;
    if (avail - TP_FRAME_HDR < flen)
        return TP_FRAME_NEED;
    *len = flen;
    return TP_FRAME_OK;
}

void tp_frame_put_len(uint8_t *hdr, uint32_t len)
{
    hdr[0] = (uint8_t)(len >> 8);
    hdr[1] = (uint8_t)len;
}
