"""GSO split and GRO coalesce (csrc/packet/tp_vnet.c) as tables of packets, in
the style of wireguard-go's tun/offload_linux_test.go: each row names its
input packets and the outcome, and one checker verifies every row against the
independent checksum in tests/packets.py. Hypothesis properties follow."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from helpers.packets import (csum, eth, ipv4_header, ipv6_with_ext, parse_vnet, tcp_packet, udp_packet,
                     udp_zero_csum_payload, verify_l4_checksum, vlan_eth, vnet_hdr, complete_partial, pseudo6,
                     ipv4_fragment)
from tunpump.bench import _tools

NEEDS_CSUM, TCPV4, UDP_L4, TCPV6 = 1, 1, 5, 4
V4 = ("198.18.0.1", "198.18.0.2")
V6 = ("fd00::1", "fd00::2")
TS_OPT = bytes([1, 1, 8, 10]) + struct.pack("!II", 1000, 2000)  # NOP NOP timestamps
ZERO = bytes(10)
ACK, PSH, FIN, SYN, RST, URG, ECE, CWR = 0x10, 0x08, 0x01, 0x02, 0x04, 0x20, 0x40, 0x80


# ---- packet anatomy (independent of the C code) -------------------------------

def l3_off(pkt, l2=0):
    if not l2:
        return 0
    off, et = 14, struct.unpack("!H", pkt[12:14])[0]
    while et in (0x8100, 0x88A8):
        et = struct.unpack("!H", pkt[off + 2:off + 4])[0]
        off += 4
    return off


def l4_off(pkt, l2=0):
    o = l3_off(pkt, l2)
    return o + ((pkt[o] & 0xF) * 4 if pkt[o] >> 4 == 4 else 40)


def proto(pkt, l2=0):
    o = l3_off(pkt, l2)
    return pkt[o + 9] if pkt[o] >> 4 == 4 else pkt[o + 6]


def hdr_len(pkt, l2=0):
    o = l4_off(pkt, l2)
    return o + ((pkt[o + 12] >> 4) * 4 if proto(pkt, l2) == 6 else 8)


def tcp_fields(pkt, l2=0):
    o = l4_off(pkt, l2)
    sport, dport, seq, ack, doff, flags = struct.unpack("!HHIIBB", pkt[o:o + 14])
    return {"seq": seq, "ack": ack, "flags": flags, "thl": (doff >> 4) * 4, "off": o}


def ip_ok(pkt, l2=0):
    """The packet verifies (IPv4 header and L4 checksums) and its IP length is its size."""
    ip = pkt[l3_off(pkt, l2):]
    if ip[0] >> 4 == 4:
        return csum(ip[:20]) == 0 and struct.unpack("!H", ip[2:4])[0] == len(ip) and verify_l4_checksum(ip)
    return struct.unpack("!H", ip[4:6])[0] == len(ip) - 40 and verify_l4_checksum(ip)


# ---- builders -------------------------------------------------------------------

def super_tcp(addrs, payload, flags=ACK | PSH, options=b"", seq=1000, ident=7):
    return tcp_packet(*addrs, 40000, 5201, seq, payload, flags=flags, options=options, ident=ident)


def gso_hdr(pkt, mss, gso, l2=0):
    return vnet_hdr(NEEDS_CSUM, gso, hdr_len(pkt, l2), mss, l4_off(pkt, l2), 6 if gso == UDP_L4 else 16)


def segments(addrs, n, mss=1000, last=None, seq=5000, flags=ACK, options=b"", sport=40000, **kw):
    """n in-order TCP segments of one flow; the last one gets flags (and size last)."""
    out = []
    for i in range(n):
        size = mss if i < n - 1 or last is None else last
        payload = bytes(((seq + i * mss + k) * 13) & 0xFF for k in range(size))
        f = flags if i == n - 1 else ACK
        args = dict(flags=f, options=options, ident=i + 1)
        args.update(kw)
        out.append(tcp_packet(*addrs, sport, 5201, seq + i * mss, payload, **args))
    return out


def dgrams(addrs, n, size=1200, last=None, **kw):
    return [udp_packet(*addrs, 7000, 7001, bytes([i]) * (size if i < n - 1 or last is None else last),
                       ident=i + 1, **kw) for i in range(n)]


def with_ip(pkt, **fields):
    """pkt with IPv4 header fields changed (tos, ttl, ident, df) and the header checksum redone."""
    b = bytearray(pkt)
    if "tos" in fields:
        b[1] = fields["tos"]
    if "ttl" in fields:
        b[8] = fields["ttl"]
    if "ident" in fields:
        b[4:6] = struct.pack("!H", fields["ident"])
    if "df" in fields:
        b[6] = (b[6] & ~0x40) | (0x40 if fields["df"] else 0)
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", csum(bytes(b[:20])))
    return bytes(b)


def bad_ip_csum(pkt):
    b = bytearray(pkt)
    b[10] ^= 0x55
    return bytes(b)


def bad_l4(pkt):
    b = bytearray(pkt)
    b[-1] ^= 0xFF
    return bytes(b)


def set6(pkt, hop=None, flow=None, tc=None):
    b = bytearray(pkt)
    w = struct.unpack("!I", b[:4])[0]
    if flow is not None:
        w = (w & ~0xFFFFF) | flow
    if tc is not None:
        w = (w & ~0x0FF00000) | (tc << 20)
    b[:4] = struct.pack("!I", w)
    if hop is not None:
        b[7] = hop
    return bytes(b)


# ---- checksum -------------------------------------------------------------------

CSUM_CASES = [("empty", b""), ("one byte", b"\x01"), ("odd", b"\x01\x02\x03"),
              ("all ones", b"\xff" * 64), ("long odd", bytes(range(256)) * 3 + b"\x07")]


@pytest.mark.parametrize("name,data", CSUM_CASES, ids=[c[0] for c in CSUM_CASES])
def test_checksum_matches_reference(name, data):
    assert _tools.checksum(data) == csum(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000))
def test_checksum_property(data):
    assert _tools.checksum(data) == csum(data)


# ---- split ------------------------------------------------------------------------

def check_split(sp, segs, mss, l2=0):
    """segs are sp cut at mss with every header field right."""
    o4, hl = l4_off(sp, l2), hdr_len(sp, l2)
    payload = sp[hl:]
    assert len(segs) == -(-len(payload) // mss)
    assert b"".join(s[hl:] for s in segs) == payload
    is_tcp = proto(sp, l2) == 6
    for i, s in enumerate(segs):
        assert ip_ok(s, l2), i
        assert s[:l3_off(sp, l2)] == sp[:l3_off(sp, l2)]
        assert len(s) - hl == (mss if i < len(segs) - 1 else len(payload) - mss * (len(segs) - 1))
        if sp[l3_off(sp, l2)] >> 4 == 4:
            o3 = l3_off(sp, l2)
            assert struct.unpack("!H", s[o3 + 4:o3 + 6])[0] == (struct.unpack("!H", sp[o3 + 4:o3 + 6])[0] + i) & 0xFFFF
        if is_tcp:
            f, f0 = tcp_fields(s, l2), tcp_fields(sp, l2)
            assert f["seq"] == (f0["seq"] + i * mss) & 0xFFFFFFFF
            assert f["flags"] & CWR == (f0["flags"] & CWR if i == 0 else 0)
            assert f["flags"] & (FIN | PSH) == (f0["flags"] & (FIN | PSH) if i == len(segs) - 1 else 0)
            assert s[o4 + 20:hl] == sp[o4 + 20:hl]                     # options copied
        else:
            assert struct.unpack("!H", s[o4 + 4:o4 + 6])[0] == len(s) - o4
            assert s[o4 + 6:o4 + 8] != b"\0\0"                         # 0 would mean "no checksum"


def udp_payload_with_zero_csum(addrs, size=100):
    return udp_zero_csum_payload(*addrs, 7000, 7001, size=size)


def _tcp_split_rows():
    rows = []
    for fam, addrs, gso in (("4", V4, TCPV4), ("6", V6, TCPV6)):
        for oname, opts in (("", b""), (" ts", TS_OPT)):
            for size, mss in ((1000, 1000), (1001, 1000), (2000, 1000), (65000 - 60, 1448), (5, 1)):
                sp = super_tcp(addrs, bytes((i * 7) & 0xFF for i in range(size)), flags=ACK | PSH | FIN | CWR,
                               options=opts)
                want = "too many segments" if -(-size // mss) > 64 else mss
                rows.append((f"tcp{fam}{oname} {size}/{mss}", gso_hdr(sp, mss, gso), sp, 0, want))
    return rows


_UDP0 = udp_payload_with_zero_csum(V4, 1200)
_TAP_TCP = eth(super_tcp(V4, b"t" * 3000), 0x0800)
_VLAN_TCP = vlan_eth(super_tcp(V6, b"v" * 3000), 0x86DD, 9)

# (name, vnet header, packet, l2, expected: the MSS the segments must be cut at,
# or the error)
SPLIT_CASES = _tcp_split_rows() + [
    ("udp4 5000/1200", gso_hdr(udp_packet(*V4, 7000, 7001, bytes(range(250)) * 20, ident=3), 1200, UDP_L4),
     udp_packet(*V4, 7000, 7001, bytes(range(250)) * 20, ident=3), 0, 1200),
    ("udp6 5000/1200", gso_hdr(udp_packet(*V6, 7000, 7001, bytes(range(250)) * 20), 1200, UDP_L4),
     udp_packet(*V6, 7000, 7001, bytes(range(250)) * 20), 0, 1200),
    ("udp segment checksum 0 -> 0xffff", gso_hdr(udp_packet(*V4, 7000, 7001, _UDP0 * 2), 1200, UDP_L4),
     udp_packet(*V4, 7000, 7001, _UDP0 * 2), 0, 1200),
    ("tap tcp", gso_hdr(_TAP_TCP, 1000, TCPV4, 1), _TAP_TCP, 1, 1000),
    ("tap 802.1Q tcp6", gso_hdr(_VLAN_TCP, 1000, TCPV6, 1), _VLAN_TCP, 1, 1000),
    ("hdr_len from the device is not trusted", vnet_hdr(NEEDS_CSUM, TCPV4, 20, 1000, 20, 16),
     super_tcp(V4, b"y" * 3000, options=TS_OPT), 0, 1000),
    ("65 segments in one call", gso_hdr(super_tcp(V4, b"s" * 6500), 100, TCPV4), super_tcp(V4, b"s" * 6500),
     0, "too many segments"),
    ("truncated ipv4", vnet_hdr(NEEDS_CSUM, TCPV4, 40, 1000, 20, 16), b"\x45" + bytes(10), 0, "malformed"),
    ("gso_size 0", vnet_hdr(NEEDS_CSUM, TCPV4, 40, 0, 20, 16), tcp_packet(*V4, 1, 2, 3, b"x" * 100), 0,
     "malformed"),
    ("tcpv6 header on ipv4", vnet_hdr(NEEDS_CSUM, TCPV6, 40, 10, 20, 16), tcp_packet(*V4, 1, 2, 3, b"x" * 100),
     0, "malformed"),
    ("udp header on tcp", vnet_hdr(NEEDS_CSUM, UDP_L4, 28, 10, 20, 6), tcp_packet(*V4, 1, 2, 3, b"x" * 100),
     0, "malformed"),
    ("gso udp (ufo)", vnet_hdr(NEEDS_CSUM, 3, 40, 10, 20, 16), udp_packet(*V4, 1, 2, b"x" * 100), 0,
     "unsupported"),
    ("csum_start past the packet", vnet_hdr(NEEDS_CSUM, 0, 0, 0, 200, 16), tcp_packet(*V4, 1, 2, 3, b"x"), 0,
     "malformed"),
    # found by tests/fuzz (fuzz_split): the field check wrapped around below 2 bytes
    ("needs_csum on a 1-byte packet", vnet_hdr(NEEDS_CSUM, 0, 0, 0, 0, 0), b"\x39", 0, "malformed"),
    ("csum field past the end", vnet_hdr(NEEDS_CSUM, 0, 0, 0, 0, 99), tcp_packet(*V4, 1, 2, 3, b"x")[:100], 0,
     "malformed"),
    ("ipv4 length past the buffer", gso_hdr(super_tcp(V4, b"x" * 3000), 1000, TCPV4),
     super_tcp(V4, b"x" * 3000)[:-1], 0, "malformed"),
    ("ipv6 extension header", vnet_hdr(NEEDS_CSUM, TCPV6, 68, 100, 48, 16),
     ipv6_with_ext(tcp_packet(*V6, 1, 2, 3, b"x" * 1000)[40:], 6, [60], *V6), 0, "unsupported"),
    ("fragment", vnet_hdr(NEEDS_CSUM, TCPV4, 40, 100, 20, 16),
     ipv4_fragment(*V4, 6, tcp_packet(*V4, 1, 2, 3, b"x" * 1000)[20:], mf=True), 0, "unsupported"),
    ("tap arp", vnet_hdr(NEEDS_CSUM, TCPV4, 54, 100, 34, 16), eth(bytes(28), 0x0806), 1, "unsupported"),
]


@pytest.mark.parametrize("name,hdr,pkt,l2,want", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_split(name, hdr, pkt, l2, want):
    if isinstance(want, str):
        with pytest.raises(ValueError, match=want):
            _tools.vnet_split(hdr, pkt, l2=l2)
        return
    check_split(pkt, _tools.vnet_split(hdr, pkt, l2=l2), want, l2)


def partial(pkt, l2=0):
    """pkt with only the pseudo-header sum in its L4 checksum field, as a device with CSUM sends it."""
    o3, o4 = l3_off(pkt, l2), l4_off(pkt, l2)
    ip, p = pkt[o3:], proto(pkt, l2)
    l4len = len(pkt) - o4
    ph = ip[12:20] + struct.pack("!BBH", 0, p, l4len) if ip[0] >> 4 == 4 else pseudo6(ip[8:24], ip[24:40], l4len, p)
    at = o4 + (16 if p == 6 else 6)
    return pkt[:at] + struct.pack("!H", (~csum(ph)) & 0xFFFF) + pkt[at + 2:], o4, at - o4


# (name, packet with a complete checksum, l2): NEEDS_CSUM without GSO must give it back
NEEDS_CSUM_CASES = [
    ("tcp4", tcp_packet(*V4, 1, 2, 5, b"hello"), 0),
    ("tcp6", tcp_packet(*V6, 1, 2, 5, b"hello"), 0),
    ("udp4", udp_packet(*V4, 1, 2, b"hello"), 0),
    ("tap udp6", eth(udp_packet(*V6, 1, 2, b"hello"), 0x86DD), 1),
    # issue 12 bug 6: the completed sum was written as 0x0000, which means "no checksum"
    ("udp4 checksum 0 -> 0xffff", udp_packet(*V4, 7000, 7001, udp_payload_with_zero_csum(V4)), 0),
    ("udp6 checksum 0 -> 0xffff", udp_packet(*V6, 7000, 7001, udp_payload_with_zero_csum(V6)), 0),
]


@pytest.mark.parametrize("name,pkt,l2", NEEDS_CSUM_CASES, ids=[c[0] for c in NEEDS_CSUM_CASES])
def test_needs_csum_completed(name, pkt, l2):
    raw, start, off = partial(pkt, l2)
    [out] = _tools.vnet_split(vnet_hdr(NEEDS_CSUM, 0, 0, 0, start, off), raw, l2=l2)
    assert out == pkt
    if "0xffff" in name:
        assert out[start + off:start + off + 2] == b"\xff\xff"


# ---- coalesce ---------------------------------------------------------------------

def check_coalesced(pkts, out, want, l2=0):
    """out (from gro_coalesce) holds the units want names, in order: a unit of
    one packet is that packet unchanged with a zero header; a longer one is a
    super-packet that the kernel's segmentation turns back into its packets."""
    assert len(out) == len(want), [parse_vnet(h)["gso_type"] for h, _ in out]
    for (hdr, body), unit in zip(out, want):
        if len(unit) == 1:
            assert (hdr, body) == (ZERO, pkts[unit[0]])
            continue
        first = pkts[unit[0]]
        hl = hdr_len(first, l2)
        h = parse_vnet(hdr)
        gso = UDP_L4 if proto(first, l2) == 17 else TCPV4 if first[l3_off(first, l2)] >> 4 == 4 else TCPV6
        assert h["flags"] == NEEDS_CSUM and h["gso_type"] == gso
        assert (h["hdr_len"], h["csum_start"]) == (hl, l4_off(first, l2))
        assert h["gso_size"] == len(first) - hl
        assert body[hl:] == b"".join(pkts[i][hl:] for i in unit)
        assert ip_ok(complete_partial(body, h["csum_start"], h["csum_offset"]), l2)
        # The device cuts it back into the packets that went in.
        split = _tools.vnet_split(hdr, complete_partial(body, h["csum_start"], h["csum_offset"]), l2=l2)
        assert [s[hl:] for s in split] == [pkts[i][hl:] for i in unit]


