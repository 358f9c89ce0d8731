# cython: language_level=3
"""The bench's C tools, apart from the library's binding (tunpump._core):
the UDP load generator and sink (csrc/tools/tp_traffic.c) and loops that run a
C kernel many times without returning to Python, for micro-benchmarks
(benchmarks/test_kernels.py). Errors: OSError(errno, "<call>: <reason>")."""

from libc.errno cimport EEXIST
from libc.stdint cimport int32_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, strerror

from tunpump._capi cimport *

cdef extern from "tp_traffic.h":
    struct tp_traffic_result:
        uint64_t packets
        uint64_t bytes
        uint64_t calls
        double seconds
    int tp_udp_source(int family, const unsigned char *addr, unsigned port, unsigned nports, unsigned size,
                      uint64_t count, double seconds, tp_traffic_result *out) nogil
    int tp_udp_sink(int fd, double seconds, double idle, tp_traffic_result *out) nogil

# _ring_loop's ring: capacity (a power of two) and record size in bytes.
cdef enum:
    RING_CAPACITY = 4096
    RING_RECORD = 128


cdef int _check(int rc, str call) except -1:
    if rc < 0:
        raise OSError(-rc, f"{call}: {strerror(-rc).decode()}")
    return rc


include "_packet.pxi"


# ---- traffic -----------------------------------------------------------------

cdef dict _traffic(tp_traffic_result *r):
    return {"packets": r.packets, "bytes": r.bytes, "calls": r.calls, "seconds": r.seconds}


def udp_source(int family, bytes addr, unsigned port, unsigned size, uint64_t count, double seconds,
               unsigned nports=1):
    """Send up to count datagrams of size bytes for at most seconds (GIL
    released); with nports > 1 they go to nports ports in turn (many flows)."""
    cdef tp_traffic_result r
    cdef const unsigned char *a = <const unsigned char *><const char *>addr
    cdef int rc
    if len(addr) not in (4, 16):
        raise ValueError(f"addr: {len(addr)} bytes, expected 4 (IPv4) or 16 (IPv6)")
    with nogil:
        rc = tp_udp_source(family, a, port, nports, size, count, seconds, &r)
    _check(rc, "udp source")
    return _traffic(&r)


def udp_sink(int fd, double seconds, double idle):
    """Count datagrams on a bound UDP socket (GIL released)."""
    cdef tp_traffic_result r
    cdef int rc
    with nogil:
        rc = tp_udp_sink(fd, seconds, idle, &r)
    _check(rc, "udp sink")
    return _traffic(&r)


# ---- kernel loops --------------------------------------------------------------

def kernel_loop(str kind, object arg, int iterations, bytes vnet_hdr=None):
    """Run one C kernel `iterations` times without returning to Python, for
    micro-benchmarks: kind "checksum" (arg: bytes), "split" (arg: packet,
    with vnet_hdr), "coalesce" (arg: list of packets; their headers are
    restored before each round, since coalescing rewrites them in place),
    "flow" (arg: list of packets) or "ring" (arg: records per round)."""
    if iterations < 1:
        raise ValueError(f"iterations={iterations}: expected at least 1")
    if kind == "checksum":
        return _checksum_loop(bytes(arg), iterations)
    if kind == "split":
        return _split_loop(bytes(arg), vnet_hdr, iterations)
    if kind == "coalesce":
        return _coalesce_loop(list(arg), iterations)
    if kind == "flow":
        # parse + hash + lookup of each packet's flow in a table holding them all
        return _flow_loop(list(arg), iterations)
    if kind == "ring":
        return _ring_loop(int(arg), iterations)
    raise ValueError(f"kind={kind!r}: expected 'checksum', 'split', 'coalesce', 'flow' or 'ring'")


cdef uint64_t _checksum_loop(bytes data, int iterations) except? 0:
    cdef bytearray buf = bytearray(data)
    cdef unsigned char[::1] v
    cdef uint64_t acc = 0
    cdef int i
    if not buf:
        raise ValueError("arg: empty")
    v = buf
    for i in range(iterations):
        acc += tp_csum_fold(tp_csum_add(0, &v[0], len(buf)))
    return acc


