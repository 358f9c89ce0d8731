/* fuzz_wgdata: wgdata's data path (batch and control) on fuzzer-chosen
 * input, without Python or tunpump: two workers' states A and B hold one
 * session with each other (A the initiator, B the responder, whose session
 * waits as `next`), and the input is a list of operations
 *     op | length | bytes...
 *   op & 3 == 0: the bytes as a datagram into B (endpoint -> device)
 *   op & 3 == 1: an inner IPv4/IPv6 packet built from the bytes, out of A
 *                (device -> endpoint) and, when it passes, into B; op's
 *                bits pick the family, the peer, a wrong source, a flipped
 *                byte, or an empty packet (a keepalive)
 *   op & 3 == 2: the bytes as a control message to B
 *   op & 3 == 3: the last datagram A sealed, into B again (a replay)
 * Invariants: every packet stays inside its room; what B passes is an IP
 * packet whose length fits; a datagram A sealed that reaches B unchanged
 * never fails authentication while the keys are the ones installed; a
 * replay never passes.
 *
 * Build (tests/test_wireguard.py does, with gcc, ASan and UBSan):
 *   gcc -DWGDATA_NO_PYTHON -I $(python -c 'import tunpump; print(tunpump.get_include())') \
 *       -I tests/fuzz fuzz_wgdata.c tests/fuzz/driver.c -lcrypto
 * or with clang -fsanitize=fuzzer for a libFuzzer campaign. */
#define WGDATA_NO_PYTHON
#include "wgdata.c"

#include "fuzz_require.h"

#define ROOM 64
#define AREA 2048
#define SLOT (ROOM + AREA + ROOM)

static void put_allowed(struct wg_cfg *c, int peer, int fam, int plen, const char *addr16)
{
    struct wg_allowed *a = &c->allowed[c->nallowed++];

    a->peer = (uint8_t)peer, a->family = (uint8_t)fam, a->plen = (uint8_t)plen;
    memcpy(a->addr, addr16, 16);
}

/* A: peer 0 is B (198.18.31.2, fd00:31::2), peer 1 (198.18.40.0/24) has no session.
 * B: peer 0 is A (198.18.31.1, fd00:31::1). */
static void blobs(struct wg_blob *a, struct wg_blob *b)
{
    static const char v4a[16] = { 198, 18, 31, 1 }, v4b[16] = { 198, 18, 31, 2 }, v4c[16] = { 198, 18, 40, 0 };
    static const char v6a[16] = { 0xfd, 0, 0, 0x31, [15] = 1 }, v6b[16] = { 0xfd, 0, 0, 0x31, [15] = 2 };

    memset(a, 0, sizeof(*a));
    memset(b, 0, sizeof(*b));
    for (struct wg_blob *x = a; x; x = x == a ? b : NULL) {
        x->cfg.mtu = 1420;
        x->cfg.reject_ns = UINT64_MAX / 2;
        x->cfg.reject_msgs = UINT64_MAX - 8192;
    }
    a->cfg.npeers = 2;
    b->cfg.npeers = 1;
    put_allowed(&a->cfg, 0, 4, 32, v4b);
    put_allowed(&a->cfg, 0, 6, 128, v6b);
    put_allowed(&a->cfg, 1, 4, 24, v4c);
    put_allowed(&b->cfg, 0, 4, 32, v4a);
    put_allowed(&b->cfg, 0, 6, 128, v6a);
}

static void install_msg(void *st, int initiator, uint32_t local, uint32_t remote, uint8_t ks, uint8_t kr)
{
    uint8_t m[76] = { 'I', 0, (uint8_t)initiator };

    put32le(m + 4, local);
    put32le(m + 8, remote);
    memset(m + 12, ks, 32);
    memset(m + 44, kr, 32);
    wg_control(st, m, sizeof(m));
}

/* One packet through one direction of st: device -> endpoint in a slot
 * with room around it; endpoint -> device where it lies with no room, as
 * tunpump hands it over (TUNPUMP_IN_PLACE_TO_DEVICE): a buffer of exactly
 * its size, so ASan sees any write outside it. */