def _tcp4(n=3, **kw):
    return segments(V4, n, **kw)


_A, _B = segments(V4, 4, sport=1111), segments(V4, 4, sport=2222, seq=90000)
_D = _tcp4()
_FIXED_DF = [with_ip(p, ident=77) for p in _D]
_FIXED = [with_ip(p, ident=77, df=False) for p in _D]
_V6 = segments(V6, 3)
_U = dgrams(V4, 3)
_TAP = [eth(p, 0x0800) for p in _tcp4()]
_PAD = [eth(p, 0x0800) + bytes(8) for p in _tcp4(mss=1)]

# (name, packets in arrival order, gro_coalesce options, expected units as packet indices)
COALESCE_CASES = [
    ("tcp4 run", segments(V4, 5, last=300, flags=ACK | PSH), {}, [[0, 1, 2, 3, 4]]),
    ("tcp6 run", segments(V6, 5, last=300, flags=ACK | PSH), {}, [[0, 1, 2, 3, 4]]),
    ("tcp4 timestamps", segments(V4, 5, options=TS_OPT), {}, [[0, 1, 2, 3, 4]]),
    ("tcp6 timestamps", segments(V6, 5, options=TS_OPT), {}, [[0, 1, 2, 3, 4]]),
    ("gap in sequence", _tcp4() + segments(V4, 2, seq=5000 + 3001), {}, [[0, 1, 2], [3, 4]]),
    ("larger after smaller", segments(V4, 1, mss=500) + segments(V4, 2, seq=5500), {}, [[0], [1, 2]]),
    ("short segment ends a run", segments(V4, 2, last=300) + segments(V4, 2, seq=6300), {}, [[0, 1], [2, 3]]),
    ("psh ends a run", _tcp4(2, flags=ACK | PSH) + segments(V4, 2, seq=7000), {}, [[0, 1], [2, 3]]),
    ("interleaved flows keep order", [p for pair in zip(_A, _B) for p in pair], {},
     [[0, 2, 4, 6], [1, 3, 5, 7]]),
    *[(f"{name} not merged", _D + [tcp_packet(*V4, 40000, 5201, 8000, b"z" * 1000, flags=ACK | f, ident=4)], {},
       [[0, 1, 2], [3]]) for name, f in (("FIN", FIN), ("SYN", SYN), ("RST", RST), ("URG", URG),
                                          ("CWR", CWR), ("ECE", ECE))],
    ("bad l4 checksum not laundered", [_D[0], bad_l4(_D[1]), _D[2]], {}, [[0], [1], [2]]),
    ("different ack", _D[:2] + [tcp_packet(*V4, 40000, 5201, 7000, b"q" * 1000, ack=99, ident=3)], {},
     [[0, 1], [2]]),
    ("different tos", _D[:2] + [with_ip(_D[2], tos=4)], {}, [[0, 1], [2]]),
    # issue 12 bug 9: only the TCP flags were compared, and the IPv4 header checksum was rewritten unchecked
    ("different window", _D[:2] + [tcp_packet(*V4, 40000, 5201, 7000, b"w" * 1000, window=100, ident=3)], {},
     [[0, 1], [2]]),
    ("different options", segments(V4, 2, options=TS_OPT) + segments(V4, 1, seq=7000, options=TS_OPT[:8]
                                                                      + b"\0\0\0\1"), {}, [[0, 1], [2]]),
    ("different ttl", _D[:2] + [with_ip(_D[2], ttl=3)], {}, [[0, 1], [2]]),
    ("different df", _D[:2] + [with_ip(_D[2], df=False)], {}, [[0, 1], [2]]),
    ("bad ipv4 header checksum", [_D[0], bad_ip_csum(_D[1]), _D[2]], {}, [[0], [1], [2]]),
    ("ipv4 id jumps", _D[:2] + [with_ip(_D[2], ident=40)], {}, [[0, 1], [2]]),
    ("ipv4 fixed id with df", _FIXED_DF, {}, [[0, 1, 2]]),
    ("ipv4 fixed id without df", _FIXED, {}, [[0], [1], [2]]),
    ("ipv6 flow label", _V6[:2] + [set6(_V6[2], flow=5)], {}, [[0, 1], [2]]),
    ("ipv6 hop limit", _V6[:2] + [set6(_V6[2], hop=9)], {}, [[0, 1], [2]]),
    ("ipv6 traffic class", _V6[:2] + [set6(_V6[2], tc=8)], {}, [[0, 1], [2]]),
    ("ipv6 extension header", [ipv6_with_ext(p[40:], 6, [60], *V6) for p in _V6], {}, [[0], [1], [2]]),
    ("ipv4 options", [ipv4_header(*V4, 6, len(p) - 20, ident=i + 1, options=bytes(4)) + p[20:]
                      for i, p in enumerate(_D)], {}, [[0], [1], [2]]),
    # issue 12 bug 3: bytes after the IP length went into the super-packet
    ("tcp trailing bytes", [_D[0], _D[1] + b"JUNK", _D[2]], {}, [[0], [1], [2]]),
    ("tcp trailing bytes on the first", [_D[0] + b"JUNK", _D[1], _D[2]], {}, [[0], [1, 2]]),
    ("udp trailing bytes", [_U[0], _U[1] + b"JUNK", _U[2]], {}, [[0], [1], [2]]),
    ("tap ethernet padding", _PAD, {"l2": 14}, [[0], [1], [2]]),
    ("over 64 segments", _tcp4(70, mss=100), {}, [list(range(64)), list(range(64, 70))]),
    ("over 64 KB", _tcp4(50, mss=1400), {}, [list(range(46)), list(range(46, 50))]),
    ("udp run", dgrams(V4, 5, last=100), {}, [[0, 1, 2, 3, 4]]),
    ("udp6 run", dgrams(V6, 4), {}, [[0, 1, 2, 3]]),
    ("udp larger after smaller", dgrams(V4, 2, size=100)[:1] + dgrams(V4, 2)[1:], {}, [[0], [1]]),
    ("udp without checksum", [p[:26] + b"\0\0" + p[28:] for p in _U], {}, [[0], [1], [2]]),
    ("udp bad checksum keeps flow order", [_U[0], _U[1], bad_l4(_U[2]), with_ip(dgrams(V4, 4)[3], ident=4)],
     {}, [[0, 1], [2], [3]]),
    ("udp off", dgrams(V4, 3), {"udp": False}, [[0], [1], [2]]),
    ("tcp off", _tcp4(), {"tcp": False}, [[0], [1], [2]]),
    ("tap frames", _TAP, {"l2": 14}, [[0, 1, 2]]),
    ("tap 802.1Q frames", [vlan_eth(p, 0x0800, 3) for p in _tcp4()], {"l2": 14}, [[0], [1], [2]]),
    ("garbage between", [_D[0], b"\x00" * 40, _D[1], b"\x45", _D[2]], {}, [[0, 2, 4], [1], [3]]),
]