cdef int _split_loop(bytes packet, bytes vnet_hdr, int iterations) except? -100:
    cdef tp_vnet_hdr h
    cdef tp_seg segs[TP_VNET_MAX_SEGS]
    cdef bytearray scratch = bytearray(TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM)
    cdef unsigned char[::1] sv = scratch
    cdef bytearray buf = bytearray(packet)
    cdef unsigned char[::1] v
    cdef int i, rc = 0
    if vnet_hdr is None or len(vnet_hdr) < <Py_ssize_t>sizeof(virtio_net_hdr):
        raise ValueError(f"vnet_hdr: kind 'split' needs a vnet header of at least "
                         f"{sizeof(virtio_net_hdr)} bytes, got "
                         f"{'none' if vnet_hdr is None else len(vnet_hdr)}")
    if not buf:
        raise ValueError("arg: empty packet")
    v = buf
    tp_vnet_hdr_read(<const unsigned char *><const char *>vnet_hdr, &h)
    for i in range(iterations):
        rc = tp_vnet_split(&h, &v[0], len(buf), 0, &sv[0], segs, TP_VNET_MAX_SEGS)
    return rc


cdef int _coalesce_loop(list packets, int iterations) except? -100:
    cdef int n = len(packets), i, k, rc = 0
    cdef unsigned char[::1] v
    cdef tp_gro_pkt *pk
    cdef int *nxt
    cdef uint32_t *skip
    cdef tp_gro_unit *units
    if n == 0:
        raise ValueError("arg: no packets")
    bufs = [bytearray(p) for p in packets]
    saved = [bytes(p[:TP_VNET_HDR_ROOM]) for p in packets]
    for k in range(n):
        if not bufs[k]:
            raise ValueError(f"arg[{k}]: empty")
    pk = <tp_gro_pkt *>malloc(sizeof(tp_gro_pkt) * n)
    nxt = <int *>malloc(sizeof(int) * n)
    skip = <uint32_t *>malloc(sizeof(uint32_t) * n)
    units = <tp_gro_unit *>malloc(sizeof(tp_gro_unit) * n)
    try:
        if pk == NULL or nxt == NULL or skip == NULL or units == NULL:
            raise MemoryError()
        for k in range(n):
            v = bufs[k]
            pk[k].data = &v[0]
            pk[k].len = len(bufs[k])
        for i in range(iterations):
            for k in range(n):
                memcpy(pk[k].data, <const char *>saved[k], len(saved[k]))
            rc = tp_gro_coalesce(pk, n, 0, TP_GRO_TCP | TP_GRO_UDP, nxt, skip, units)
    finally:
        free(pk)
        free(nxt)
        free(skip)
        free(units)
    return rc


def _flow_loop(list packets, int iterations):
    """Look every packet's flow up `iterations` times in a table that holds
    them all (what a worker does per packet); returns the hits."""
    cdef int n = len(packets), i, k, idx
    cdef int32_t ev
    cdef tp_flow_table t
    cdef tp_flow_key key
    cdef tp_flow old
    cdef unsigned char[::1] v
    cdef uint64_t hits = 0
    cdef tp_gro_pkt *pk = <tp_gro_pkt *>malloc(sizeof(tp_gro_pkt) * max(1, n))
    if pk == NULL:
        raise MemoryError()
    if tp_flow_table_init(&t, max(1, n)) < 0:
        free(pk)
        raise MemoryError()
    bufs = [bytearray(p) for p in packets]
    try:
        for k in range(n):
            if not bufs[k]:
                raise ValueError(f"packets[{k}]: empty")
            v = bufs[k]
            pk[k].data = &v[0]
            pk[k].len = len(bufs[k])
            tp_flow_parse(pk[k].data, pk[k].len, 0, &key)
            if tp_flow_lookup(&t, &key, tp_flow_hash(&key)) < 0:
                tp_flow_insert(&t, &key, tp_flow_hash(&key), 0, &old, &ev)
        with nogil:
            for i in range(iterations):
                for k in range(n):
                    tp_flow_parse(pk[k].data, pk[k].len, 0, &key)
                    idx = tp_flow_lookup(&t, &key, tp_flow_hash(&key))
                    if idx >= 0:
                        tp_flow_touch(&t, idx)
                        hits += 1
    finally:
        tp_flow_table_free(&t)
        free(pk)
    return hits


def _ring_loop(int records, int iterations):
    """Push and pop `records` 128-byte records through an SPSC ring,
    `iterations` times, on one thread; returns the records moved."""
    cdef tp_ring r
    cdef int i, k
    cdef uint64_t moved = 0
    cdef void *slot
    if records < 1 or records > RING_CAPACITY:
        raise ValueError(f"records={records}: expected 1 to {RING_CAPACITY}")
    if tp_ring_init(&r, RING_CAPACITY, RING_RECORD) < 0:
        raise MemoryError()
    try:
        for i in range(iterations):
            for k in range(records):
                slot = tp_ring_reserve(&r)
                (<unsigned char *>slot)[0] = <unsigned char>k
                tp_ring_publish(&r)
            for k in range(records):
                slot = tp_ring_peek(&r)
                moved += (<unsigned char *>slot)[0] == <unsigned char>k
                tp_ring_release(&r)
    finally:
        tp_ring_free(&r)
    return moved


