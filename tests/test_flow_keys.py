"""Flow keys parsed in C (csrc/packet/tp_flow_key.c over tp_parse.c), as tables
of packets: each row is a name, a packet (TUN) or frame (TAP) and the fields
tunpump.control.Flow must decode from its key."""
import struct

import pytest
from hypothesis import given, settings, strategies as st

from helpers.packets import (ETH_HDR, eth, icmp_echo, ipv4_fragment, ipv4_header, ipv6_fragment,
                     ipv6_header, ipv6_with_ext, tcp_packet, udp_packet, vlan_eth)
from tunpump import Flow, _core

V4 = ("198.18.0.1", "198.18.0.2")
V6 = ("fd00::1", "fd00::2")
DSTOPTS, HOPOPTS, ROUTING, AH = 60, 0, 43, 51


def key(pkt, tap=False):
    return Flow(0, 0, _core.flow_key(pkt, tap))


def fields(f):
    return {"kind": f.kind, "version": f.version, "protocol": f.protocol, "src": f.src, "dst": f.dst,
            "sport": f.sport, "dport": f.dport, "vlan": f.vlan, "ethertype": f.ethertype}


def tcp23_behind(n, ext=DSTOPTS):
    """TCP to port 23 behind n IPv6 extension headers of one type."""
    return ipv6_with_ext(tcp_packet(*V6, 1234, 23, 1, b"x")[40:], 6, [ext] * n, *V6)


def ns_frame(target_last=0):
    body = struct.pack("!BBHI", 135, 0, 0, 0) + bytes(15) + bytes([target_last])
    return eth(ipv6_header(*V6, 58, len(body), hop=255) + body, 0x86DD)


IP4 = dict(kind="ip", version=4, src=V4[0], dst=V4[1], vlan=0, ethertype=0x0800)
IP6 = dict(kind="ip", version=6, src=V6[0], dst=V6[1], vlan=0, ethertype=0x86DD)
NOADDR = dict(version=0, protocol=0, src=None, dst=None, sport=0, dport=0)

