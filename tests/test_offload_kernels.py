"""GSO split and GRO coalesce (csrc/packet/tp_vnet.c) on hand-built packets, checked
against the independent checksum in tests/packets.py."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from packets import (complete_partial, csum, parse_vnet, tcp_packet, udp_packet, verify_l4_checksum,
                     vnet_hdr)
from tunpump import _core

NEEDS_CSUM, TCPV4, UDP_L4, TCPV6 = 1, 1, 5, 4
V4 = ("198.18.0.1", "198.18.0.2")
V6 = ("fd00::1", "fd00::2")
TS_OPT = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 2000)  # NOP NOP timestamps


def l3(pkt):
    return 20 if pkt[0] >> 4 == 4 else 40


def tcp_fields(pkt):
    o = l3(pkt)
    sport, dport, seq, ack, doff, flags = struct.unpack("!HHIIBB", pkt[o:o + 14])
    return {"seq": seq, "ack": ack, "flags": flags, "thl": (doff >> 4) * 4, "off": o}


def super_tcp(addrs, payload, flags=0x18, options=b"", seq=1000, ident=7):
    return tcp_packet(*addrs, 40000, 5201, seq, payload, flags=flags, options=options, ident=ident)


def gso_hdr(pkt, mss, gso):
    o = l3(pkt)
    thl = tcp_fields(pkt)["thl"] if gso != UDP_L4 else 8
    return vnet_hdr(NEEDS_CSUM, gso, o + thl, mss, o, 16 if gso != UDP_L4 else 6)


def test_checksum_matches_reference():
    for data in (b"", b"\x01", b"\x01\x02\x03", bytes(range(256)) * 3 + b"\x07"):
        assert _core.checksum(data) == csum(data)


@pytest.mark.parametrize("addrs,gso", [(V4, TCPV4), (V6, TCPV6)], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("options", [b"", TS_OPT], ids=["no-opts", "timestamps"])
@pytest.mark.parametrize("size,mss", [(1000, 1000), (1001, 1000), (2000, 1000), (65000 - 60, 1448), (5, 1)])
def test_tcp_split(addrs, gso, options, size, mss):
    payload = bytes((i * 7) & 0xFF for i in range(size))
    sp = super_tcp(addrs, payload, flags=0x10 | 0x08 | 0x01 | 0x80, options=options)  # ACK PSH FIN CWR
    if size // mss > 64:
        with pytest.raises(ValueError, match="too many"):
            _core.vnet_split(gso_hdr(sp, mss, gso), sp)
        return
    segs = _core.vnet_split(gso_hdr(sp, mss, gso), sp)
    assert len(segs) == -(-size // mss)
    got = b""
    for i, s in enumerate(segs):
        f = tcp_fields(s)
        plen = len(s) - f["off"] - f["thl"]
        assert plen == (mss if i < len(segs) - 1 else size - mss * (len(segs) - 1))
        assert f["seq"] == 1000 + i * mss
        assert bool(f["flags"] & 0x80) == (i == 0)                 # CWR on the first only
        assert bool(f["flags"] & 0x09) == (i == len(segs) - 1)     # FIN, PSH on the last only
        assert verify_l4_checksum(s)
        if addrs is V4:
            assert csum(s[:20]) == 0
            assert struct.unpack("!H", s[2:4])[0] == len(s)
            assert struct.unpack("!H", s[4:6])[0] == 7 + i          # IP ID increments
        else:
            assert struct.unpack("!H", s[4:6])[0] == len(s) - 40
        assert s[f["off"] + 20:f["off"] + f["thl"]] == options
        got += s[f["off"] + f["thl"]:]
    assert got == payload


@pytest.mark.parametrize("addrs", [V4, V6], ids=["ipv4", "ipv6"])
def test_udp_split(addrs):
    payload = bytes(range(250)) * 20  # 5000 bytes
    sp = udp_packet(*addrs, 7000, 7001, payload, ident=3)
    segs = _core.vnet_split(gso_hdr(sp, 1200, UDP_L4), sp)
    assert len(segs) == 5
    o = l3(sp)
    for i, s in enumerate(segs):
        assert verify_l4_checksum(s)
        assert struct.unpack("!H", s[o + 4:o + 6])[0] == len(s) - o
    assert b"".join(s[o + 8:] for s in segs) == payload


def test_needs_csum_completed_without_gso():
    pkt = tcp_packet(*V4, 1, 2, 5, b"hello")
    # Put only the pseudo-header sum in the field, as a device with CSUM does.
    o = 20
    l4len = len(pkt) - o
    ph = pkt[12:20] + struct.pack("!BBH", 0, 6, l4len)
    partial = struct.pack("!H", (~csum(ph)) & 0xFFFF)
    raw = pkt[:o + 16] + partial + pkt[o + 18:]
    [out] = _core.vnet_split(vnet_hdr(NEEDS_CSUM, 0, 0, 0, o, 16), raw)
    assert out == pkt


@pytest.mark.parametrize("hdr,pkt,err", [
    (vnet_hdr(NEEDS_CSUM, TCPV4, 40, 1000, 20, 16), b"\x45" + bytes(10), "malformed"),
    (vnet_hdr(NEEDS_CSUM, TCPV4, 40, 0, 20, 16), tcp_packet(*V4, 1, 2, 3, b"x" * 100), "malformed"),
    (vnet_hdr(NEEDS_CSUM, TCPV6, 40, 10, 20, 16), tcp_packet(*V4, 1, 2, 3, b"x" * 100), "malformed"),
    (vnet_hdr(NEEDS_CSUM, 3, 40, 10, 20, 16), udp_packet(*V4, 1, 2, b"x" * 100), "unsupported"),
    (vnet_hdr(NEEDS_CSUM, 0, 0, 0, 200, 16), tcp_packet(*V4, 1, 2, 3, b"x"), "malformed"),
])
def test_split_rejects(hdr, pkt, err):
    with pytest.raises(ValueError, match=err):
        _core.vnet_split(hdr, pkt)


def test_hdr_len_from_kernel_is_not_trusted():
    payload = b"y" * 3000
    sp = super_tcp(V4, payload, options=TS_OPT)
    lying = vnet_hdr(NEEDS_CSUM, TCPV4, 20, 1000, 20, 16)  # hdr_len says 20: wrong
    segs = _core.vnet_split(lying, sp)
    assert all(verify_l4_checksum(s) for s in segs)
    assert b"".join(s[52:] for s in segs) == payload


# ---- coalesce ----------------------------------------------------------------

def segments(addrs, n, mss=1000, last=None, seq=5000, flags=0x10, options=b"", sport=40000):
    out = []
    for i in range(n):
        size = mss if i < n - 1 or last is None else last
        payload = bytes(((seq + i * mss + k) * 13) & 0xFF for k in range(size))
        f = flags if i == n - 1 else 0x10
        out.append(tcp_packet(*addrs, sport, 5201, seq + i * mss, payload, flags=f, options=options, ident=i + 1))
    return out


def check_super(hdr, pkt, mss, n_expected_payload, gso):
    h = parse_vnet(hdr)
    assert h["flags"] == NEEDS_CSUM and h["gso_type"] == gso and h["gso_size"] == mss
    o = l3(pkt)
    thl = tcp_fields(pkt)["thl"] if gso != UDP_L4 else 8
    assert h["csum_start"] == o and h["hdr_len"] == o + thl
    assert len(pkt) - o - thl == n_expected_payload
    # The kernel finishes the partial checksum: the result must verify.
    done = complete_partial(pkt, h["csum_start"], h["csum_offset"])
    assert verify_l4_checksum(done)
    if o == 20:
        assert csum(pkt[:20]) == 0 and struct.unpack("!H", pkt[2:4])[0] == len(pkt)
    return done


@pytest.mark.parametrize("addrs,gso", [(V4, TCPV4), (V6, TCPV6)], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("options", [b"", TS_OPT], ids=["no-opts", "timestamps"])
def test_coalesce_in_order_run(addrs, gso, options):
    segs = segments(addrs, 5, last=300, flags=0x18, options=options)
    out = _core.gro_coalesce(segs)
    assert len(out) == 1
    hdr, pkt = out[0]
    check_super(hdr, pkt, 1000, 4300, gso)
    assert tcp_fields(pkt)["flags"] & 0x08  # PSH of the last is kept
    thl = 20 + len(options)
    assert pkt[l3(pkt) + thl:] == b"".join(s[l3(s) + thl:] for s in segs)


def test_coalesce_stops_at_gap_and_short_segment():
    a = segments(V4, 3)
    gap = segments(V4, 2, seq=5000 + 3 * 1000 + 1)      # one byte missing
    out = _core.gro_coalesce(a + gap)
    assert [parse_vnet(h)["gso_type"] for h, _ in out] == [TCPV4, TCPV4]
    # A run's first segment sets its size: a larger one cannot follow a smaller one.
    short_first = segments(V4, 1, mss=500) + segments(V4, 2, seq=5500)
    out = _core.gro_coalesce(short_first)
    assert out[0] == (bytes(10), short_first[0])
    assert len(out) == 2
    check_super(out[1][0], out[1][1], 1000, 2000, TCPV4)
    # A short segment ends a run: what follows starts a new one.
    tail = segments(V4, 2, last=300) + segments(V4, 2, seq=5000 + 1300)
    out = _core.gro_coalesce(tail)
    assert len(out) == 2
    check_super(out[0][0], out[0][1], 1000, 1300, TCPV4)
    check_super(out[1][0], out[1][1], 1000, 2000, TCPV4)


def test_coalesce_interleaved_flows_keep_order():
    f1 = segments(V4, 4, sport=1111)
    f2 = segments(V4, 4, sport=2222, seq=90000)
    mixed = [p for pair in zip(f1, f2) for p in pair]
    out = _core.gro_coalesce(mixed)
    assert len(out) == 2
    ports = [struct.unpack("!H", p[20:22])[0] for _, p in out]
    assert ports == [1111, 2222]


@pytest.mark.parametrize("flag", [0x01, 0x02, 0x04, 0x20, 0x80, 0x40], ids=["FIN", "SYN", "RST", "URG", "CWR", "ECE"])
def test_coalesce_leaves_control_segments(flag):
    segs = segments(V4, 3)
    special = tcp_packet(*V4, 40000, 5201, 5000 + 3000, b"z" * 1000, flags=0x10 | flag)
    out = _core.gro_coalesce(segs + [special])
    assert out[-1] == (bytes(10), special)


def test_coalesce_rejects_bad_checksum():
    segs = segments(V4, 3)
    bad = bytearray(segs[1])
    bad[-1] ^= 0xFF
    out = _core.gro_coalesce([segs[0], bytes(bad), segs[2]])
    assert (bytes(10), bytes(bad)) in out          # written as it came, not laundered


def test_coalesce_different_ack_or_tos_not_merged():
    a = segments(V4, 2)
    b = tcp_packet(*V4, 40000, 5201, 7000, b"q" * 1000, ack=99, ident=9)
    c = tcp_packet(*V4, 40000, 5201, 7000, b"q" * 1000, tos=3, ident=9)
    assert len(_core.gro_coalesce(a + [b])) == 2
    assert len(_core.gro_coalesce(a + [c])) == 2


def test_coalesce_limits():
    segs = segments(V4, 70, mss=1000)
    out = _core.gro_coalesce(segs)
    for h, p in out:
        assert len(p) <= 65535
        if parse_vnet(h)["flags"]:
            n = (len(p) - 40) // 1000
            assert n <= 64
    assert sum(len(p) - 40 for _, p in out) == 70 * 1000


def test_coalesce_udp():
    dgrams = [udp_packet(*V4, 7000, 7001, bytes([i]) * 1200, ident=i) for i in range(4)]
    dgrams.append(udp_packet(*V4, 7000, 7001, b"e" * 100, ident=4))
    out = _core.gro_coalesce(dgrams)
    assert len(out) == 1
    check_super(out[0][0], out[0][1], 1200, 4900, UDP_L4)
    assert len(_core.gro_coalesce(dgrams, udp=False)) == 5
    assert len(_core.gro_coalesce(segments(V4, 3), tcp=False)) == 3


def test_tap_frames():
    eth = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00"
    segs = [eth + s for s in segments(V4, 3)]
    out = _core.gro_coalesce(segs, l2=14)
    assert len(out) == 1
    h = parse_vnet(out[0][0])
    assert h["csum_start"] == 34 and h["hdr_len"] == 54
    split = _core.vnet_split(out[0][0], out[0][1], l2=14)
    assert split == segs


# ---- properties --------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 60000), mss=st.integers(100, 9000), v6=st.booleans(),
       opts=st.sampled_from([b"", TS_OPT, bytes([1, 1, 1, 0])]), psh=st.booleans())
def test_split_then_coalesce_round_trip(size, mss, v6, opts, psh):
    addrs = V6 if v6 else V4
    payload = bytes((k * 31) & 0xFF for k in range(size))
    sp = super_tcp(addrs, payload, flags=0x10 | (0x08 if psh else 0), options=opts)
    if -(-size // mss) > 64:
        with pytest.raises(ValueError):
            _core.vnet_split(gso_hdr(sp, mss, TCPV6 if v6 else TCPV4), sp)
        return
    segs = _core.vnet_split(gso_hdr(sp, mss, TCPV6 if v6 else TCPV4), sp)
    assert all(verify_l4_checksum(s) and len(s) - l3(s) - 20 - len(opts) <= mss for s in segs)
    out = _core.gro_coalesce(segs)
    if len(segs) == 1:
        assert out == [(bytes(10), segs[0])]
        return
    assert len(out) == 1
    hdr, pkt = out[0]
    done = check_super(hdr, pkt, mss, size, TCPV6 if v6 else TCPV4)
    # Same headers as the original (but the checksum) and the same payload.
    o = l3(sp)
    assert done[:o + 16] == sp[:o + 16] and done[o + 18:] == sp[o + 18:]


@settings(max_examples=300, deadline=None)
@given(hdr=st.binary(min_size=10, max_size=10), pkt=st.binary(min_size=1, max_size=3000),
       l2=st.sampled_from([0, 14]))
def test_split_never_crashes_on_garbage(hdr, pkt, l2):
    try:
        segs = _core.vnet_split(hdr, pkt, l2=l2)
    except ValueError as exc:
        assert str(exc) in ("malformed", "too many segments", "unsupported")
        return
    assert 1 <= len(segs) <= 64


@settings(max_examples=200, deadline=None)
@given(pkts=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=40))
def test_coalesce_never_crashes_on_garbage(pkts):
    out = _core.gro_coalesce(pkts)
    assert 1 <= len(out) <= len(pkts)
    # What was not merged comes out exactly as it went in.
    assert all(p in pkts for h, p in out if h == bytes(10))


def test_kernel_loop_runs_each_kernel():
    """The micro-benchmarks' loop (benchmarks/test_kernels.py) does real work."""
    data = bytes(range(256)) * 4
    import sys
    folded = ((~_core.checksum(data)) & 0xFFFF).to_bytes(2, "big")  # the sum, network order
    assert _core.kernel_loop("checksum", data, 3) == 3 * int.from_bytes(folded, sys.byteorder)
    sp = super_tcp(V4, b"k" * 5000)
    assert _core.kernel_loop("split", sp, 2, gso_hdr(sp, 1000, TCPV4)) == 5
    assert _core.kernel_loop("coalesce", segments(V4, 4) + segments(V6, 3), 5) == 2
    flows = [tcp_packet(*V4, 10000 + i, 5201, 1, b"x") for i in range(50)]
    assert _core.kernel_loop("flow", flows, 3) == 150
    assert _core.kernel_loop("ring", 1000, 4) == 4000
    with pytest.raises(ValueError, match="kind='nope'"):
        _core.kernel_loop("nope", b"", 1)
    with pytest.raises(ValueError, match="iterations=0"):
        _core.kernel_loop("checksum", b"", 0)