# ---- the AEAD transform's core (csrc/transform/tp_aead.h) ---------------------

# (declared in tunpump/_capi.pxd)

AEAD_CIPHERS = {"aes-256-gcm": TP_AEAD_AES_256_GCM, "chacha20-poly1305": TP_AEAD_CHACHA20_POLY1305}
AEAD_HEADER_LEN = TP_AEAD_HEADER_LEN
AEAD_TAG_LEN = TP_AEAD_TAG_LEN
AEAD_DROP_REASONS = tuple(tp_aead_reason_name(r).decode() for r in range(1, TP_AEAD_NREASONS))


def aead_available():
    """True when this build has OpenSSL 3 libcrypto (the AEAD works)."""
    return tp_aead_available() == 1


cdef class Aead:
    """Aead(cipher, tx_sender, rx_sender, counter_start=None, grace_ns=0):
    one worker's AEAD state (csrc/transform/tp_aead.h), for tests and
    tools: seal and open single datagrams from Python. The tunnel's data path
    uses the same C state through the transform hook, not this class."""
    cdef tp_aead *st

    def __init__(self, str cipher, uint32_t tx_sender, uint32_t rx_sender, counter_start=None,
                 uint64_t grace_ns=0):
        cdef tp_aead_cfg cfg
        cdef int rc
        if not tp_aead_available():
            raise RuntimeError(tp_aead_unavailable_reason().decode())
        if cipher not in AEAD_CIPHERS:
            raise ValueError(f"cipher={cipher!r}: expected one of {', '.join(AEAD_CIPHERS)}")
        cfg.cipher = AEAD_CIPHERS[cipher]
        cfg.tx_sender = tx_sender
        cfg.rx_sender = rx_sender
        cfg.counter_start = tp_aead_counter_start_now() if counter_start is None else counter_start
        cfg.grace_ns = grace_ns
        rc = tp_aead_new(&cfg, &self.st)
        _check(rc, "tp_aead_new")

    def __dealloc__(self):
        tp_aead_free(self.st)

    def set_key(self, int key_id, bytes key, uint64_t now_ns=0):
        """Install key key_id (0-255, 32 bytes): sending switches to it, the
        current key stays accepted for grace_ns after now_ns."""
        if not 0 <= key_id <= 255:
            raise ValueError(f"key_id={key_id}: expected 0 to 255")
        if len(key) != TP_AEAD_KEY_LEN:
            raise ValueError(f"key: {len(key)} bytes, expected {TP_AEAD_KEY_LEN}")
        rc = tp_aead_set_key(self.st, <unsigned char>key_id, <const unsigned char *><const char *>key, now_ns)
        if rc == -EEXIST:
            raise ValueError(f"key_id={key_id}: already the current key (a new key needs a new id)")
        _check(rc, "tp_aead_set_key")

    def tick(self, uint64_t now_ns):
        """Forget the previous key once its grace period is over."""
        tp_aead_tick(self.st, now_ns)

    @property
    def next_counter(self):
        return tp_aead_next_counter(self.st)

    def seal(self, bytes plain):
        """The datagram carrying plain: header + ciphertext + tag."""
        cdef Py_ssize_t n = len(plain)
        cdef bytearray buf
        cdef unsigned char[::1] v
        cdef unsigned char *out
        cdef uint32_t out_len
        if n > TP_AEAD_MAX_PLAIN:
            raise ValueError(f"plain: {n} bytes, at most {TP_AEAD_MAX_PLAIN}")
        buf = bytearray(TP_AEAD_HEADER_LEN) + plain + bytearray(TP_AEAD_TAG_LEN)
        v = buf
        rc = tp_aead_seal(self.st, &v[TP_AEAD_HEADER_LEN], <uint32_t>n, TP_AEAD_HEADER_LEN, TP_AEAD_TAG_LEN,
                          &out, &out_len)
        _check(rc, "tp_aead_seal")
        return bytes(buf)

    def open(self, bytes datagram):
        """(reason, plaintext): ("ok", bytes) when accepted, else the drop
        reason's name and None."""
        cdef bytearray buf = bytearray(datagram) + bytearray(1)   # never empty: &v[0] exists
        cdef unsigned char[::1] v = buf
        cdef unsigned char *out
        cdef uint32_t out_len
        cdef Py_ssize_t n = len(datagram)
        if n > 0xFFFFFFFF:
            return "garbage", None
        r = tp_aead_open(self.st, &v[0], <uint32_t>n, &out, &out_len)
        if r != TP_AEAD_OK:
            return tp_aead_reason_name(r).decode(), None
        return "ok", bytes(buf[TP_AEAD_HEADER_LEN:TP_AEAD_HEADER_LEN + out_len])
