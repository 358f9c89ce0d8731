/* simpletun's stream framing, decoded without sockets: each frame is a
 * 2-byte big-endian length followed by that many bytes. Pure functions over
 * a byte buffer (the TCP endpoint feeds it what it read; a fuzzer can feed
 * it anything). */
#ifndef TP_FRAME_H
#define TP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TP_FRAME_HDR 2              /* the length field */
#define TP_FRAME_MAX 65535          /* the largest length the field can hold */

enum tp_frame_status {
    TP_FRAME_BAD = -1,              /* length 0 or above max_frame: the stream is out of step */
    TP_FRAME_NEED = 0,              /* not a whole frame yet */
    TP_FRAME_OK = 1,                /* a frame of *len bytes at buf + TP_FRAME_HDR */
};

/* The frame at the start of buf[0..avail). */
enum tp_frame_status tp_frame_next(const uint8_t *buf, size_t avail, unsigned max_frame, uint32_t *len);

/* Write the length field of a frame of len bytes (len <= TP_FRAME_MAX). */
void tp_frame_put_len(uint8_t *hdr, uint32_t len);

#endif