# (name, packet, tap, expected fields: only those named are checked)
CASES = [
    ("tcp4", tcp_packet(*V4, 1234, 80, 1, b"a"), False, dict(IP4, protocol=6, sport=1234, dport=80)),
    ("udp4", udp_packet(*V4, 53, 5353, b"q"), False, dict(IP4, protocol=17, sport=53, dport=5353)),
    ("tcp6", tcp_packet(*V6, 1234, 80, 1, b"a"), False, dict(IP6, protocol=6, sport=1234, dport=80)),
    ("udp6", udp_packet(*V6, 53, 5353, b"q"), False, dict(IP6, protocol=17, sport=53, dport=5353)),
    ("icmp4 echo id", icmp_echo(*V4, 0x4242), False, dict(IP4, protocol=1, sport=0x4242, dport=0x4242)),
    ("icmp6 echo id", icmp_echo(*V6, 0x4242), False, dict(IP6, protocol=58, sport=0x4242, dport=0x4242)),
    ("ipv4 options", ipv4_header(*V4, 17, 12, options=bytes([1, 1, 1, 0]))
     + udp_packet(*V4, 7, 9, b"abcd")[20:], False, dict(IP4, protocol=17, sport=7, dport=9)),
    ("padding after the IP length", udp_packet(*V4, 53, 54, b"q") + b"PAD", False,
     dict(IP4, protocol=17, sport=53, dport=54)),
    ("ipv6 dstopts + hopopts walked", ipv6_with_ext(udp_packet(*V6, 1000, 2000, b"data")[40:], 17,
                                                     [DSTOPTS, HOPOPTS], *V6), False,
     dict(IP6, protocol=17, sport=1000, dport=2000)),
    ("ipv6 routing + AH walked", ipv6_with_ext(udp_packet(*V6, 1000, 2000, b"data")[40:], 17,
                                                [ROUTING, AH], *V6), False,
     dict(IP6, protocol=17, sport=1000, dport=2000)),
    ("8 extension headers: the bound", tcp23_behind(8), False, dict(IP6, protocol=6, dport=23)),
    # issue 12 bug 4: past the bound the packet was "other" without ports
    ("9 extension headers: unparsed", tcp23_behind(9), False,
     dict(kind="unparsed", version=6, src=V6[0], dst=V6[1], protocol=DSTOPTS, sport=0, dport=0)),
    ("40 extension headers: unparsed", tcp23_behind(40), False, dict(kind="unparsed", version=6)),
    ("extension header past the packet", ipv6_header(*V6, DSTOPTS, 8) + bytes([6, 5]) + bytes(6), False,
     dict(kind="unparsed", version=6, src=V6[0])),
    ("ipv4 length past the buffer", tcp_packet(*V4, 1, 23, 1, b"abc")[:-2], False,
     dict(kind="unparsed", version=4, src=V4[0], protocol=6, dport=0)),
    ("ipv6 jumbo length 0", ipv6_header(*V6, HOPOPTS, 0) + bytes([6, 0]) + bytes(6), False,
     dict(kind="unparsed", version=6)),
    ("ipv4 first fragment", ipv4_fragment(*V4, 6, struct.pack("!HH", 1, 2) + bytes(4), mf=True), False,
     dict(IP4, kind="fragment", protocol=6, sport=0, dport=0)),
    ("ipv4 later fragment", ipv4_fragment(*V4, 17, bytes(8), offset=100), False,
     dict(IP4, kind="fragment", protocol=17)),
    ("ipv6 fragment", ipv6_fragment(*V6, 6, bytes(8), offset=100, mf=True), False,
     dict(IP6, kind="fragment", protocol=6, sport=0, dport=0)),
    ("tap vlan tcp", vlan_eth(tcp_packet(*V4, 1, 2, 3, b"z"), 0x0800, 42), True,
     dict(IP4, protocol=6, sport=1, dport=2, vlan=42)),
    ("tap qinq: inner vlan", vlan_eth(tcp_packet(*V4, 1, 2, 3, b"z"), 0x0800, 42, outer=5), True,
     dict(IP4, protocol=6, vlan=42)),
    ("tap arp", vlan_eth(bytes(28), 0x0806, 7), True, dict(NOADDR, kind="arp", vlan=7, ethertype=0x0806)),
    ("tap nd", ns_frame(), True, dict(kind="nd", version=6, protocol=58, src="::", dst="::", sport=0)),
    ("tun icmpv6 type 135 is not nd", ns_frame()[14:], False, dict(IP6, protocol=58)),
    ("tap lldp: other", eth(bytes(30), 0x88CC), True, dict(NOADDR, kind="other", ethertype=0x88CC)),
    ("tap runt", ETH_HDR[:10], True, dict(NOADDR, kind="other")),
    ("tap ipv4 ethertype, ipv6 inside", eth(udp_packet(*V6, 1, 2, b"x"), 0x0800), True,
     dict(NOADDR, kind="other", ethertype=0x0800)),
    ("tun version 0", bytes(30), False, dict(NOADDR, kind="other", ethertype=0)),
    ("tun one byte", b"\x45", False, dict(NOADDR, kind="other", ethertype=0x0800)),
    ("tun ihl 4", b"\x44" + bytes(39), False, dict(NOADDR, kind="other")),
    ("tun empty", b"", False, dict(NOADDR, kind="other", ethertype=0)),
]


@pytest.mark.parametrize("name,pkt,tap,want", CASES, ids=[c[0] for c in CASES])
def test_flow_key(name, pkt, tap, want):
    got = fields(key(pkt, tap))
    assert {k: got[k] for k in want} == want


def test_nd_is_one_flow_per_vlan():
    # two solicitations for different targets are the same control flow
    assert _core.flow_key(ns_frame(0), True) == _core.flow_key(ns_frame(1), True)


def test_unparsed_is_not_other():
    """issue 12 bug 4: a port-based verdict must be able to tell these apart."""
    assert key(tcp23_behind(9)).kind == "unparsed"
    assert "unparsed" in repr(key(tcp23_behind(9)))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), tap=st.booleans())
def test_parse_never_crashes(data, tap):
    f = key(data, tap)
    assert f.kind in ("ip", "fragment", "arp", "nd", "other", "unparsed")
    if f.kind in ("ip", "fragment", "unparsed"):
        assert f.version in (4, 6)