static struct tunpump_pkt run(void *st, enum tunpump_dir dir, uint8_t *slot, const uint8_t *data, uint32_t len,
                              int16_t peer)
{
    int in = dir == TUNPUMP_DIR_TO_DEVICE;
    uint8_t *lo = in ? malloc(len ? len : 1) : slot, *hi = in ? lo + len : slot + SLOT;
    struct tunpump_pkt p = { .data = in ? lo : slot + ROOM, .len = len, .headroom = in ? 0 : ROOM,
                             .tailroom = in ? 0 : SLOT - ROOM - len, .peer = peer };

    require(lo != NULL);
    memmove(p.data, data, len);
    wg_batch(st, dir, &p, 1);
    require(p.outcome <= TUNPUMP_TO_PYTHON && p.drop_reason <= R_N);
    require(p.outcome == TUNPUMP_DROP || !p.drop_reason);
    /* roam only for an authenticated datagram, naming a configured peer */
    require(!p.roam || (in && p.peer >= 0 && (uint32_t)p.peer < ((struct wg_state *)st)->cfg->npeers));
    if (p.outcome != TUNPUMP_DROP) {
        require(p.data >= lo && p.data <= hi && p.len <= (uint32_t)(hi - p.data));
        if (in && p.outcome == TUNPUMP_PASS)
            require(p.len >= 20 && (p.data[0] >> 4 == 4 || p.data[0] >> 4 == 6));
    }
    if (in) {
        free(lo);
        p.data = NULL;   /* callers read only the outcome of this direction */
    }
    return p;
}

/* An inner packet from the fuzzer's bytes: family, addresses and length
 * fields right (op's bits choose), the rest as given. */
static uint32_t inner_packet(uint8_t op, const uint8_t *d, uint32_t n, uint8_t *out)
{
    int v6 = op & 4, far = op & 8, spoof = op & 64;
    uint32_t hl = v6 ? 40 : 20, len = hl + n;

    memset(out, 0, hl);
    memcpy(out + hl, d, n);
    if (v6) {
        out[0] = 0x60, out[4] = (uint8_t)(n >> 8), out[5] = (uint8_t)n, out[6] = 17;
        out[8] = 0xfd, out[11] = 0x31, out[23] = spoof ? 9 : 1;
        out[24] = 0xfd, out[27] = 0x31, out[39] = 2;
    } else {
        out[0] = 0x45, out[2] = (uint8_t)(len >> 8), out[3] = (uint8_t)len, out[9] = 17;
        out[12] = 198, out[13] = 18, out[14] = 31, out[15] = spoof ? 9 : 1;
        out[16] = 198, out[17] = 18, out[18] = far ? 40 : 31, out[19] = 2;
    }
    return len;
}

static struct wg_blob ba, bb;   /* file scope: a test can read B's counters after a run */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t slot[SLOT], pkt[AREA], last[AREA];
    uint32_t last_len = 0;
    void *a = NULL, *b = NULL;
    int keys_intact = 1;

    blobs(&ba, &bb);
    require(wg_create(&ba, sizeof(ba), 0, 1, &a) == 0 && wg_create(&bb, sizeof(bb), 0, 1, &b) == 0);
    install_msg(a, 1, 1, 2, 0x11, 0x22);
    install_msg(b, 0, 2, 1, 0x22, 0x11);
    while (size >= 2) {
        uint8_t op = data[0];
        uint32_t n = data[1] * ((op & 3) == 1 ? 6u : 1u);
        data += 2, size -= 2;
        if (n > size)
            n = (uint32_t)size;
        if ((op & 3) == 0) {
            run(b, TUNPUMP_DIR_TO_DEVICE, slot, data, n, 0);
        } else if ((op & 3) == 1) {
            uint32_t len = op & 32 ? 0 : inner_packet(op, data, n > AREA - 40 ? AREA - 40 : n, pkt);   /* 0: a keepalive */
            uint64_t auth = bb.sh.drops[R_AUTH];
            struct tunpump_pkt p;
            p = run(a, TUNPUMP_DIR_TO_ENDPOINT, slot, pkt, len, 0);
            if (p.outcome == TUNPUMP_PASS) {
                require(p.len >= 32 && ((p.len - 32) % 16 == 0 || p.len - 32 > 1420));
                memcpy(pkt, p.data, p.len);
                if (!(op & 16)) {   /* delivered as sealed: a later copy of it is a replay */
                    memcpy(last, p.data, p.len);
                    last_len = p.len;
                }
                if (op & 16 && n)
                    pkt[data[0] % p.len] ^= (uint8_t)(1 << (data[n - 1] & 7));
                run(b, TUNPUMP_DIR_TO_DEVICE, slot, pkt, p.len, 0);
                if (!(op & 16) && keys_intact)
                    require(bb.sh.drops[R_AUTH] == auth);
            }
        } else if ((op & 3) == 2) {
            wg_control(b, data, n);
            keys_intact = 0;
        } else if (last_len && keys_intact) {
            require(run(b, TUNPUMP_DIR_TO_DEVICE, slot, last, last_len, 0).outcome != TUNPUMP_PASS);
        }
        data += n, size -= n;
    }
    wg_destroy(a);
    wg_destroy(b);
    return 0;
}
