/* The simpletun framing decoder (csrc/packet/tp_frame.c) over byte buffers,
 * without sockets: a table of streams and what each must decode to. Built
 * and run by tests/test_frame_decoder.py (with ASan + UBSan when the
 * compiler has them). Exit status 0 when every case holds. */
#include "tp_frame.h"

#include <stdio.h>
#include <string.h>

struct frame_case {
    const char *name;
    const uint8_t *buf;
    size_t len;
    unsigned max_frame;
    int nframes;                 /* whole frames before the stream stops */
    enum tp_frame_status last;   /* how it stops */
    uint32_t lens[4];
};

static const uint8_t two[] = { 0, 3, 'a', 'b', 'c', 0, 1, 'z' };
static const uint8_t partial[] = { 0, 5, 'a', 'b' };
static const uint8_t zero[] = { 0, 0, 'x' };
static const uint8_t big[] = { 0xff, 0xff };
static const uint8_t one_byte[] = { 0 };
static const uint8_t then_bad[] = { 0, 1, 'q', 0, 0 };
static const uint8_t max_ok[] = { 0x07, 0xd0 };   /* 2000: whole frame absent */

static const struct frame_case cases[] = {
    { "empty", NULL, 0, 65535, 0, TP_FRAME_NEED, { 0 } },
    { "one byte of length", one_byte, 1, 65535, 0, TP_FRAME_NEED, { 0 } },
    { "two frames", two, sizeof(two), 65535, 2, TP_FRAME_NEED, { 3, 1 } },
    { "partial frame", partial, sizeof(partial), 65535, 0, TP_FRAME_NEED, { 0 } },
    { "zero length", zero, sizeof(zero), 65535, 0, TP_FRAME_BAD, { 0 } },
    { "above max_frame", big, sizeof(big), 2000, 0, TP_FRAME_BAD, { 0 } },
    { "max_frame itself waits", max_ok, sizeof(max_ok), 2000, 0, TP_FRAME_NEED, { 0 } },
    { "good then bad", then_bad, sizeof(then_bad), 65535, 1, TP_FRAME_BAD, { 1 } },
    { "smaller max_frame", two, sizeof(two), 2, 0, TP_FRAME_BAD, { 0 } },
};

static int run_case(const struct frame_case *c)
{
    size_t pos = 0;
    int n = 0;
    enum tp_frame_status s;
    uint32_t len;

    for (;;) {
        s = tp_frame_next(c->buf ? c->buf + pos : NULL, c->len - pos, c->max_frame, &len);
        if (s != TP_FRAME_OK)
            break;
        if (n >= 4 || len != c->lens[n] || pos + TP_FRAME_HDR + len > c->len) {
            printf("FAIL %s: frame %d has length %u\n", c->name, n, len);
            return 1;
        }
        pos += TP_FRAME_HDR + len;
        n++;
    }
    if (n != c->nframes || s != c->last || len != 0) {
        printf("FAIL %s: %d frames then %d (want %d then %d)\n", c->name, n, s, c->nframes, c->last);
        return 1;
    }
    return 0;
}

/* Every prefix of every case: never reads past avail, never claims a frame
 * longer than what is there. */
static int run_prefixes(const struct frame_case *c)
{
    for (size_t cut = 0; cut <= c->len; cut++) {
        uint32_t len;
        enum tp_frame_status s = tp_frame_next(c->buf, cut, c->max_frame, &len);
        if (s == TP_FRAME_OK && TP_FRAME_HDR + (size_t)len > cut) {
            printf("FAIL %s: prefix %zu gives a frame of %u\n", c->name, cut, len);
            return 1;
        }
    }
    return 0;
}

static int run_put_len(void)
{
    uint8_t hdr[TP_FRAME_HDR];
    uint32_t len;
    uint8_t buf[TP_FRAME_HDR + 300];

    tp_frame_put_len(hdr, 0x1234);
    if (hdr[0] != 0x12 || hdr[1] != 0x34) {
        printf("FAIL put_len\n");
        return 1;
    }
    memset(buf, 'x', sizeof(buf));
    tp_frame_put_len(buf, 300);
    if (tp_frame_next(buf, sizeof(buf), 65535, &len) != TP_FRAME_OK || len != 300) {
        printf("FAIL put_len round trip\n");
        return 1;
    }
    return 0;
}

int main(void)
{
    int bad = run_put_len();

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        bad += run_case(&cases[i]) + run_prefixes(&cases[i]);
    printf("%s\n", bad ? "FAILED" : "ok");
    return bad != 0;
}
