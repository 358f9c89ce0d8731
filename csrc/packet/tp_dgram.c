#include "tp_dgram.h"

struct tp_dgram tp_dgram_of(uint32_t len, int gro_size)
{
    struct tp_dgram g = { len, len, 1 };

    if (gro_size > 0 && (uint32_t)gro_size < len) {
        g.seg = (uint32_t)gro_size;
        g.nseg = len / g.seg + (len % g.seg != 0);   /* no len + seg - 1: it could wrap */
    }
    return g;
}

uint32_t tp_dgram_cut(const struct tp_dgram *g, struct tp_dgram_seg *out, uint32_t room)
{
    uint32_t n = 0, off = 0;

    if (g->len == 0 || g->seg == 0)
        return 0;
    while (off < g->len && n < room) {
        uint32_t left = g->len - off;
        out[n].off = off;
        out[n].len = left < g->seg ? left : g->seg;
        off += out[n++].len;
    }
    return n;
}
