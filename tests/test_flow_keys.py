"""Flow keys parsed in C (csrc/packet/tp_flow.c) from hand-built packets."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from packets import ipv4_header, ipv6_header, tcp_packet, udp_packet
from tunpump import Flow, _core

V4 = ("198.18.0.1", "198.18.0.2")
V6 = ("fd00::1", "fd00::2")
ETH = bytes(6) + bytes([2, 0, 0, 0, 0, 1])


def key(pkt, tap=False):
    return Flow(0, 0, _core.flow_key(pkt, tap))


def icmp_echo(src, dst, ident, v6=False):
    body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1) + b"x"
    return (ipv6_header(src, dst, 58, len(body)) if v6 else ipv4_header(src, dst, 1, len(body))) + body


@pytest.mark.parametrize("addrs", [V4, V6], ids=["ipv4", "ipv6"])
def test_tcp_udp_ports(addrs):
    f = key(tcp_packet(*addrs, 1234, 80, 1, b"a"))
    assert (f.kind, f.protocol_name, f.src, f.dst, f.sport, f.dport) == ("ip", "tcp", *addrs, 1234, 80)
    assert f.version == (6 if addrs is V6 else 4)
    u = key(udp_packet(*addrs, 53, 5353, b"q"))
    assert (u.protocol, u.sport, u.dport) == (17, 53, 5353)


@pytest.mark.parametrize("v6", [False, True])
def test_icmp_echo_id(v6):
    f = key(icmp_echo(*(V6 if v6 else V4), 0x4242, v6))
    assert f.icmp_id == 0x4242 and f.protocol == (58 if v6 else 1)


def test_ipv6_extension_headers_walked():
    inner = udp_packet(*V6, 1000, 2000, b"data")[40:]
    hbh = bytes([17, 0]) + bytes(6)           # hop-by-hop, next: UDP
    dst_opts = bytes([0, 0]) + bytes(6)       # destination options, next: hop-by-hop
    pkt = ipv6_header(*V6, 60, len(dst_opts + hbh + inner)) + dst_opts + hbh + inner
    f = key(pkt)
    assert (f.kind, f.protocol, f.sport, f.dport) == ("ip", 17, 1000, 2000)


@pytest.mark.parametrize("v6", [False, True])
def test_fragments_are_their_own_class(v6):
    if v6:
        frag = bytes([6, 0]) + struct.pack("!HI", (100 << 3) | 1, 7)   # next TCP, offset 100, MF
        pkt = ipv6_header(*V6, 44, len(frag) + 8) + frag + bytes(8)
    else:
        h = bytearray(ipv4_header(*V4, 6, 8))
        h[6:8] = struct.pack("!H", 0x2000)   # MF, offset 0: the first fragment, with ports
        pkt = bytes(h) + struct.pack("!HH", 1, 2) + bytes(4)
    f = key(pkt)
    assert f.kind == "fragment" and f.protocol == 6 and f.sport == 0 and f.dport == 0


def test_tap_vlan_arp_nd():
    tcp = tcp_packet(*V4, 1, 2, 3, b"z")
    vlan = ETH + struct.pack("!HHH", 0x8100, 42, 0x0800) + tcp
    f = key(vlan, tap=True)
    assert (f.kind, f.vlan, f.sport, f.dport) == ("ip", 42, 1, 2)
    arp = ETH + struct.pack("!HHH", 0x8100, 7, 0x0806) + bytes(28)
    a = key(arp, tap=True)
    assert (a.kind, a.vlan, a.src) == ("arp", 7, None)
    ns_body = struct.pack("!BBHI", 135, 0, 0, 0) + bytes(16)
    nd = ETH + b"\x86\xdd" + ipv6_header(*V6, 58, len(ns_body)) + ns_body
    n = key(nd, tap=True)
    assert n.kind == "nd"
    # two solicitations for different targets are the same control flow
    assert _core.flow_key(nd, True) == _core.flow_key(nd[:-1] + b"\x01", True)


def test_other_and_truncated():
    assert key(b"\x00" * 30).kind == "other"
    assert key(ETH + b"\x88\xcc" + bytes(30), tap=True).kind == "other"
    assert key(b"\x45").kind == "other"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), tap=st.booleans())
def test_parse_never_crashes(data, tap):
    f = key(data, tap)
    assert f.kind in ("ip", "fragment", "arp", "nd", "other")
