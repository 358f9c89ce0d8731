/* The TCP framing decoder (tp_frame_next, tp_frame_put_len) fed an
 * arbitrary byte stream in arbitrary chunks, the way the TCP endpoint feeds
 * it: reads of any size appended to a stream buffer, whole frames taken from
 * it, the rest moved to the front before the next read. The frames and where
 * the stream goes out of step must be the same as decoding the whole stream
 * at once, whatever the chunking.
 * Input: max_frame (2 bytes), slack (1 byte: buffer room beyond one frame),
 * chunking seed (4 bytes), then the stream. */
#include "fuzz_util.h"
#include "tp_frame.h"

#define MAX_FRAMES 70000

struct decoded {
    uint32_t n;                  /* frames */
    uint32_t off[MAX_FRAMES];    /* where each frame's bytes start in the stream */
    uint32_t len[MAX_FRAMES];
    int bad;                     /* stopped out of step */
    size_t bad_at;               /* at this stream offset */
};

static struct decoded whole, chunked;

/* The reference: the whole stream in one buffer. */
static void decode_whole(const uint8_t *s, size_t n, unsigned max_frame, struct decoded *out)
{
    size_t pos = 0;

    out->n = 0;
    out->bad = 0;
    out->bad_at = 0;
    for (;;) {
        uint32_t flen;
        enum tp_frame_status fs = tp_frame_next(s + pos, n - pos, max_frame, &flen);
        if (fs == TP_FRAME_NEED) {
            require(flen == 0);
            require(n - pos < TP_FRAME_HDR || n - pos - TP_FRAME_HDR < rd16(s + pos));
            return;
        }
        if (fs == TP_FRAME_BAD) {
            require(n - pos >= TP_FRAME_HDR);
            require(rd16(s + pos) == 0 || rd16(s + pos) > max_frame);
            out->bad = 1;
            out->bad_at = pos;
            return;
        }
        require(fs == TP_FRAME_OK && flen >= 1 && flen <= max_frame && flen == rd16(s + pos));
        require(TP_FRAME_HDR + (size_t)flen <= n - pos);
        require(out->n < MAX_FRAMES);
        out->off[out->n] = (uint32_t)(pos + TP_FRAME_HDR);
        out->len[out->n++] = flen;
        pos += TP_FRAME_HDR + flen;
    }
}

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* As tcp_read / tcp_frames / tcp_compact do, over a buffer of exactly
 * `size` bytes (ASan sees any access past it). */
static void decode_chunked(const uint8_t *s, size_t n, unsigned max_frame, size_t size, uint32_t seed,
                           struct decoded *out)
{
    uint8_t *buf = malloc(size);
    size_t len = 0, pos = 0, fed = 0, base = 0;   /* base: stream offset of buf[0] */
    uint32_t x = seed | 1;

    out->n = 0;
    out->bad = 0;
    out->bad_at = 0;
    for (;;) {
        uint32_t flen;
        enum tp_frame_status fs = tp_frame_next(buf + pos, len - pos, max_frame, &flen);
        if (fs == TP_FRAME_OK) {
            require(out->n < MAX_FRAMES);
            require(memcmp(buf + pos + TP_FRAME_HDR, s + base + pos + TP_FRAME_HDR, flen) == 0);
            out->off[out->n] = (uint32_t)(base + pos + TP_FRAME_HDR);
            out->len[out->n++] = flen;
            pos += TP_FRAME_HDR + flen;
            continue;
        }
        if (fs == TP_FRAME_BAD) {
            out->bad = 1;
            out->bad_at = base + pos;
            break;
        }
        if (fed == n)
            break;                                /* the stream ended inside a frame */
        memmove(buf, buf + pos, len - pos);      /* compact, then read more */
        len -= pos;
        base += pos;
        pos = 0;
        require(len < size);                      /* a whole frame always fits: no 0-byte read */
        size_t want = 1 + next_rand(&x) % (size - len);
        if (next_rand(&x) % 4 == 0)
            want = 1 + next_rand(&x) % 3;         /* often tiny reads: a length split in two */
        if (want > size - len)
            want = size - len;
        if (want > n - fed)
            want = n - fed;
        memcpy(buf + len, s + fed, want);
        len += want;
        fed += want;
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 7)
        return 0;
    unsigned max_frame = 1 + rd16(data) % TP_FRAME_MAX;
    size_t bufsize = TP_FRAME_HDR + max_frame + data[2];
    uint32_t seed = (uint32_t)data[3] << 24 | (uint32_t)data[4] << 16 | (uint32_t)data[5] << 8 | data[6];
    const uint8_t *s = data + 7;
    size_t n = size - 7;

    decode_whole(s, n, max_frame, &whole);
    decode_chunked(s, n, max_frame, bufsize, seed, &chunked);
    require(whole.n == chunked.n && whole.bad == chunked.bad);
    require(!whole.bad || whole.bad_at == chunked.bad_at);
    for (uint32_t i = 0; i < whole.n; i++)
        require(whole.off[i] == chunked.off[i] && whole.len[i] == chunked.len[i]);

    /* The writer's length field reads back. */
    uint8_t hdr[TP_FRAME_HDR + 1];
    uint32_t flen, len = 1 + (uint32_t)(seed % TP_FRAME_MAX);
    tp_frame_put_len(hdr, len);
    require(rd16(hdr) == len);
    require(tp_frame_next(hdr, TP_FRAME_HDR, TP_FRAME_MAX, &flen) == TP_FRAME_NEED);   /* no body yet */
    hdr[TP_FRAME_HDR] = 0;
    require(tp_frame_next(hdr, TP_FRAME_HDR + 1, TP_FRAME_MAX, &flen) == (len == 1 ? TP_FRAME_OK : TP_FRAME_NEED));
    return 0;
}
