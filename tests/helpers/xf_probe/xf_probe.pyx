# cython: language_level=3
"""A test transform written in Cython against tunpump's public API only
(tunpump.pxd from tunpump.get_include()). Its mode, set by the capsule's
config and changed by control messages (one byte), says what it does:

  0 pass            everything passes
  1 overflow        to_endpoint packets claim a length past their tailroom
  2 underflow       to_endpoint packets start before their headroom
  3 drop            to_endpoint packets are dropped
  4 punt            every packet goes to Python (TO_PYTHON)
  5 grow            to_endpoint: a 32-byte header is prepended (headroom);
                    to_device: it is checked and stripped (else dropped)
  6 bad outcome     to_endpoint packets get outcome 9 (not an outcome)
  7 route 5         to_endpoint packets go to peer 5
  8 route 1         to_endpoint packets go to peer 1
  9 roam            to_device packets "authenticate" as peer `arg` and ask to
                    roam there (pkt->roam), then pass
 10 punt strangers  to_device packets from no configured peer (peer -1, with
                    UNKNOWN_SOURCES) go to Python; the rest pass
 11 roam outbound   to_endpoint packets ask to roam (not allowed there)
 12 roam and drop   as 9, but the packet is dropped (a keepalive)
 13 named drop      to_endpoint packets are dropped with drop_reason 2 ("beta")
 14 unnamed drop    to_endpoint packets are dropped with drop_reason 7 (it names 2)
 15 room in         to_device packets given any room are dropped with drop_reason 1
                    ("alpha"); the rest (no room: in place) grow a byte at the front
 16 gather copy     to_endpoint (for TUNPUMP_GATHER_TO_ENDPOINT): a packet not
                    handed as pieces (headroom or tailroom, no out, or out
                    smaller than head_len + len + both minimum rooms) is dropped
                    with drop_reason 1 ("alpha"); the rest are written into
                    out at TUNPUMP_MIN_HEADROOM (head, then data) behind the
                    32-byte header of mode 5, with head_len 0 (as encryption
                    would); to_device: as mode 5 (checked and stripped)
 17 gather leave head  to_endpoint: as 16 without the header, but head and
                    head_len are left as given: a packet in two pieces is
                    then neither as given nor in one piece (transform_overflow),
                    one in one piece leaves from out; to_device: pass

The capsule's config is [mode, arg]; a control message [mode] or [mode, arg].
Each capsule has an ops table of its own, its flags from the options, which
combine: TUNPUMP_NEEDS_SEGMENTS unless segments=False, and
unknown_sources=True, in_place=True, gather=True set
TUNPUMP_UNKNOWN_SOURCES, TUNPUMP_IN_PLACE_TO_DEVICE, TUNPUMP_GATHER_TO_ENDPOINT;
unknown_flag=True a bit this ABI does not know, abi_off_by_one=True the
next ABI version, bad_reasons=True a drop reason stats cannot show.

gathered() counts, over the module's life (reset_gathered() zeroes it), the
to_endpoint packets handed with an out area, in any mode: "one" in one piece
(head_len 0, head NULL), "two" in two pieces (head_len > 0, head set), "bad"
given otherwise (any room, or out_size below the minimum).
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint8_t, uint32_t
from cpython.pycapsule cimport PyCapsule_New, PyCapsule_GetPointer

from tunpump cimport (tunpump_pkt, tunpump_dir, tunpump_transform, tunpump_transform_ops,
                      TUNPUMP_TRANSFORM_ABI, TUNPUMP_TRANSFORM_CAPSULE, TUNPUMP_NEEDS_SEGMENTS,
                      TUNPUMP_UNKNOWN_SOURCES, TUNPUMP_IN_PLACE_TO_DEVICE, TUNPUMP_ALL_FLAGS, TUNPUMP_GATHER_TO_ENDPOINT,
                      TUNPUMP_MIN_HEADROOM, TUNPUMP_MIN_TAILROOM,
                      TUNPUMP_DIR_TO_ENDPOINT, TUNPUMP_PASS, TUNPUMP_DROP, TUNPUMP_TO_PYTHON)

DEF HDR = 32
cdef const char *MAGIC = b"tunpump-probe-header-32-bytes!!!"
HEADER = MAGIC[:HDR]   # what modes 5 and 16 put before a packet, for tests to look for

# Counters shared by every worker (relaxed atomics: workers run without the GIL).
cdef extern from *:
    """
    static unsigned long long xf_probe_gathered[3];
    #define XF_PROBE_COUNT(i) __atomic_fetch_add(&xf_probe_gathered[i], 1, __ATOMIC_RELAXED)
    #define XF_PROBE_READ(i) __atomic_load_n(&xf_probe_gathered[i], __ATOMIC_RELAXED)
    #define XF_PROBE_ZERO(i) __atomic_store_n(&xf_probe_gathered[i], 0, __ATOMIC_RELAXED)
    """
    void XF_PROBE_COUNT(int i) nogil
    unsigned long long XF_PROBE_READ(int i) nogil
    void XF_PROBE_ZERO(int i) nogil


def gathered():
    """The to_endpoint packets handed with an out area so far: {"one", "two", "bad"}."""
    return {"one": XF_PROBE_READ(0), "two": XF_PROBE_READ(1), "bad": XF_PROBE_READ(2)}


def reset_gathered():
    for i in range(3):
        XF_PROBE_ZERO(i)


cdef bint gather_ok(const tunpump_pkt *p) noexcept nogil:
    """Whether p came as TUNPUMP_GATHER_TO_ENDPOINT promises: its pieces,
    no room, and out of at least the minimum size."""
    cdef size_t need = <size_t>p.head_len + p.len + TUNPUMP_MIN_HEADROOM + TUNPUMP_MIN_TAILROOM
    return (p.headroom == 0 and p.tailroom == 0 and p.out != NULL and p.out_size >= need
            and (p.head_len == 0) == (p.head == NULL))


cdef void gather_copy(tunpump_pkt *p, bint magic, bint keep_head) noexcept nogil:
    """head then data into out at TUNPUMP_MIN_HEADROOM (behind MAGIC when
    magic), data / len set there; head_len 0 unless keep_head."""
    cdef uint8_t *at = p.out + TUNPUMP_MIN_HEADROOM
    cdef uint32_t total = p.head_len + p.len
    if p.head_len:
        memcpy(at, p.head, p.head_len)
    memcpy(at + p.head_len, p.data, p.len)
    if magic:
        at -= HDR
        total += HDR
        memcpy(at, MAGIC, HDR)
    p.data = at
    p.len = total
    if not keep_head:
        p.head = NULL
        p.head_len = 0


cdef struct probe_state:
    uint8_t mode
    uint8_t arg


cdef int probe_create(const void *config, size_t config_len, int queue, int nqueues, void **state) noexcept nogil:
    cdef probe_state *s = <probe_state *>malloc(sizeof(probe_state))
    if s == NULL:
        return -12
    s.mode = (<const uint8_t *>config)[0] if config_len else 0
    s.arg = (<const uint8_t *>config)[1] if config_len > 1 else 0
    state[0] = s
    return 0


cdef void probe_destroy(void *state) noexcept nogil:
    free(state)


cdef void probe_control(void *state, const uint8_t *msg, size_t length) noexcept nogil:
    if length:
        (<probe_state *>state).mode = msg[0]
    if length > 1:
        (<probe_state *>state).arg = msg[1]


cdef void probe_batch(void *state, tunpump_dir d, tunpump_pkt *pkts, unsigned n) noexcept nogil:
    cdef uint8_t mode = (<probe_state *>state).mode
    cdef uint8_t arg = (<probe_state *>state).arg
    cdef unsigned i
    cdef bint out = d == TUNPUMP_DIR_TO_ENDPOINT
    for i in range(n):
        if out and pkts[i].out != NULL:
            XF_PROBE_COUNT(2 if not gather_ok(&pkts[i]) else 1 if pkts[i].head_len else 0)
        if (mode == 16 or mode == 17) and out:
            if not gather_ok(&pkts[i]):
                pkts[i].outcome = TUNPUMP_DROP
                pkts[i].drop_reason = 1
            else:
                gather_copy(&pkts[i], mode == 16, mode == 17)
        elif mode == 17:
            continue
        elif (mode == 9 or mode == 12) and not out:
            pkts[i].peer = arg
            pkts[i].roam = 1
            if mode == 12:
                pkts[i].outcome = TUNPUMP_DROP
        elif mode == 15 and not out:
            if pkts[i].headroom or pkts[i].tailroom:
                pkts[i].outcome = TUNPUMP_DROP
                pkts[i].drop_reason = 1
            else:
                pkts[i].data -= 1
                pkts[i].len += 1
        elif mode == 10 and not out:
            if pkts[i].peer < 0:
                pkts[i].outcome = TUNPUMP_TO_PYTHON
        elif mode == 11 and out:
            pkts[i].roam = 1
        elif mode == 4:
            pkts[i].outcome = TUNPUMP_TO_PYTHON
        elif mode == 5 and out:
            if pkts[i].headroom < HDR:
                pkts[i].outcome = TUNPUMP_DROP
                continue
            pkts[i].data -= HDR
            pkts[i].len += HDR
            memcpy(pkts[i].data, MAGIC, HDR)
        elif mode == 5 or mode == 16:
            if pkts[i].len < HDR or memcmp(pkts[i].data, MAGIC, HDR) != 0:
                pkts[i].outcome = TUNPUMP_DROP
                continue
            pkts[i].data += HDR
            pkts[i].len -= HDR
        elif not out:
            continue
        elif mode == 1:
            pkts[i].len += pkts[i].tailroom + 1
        elif mode == 2:
            pkts[i].data -= pkts[i].headroom + 1
        elif mode == 3:
            pkts[i].outcome = TUNPUMP_DROP
        elif mode == 6:
            pkts[i].outcome = 9
        elif mode == 7:
            pkts[i].peer = 5
        elif mode == 8:
            pkts[i].peer = 1
        elif mode == 13:
            pkts[i].outcome = TUNPUMP_DROP
            pkts[i].drop_reason = 2
        elif mode == 14:
            pkts[i].outcome = TUNPUMP_DROP
            pkts[i].drop_reason = 7


cdef const char *REASONS[3]
REASONS[0] = b"alpha"
REASONS[1] = b"beta"
REASONS[2] = NULL

cdef const char *BAD_REASONS[2]   # not a name stats can show
BAD_REASONS[0] = b"Bad Reason"
BAD_REASONS[1] = NULL


cdef tunpump_transform_ops OPS
OPS.abi = TUNPUMP_TRANSFORM_ABI
OPS.flags = TUNPUMP_NEEDS_SEGMENTS
OPS.name = b"probe"
OPS.create = probe_create
OPS.destroy = probe_destroy
OPS.batch = probe_batch
OPS.control = probe_control
OPS.drop_reasons = REASONS


cdef void _free_transform(object capsule) noexcept:
    free(PyCapsule_GetPointer(capsule, TUNPUMP_TRANSFORM_CAPSULE))


cdef object _capsule(uint32_t abi, uint32_t flags, const char **reasons, uint8_t mode, uint8_t arg):
    """One block: the transform, an ops table of its own (OPS with this abi,
    flags and reasons), then the config [mode, arg]. The pump keeps the
    capsule, so the block, alive while it runs."""
    cdef tunpump_transform *t = <tunpump_transform *>malloc(
        sizeof(tunpump_transform) + sizeof(tunpump_transform_ops) + 2)
    if t == NULL:
        raise MemoryError()
    cdef tunpump_transform_ops *ops = <tunpump_transform_ops *>(t + 1)
    cdef uint8_t *cfg = <uint8_t *>(ops + 1)
    ops[0] = OPS
    ops.abi = abi
    ops.flags = flags
    ops.drop_reasons = reasons
    cfg[0] = mode
    cfg[1] = arg
    t.ops = ops
    t.config = <const void *>cfg
    t.config_len = 2
    return PyCapsule_New(t, TUNPUMP_TRANSFORM_CAPSULE, _free_transform)


class Probe:
    """A probe transform in mode `mode` (its capsule is made per pump)."""

    def __init__(self, mode=0, abi_off_by_one=False, segments=True, arg=0, unknown_sources=False,
                 bad_reasons=False, in_place=False, gather=False, unknown_flag=False):
        self.mode = mode
        self.bad_reasons = bad_reasons
        self.abi_off_by_one = abi_off_by_one
        self.segments = segments
        self.arg = arg
        self.unknown_sources = unknown_sources
        self.in_place = in_place
        self.gather = gather
        self.unknown_flag = unknown_flag

    def __tunpump_transform__(self):
        flags = TUNPUMP_NEEDS_SEGMENTS if self.segments else 0
        if self.unknown_sources:
            flags |= TUNPUMP_UNKNOWN_SOURCES
        if self.in_place:
            flags |= TUNPUMP_IN_PLACE_TO_DEVICE
        if self.gather:
            flags |= TUNPUMP_GATHER_TO_ENDPOINT
        if self.unknown_flag:   # the lowest bit this ABI does not know
            flags |= (TUNPUMP_ALL_FLAGS << 1) & ~TUNPUMP_ALL_FLAGS
        return _capsule(TUNPUMP_TRANSFORM_ABI + (1 if self.abi_off_by_one else 0), flags,
                        &BAD_REASONS[0] if self.bad_reasons else &REASONS[0], self.mode, self.arg)
