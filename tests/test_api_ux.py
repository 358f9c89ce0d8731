"""The API's surprises removed (issue 13): inject() and Device.read() speak
the same `prefix` argument, a UDP endpoint's one peer and several are told
apart, Flow.id never repeats. Fake devices: no root."""
import pytest

from helpers.fakedev import FakeDevice
from helpers.packets import udp_packet
from tunpump import Pump, TCPEndpoint, UDPEndpoint

V4 = ("198.18.11.2", "198.18.11.1")


def test_inject_takes_a_bare_packet_or_a_framed_one():
    a, b = FakeDevice("fa", pi=True, vnet_hdr_size=12), FakeDevice("fb")
    pkt = udp_packet(*V4, 7000, 40000, b"from python")
    frame = b"\0\0\x08\x00" + bytes(12) + pkt
    with a, b, Pump(a, b) as pump:
        a.wire[0].settimeout(5)
        pump.inject(pkt)                          # prefix=False, the default: the plain prefix is built
        assert a.wire[0].recv(4096) == frame
        pump.inject(frame, prefix=True)           # already framed (as Device.read() returns it): as it is
        assert a.wire[0].recv(4096) == frame
        pump.inject(pkt, to=b, prefix=False)      # the relay's other device (no prefix)
        b.wire[0].settimeout(5)
        assert b.wire[0].recv(4096) == pkt
        assert pump.stats().to_device.injected == 2 and pump.stats().to_endpoint.injected == 1
        with pytest.raises(ValueError, match="prefix='yes': expected True"):
            pump.inject(pkt, prefix="yes")
        with pytest.raises(ValueError, match="packet: 16 bytes with prefix=True"):
            pump.inject(frame[:16], prefix=True)


def test_inject_builds_its_prefix_with_the_prefix_module():
    """One builder (tunpump.prefix.build): a TUN packet that is not IPv4/IPv6
    or a TAP frame shorter than its Ethernet header is refused for a PI
    device (the old inline builder tagged the first as IPv4 and the second
    with EtherType 0)."""
    a, b = FakeDevice("fa", pi=True), FakeDevice("fb")
    with a, b, Pump(a, b) as pump:
        with pytest.raises(ValueError, match="IPv4 or IPv6 packets"):
            pump.inject(b"\x10" + bytes(30))
    a, b = FakeDevice("fa", mode="tap", pi=True), FakeDevice("fb", mode="tap")
    with a, b, Pump(a, b) as pump:
        with pytest.raises(ValueError, match="14 bytes or more"):
            pump.inject(bytes(10))


def test_prefix_true_is_refused_where_there_is_no_prefix():
    a = FakeDevice("fa")
    ep = UDPEndpoint(("127.0.0.1", 0), ("127.0.0.1", 9))
    with a:
        pump = Pump(a, ep)
        with pytest.raises(ValueError, match="prefix=True: only for a device"):
            pump.inject(b"x", to="endpoint", prefix=True)