@pytest.mark.parametrize("name,pkts,opts,want", COALESCE_CASES, ids=[c[0] for c in COALESCE_CASES])
def test_coalesce(name, pkts, opts, want):
    out = _tools.gro_coalesce(list(pkts), **opts)
    check_coalesced(pkts, out, want, 1 if opts.get("l2") else 0)


def test_tap_round_trip():
    out = _tools.gro_coalesce(_TAP, l2=14)
    assert _tools.vnet_split(out[0][0], out[0][1], l2=14) == _TAP


# ---- properties --------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 60000), mss=st.integers(100, 9000), v6=st.booleans(),
       opts=st.sampled_from([b"", TS_OPT, bytes([1, 1, 1, 0])]), psh=st.booleans())
def test_split_then_coalesce_round_trip(size, mss, v6, opts, psh):
    addrs = V6 if v6 else V4
    gso = TCPV6 if v6 else TCPV4
    payload = bytes((k * 31) & 0xFF for k in range(size))
    sp = super_tcp(addrs, payload, flags=ACK | (PSH if psh else 0), options=opts)
    if -(-size // mss) > 64:
        with pytest.raises(ValueError, match="too many"):
            _tools.vnet_split(gso_hdr(sp, mss, gso), sp)
        return
    segs = _tools.vnet_split(gso_hdr(sp, mss, gso), sp)
    check_split(sp, segs, mss)
    out = _tools.gro_coalesce(segs)
    check_coalesced(segs, out, [list(range(len(segs)))])
    if len(segs) > 1:
        # Same headers as the original (but the checksum) and the same payload.
        hdr, pkt = out[0]
        h = parse_vnet(hdr)
        done = complete_partial(pkt, h["csum_start"], h["csum_offset"])
        o = l4_off(sp)
        assert done[:o + 16] == sp[:o + 16] and done[o + 18:] == sp[o + 18:]


@settings(max_examples=300, deadline=None)
@given(hdr=st.binary(min_size=10, max_size=10), pkt=st.binary(min_size=1, max_size=3000),
       l2=st.sampled_from([0, 14]))
def test_split_never_crashes_on_garbage(hdr, pkt, l2):
    try:
        segs = _tools.vnet_split(hdr, pkt, l2=l2)
    except ValueError as exc:
        assert str(exc) in ("malformed", "too many segments", "unsupported")
        return
    assert 1 <= len(segs) <= 64


@settings(max_examples=200, deadline=None)
@given(pkts=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=40))
def test_coalesce_never_crashes_on_garbage(pkts):
    out = _tools.gro_coalesce(pkts)
    assert 1 <= len(out) <= len(pkts)
    # What was not merged comes out exactly as it went in.
    assert all(p in pkts for h, p in out if h == ZERO)

