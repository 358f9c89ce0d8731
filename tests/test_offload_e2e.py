"""Offloads end to end: super-packets split towards sockets and devices that
cannot take them, coalesced towards devices that can; 256 MiB transfers
verified by SHA-256, and the device counters show the kernel took every write."""
import json

import pytest

from helpers.nettest import sh
from helpers.world import assert_stats_add_up, check_traffic
from tunpump import Pump, TCPEndpoint, UDPEndpoint

MiB = 1 << 20


def dev_counters(ns_name, dev):
    out = sh("ip", "-n", ns_name, "-s", "-j", "link", "show", dev).stdout
    return json.loads(out)[0]["stats64"]["rx"]


def avg(d, what):
    calls = getattr(d, f"{what}_calls")
    return getattr(d, f"{what}_bytes") / calls if calls else 0


def tunnel(world, kind):
    if kind == "udp":
        e1 = UDPEndpoint(("198.18.10.1", 6500), ("198.18.10.2", 6500), netns=world.n1)
        e2 = UDPEndpoint(("198.18.10.2", 6500), ("198.18.10.1", 6500), netns=world.n2)
    else:
        e1 = TCPEndpoint.listen(("198.18.10.1", 6500), netns=world.n1)
        e2 = TCPEndpoint.connect(("198.18.10.1", 6500), netns=world.n2)
    return Pump(world.a, e1), Pump(world.b, e2)


@pytest.mark.parametrize("kind", ["udp", "tcp"])
@pytest.mark.parametrize("inner", [4, 6])
@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_tunnel_with_offloads(world, kind, inner):
    w = world
    assert {"csum", "tso4", "tso6"} <= w.a.offloads
    p1, p2 = tunnel(w, kind)
    with p1, p2:
        check_traffic(w, 256 * MiB, inner=(inner, 10 - inner))
    s1, s2 = p1.stats(), p2.stats()
    # the sender's side read super-packets and cut them up ...
    assert s1.to_endpoint.gso_split > 0
    assert avg(s1.to_endpoint, "read") > 8000, s1.to_endpoint
    # ... and the receiver's side wrote super-packets into its device
    assert s2.to_device.gro_built > 0
    assert avg(s2.to_device, "write") > 8000, s2.to_device
    for p in (p1, p2):
        assert_stats_add_up(p.stats())
        assert sum(p.stats().to_device.drops.values()) == 0
    for n, dev in ((w.n1, "tpua"), (w.n2, "tpub")):
        rx = dev_counters(n, dev)
        assert rx["errors"] == 0 and rx["dropped"] == 0, rx


@pytest.mark.parametrize("kind", ["udp", "tcp"])
@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_tunnel_offloads_off(world, kind):
    w = world
    for d in (w.a, w.b):
        d.set_offloads(False)
    p1, p2 = tunnel(w, kind)
    with p1, p2:
        check_traffic(w, 256 * MiB, inner=(4,))
    s1, s2 = p1.stats(), p2.stats()
    assert s1.to_endpoint.gso_split == 0 and s2.to_device.gro_built == 0
    assert avg(s1.to_endpoint, "read") < 1500 + 12


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_udp_tunnel_uses_udp_gso_and_gro(world):
    w = world
    p1, p2 = tunnel(w, "udp")
    with p1, p2:
        check_traffic(w, 64 * MiB, inner=(4,))
    s1, s2 = p1.stats(), p2.stats()
    e = s1.to_endpoint
    # UDP_SEGMENT: many datagrams per send call
    assert e.packets_out / e.write_calls > 4, e
    assert e.gso_fallbacks == 0
    # UDP_GRO: many datagrams per receive call on the other side
    r = s2.to_device
    assert r.packets_in / r.read_calls > 4, r


def _relay(a_kw, b_kw):
    return {"mtu": None, "underlay": False, "a_kw": a_kw, "b_kw": b_kw}


@pytest.mark.parametrize("world", [
    _relay({"vnet_hdr": True}, {}),
    _relay({}, {"vnet_hdr": True}),
    _relay({"vnet_hdr": True}, {"vnet_hdr": True, "offloads": False}),
    _relay({"vnet_hdr": True}, {"vnet_hdr": True, "offloads": {"csum", "tso4"}}),
], ids=["offloads-to-plain", "plain-to-offloads", "offloads-to-off", "v4-only"], indirect=True)
def test_relay_splits_or_coalesces(world):
    ns, n1, n2, a, b = world.ns, world.n1, world.n2, world.a, world.b
    with Pump(a, b) as pump:
        res = ns.transfer(n1, n2, "198.18.11.2", 256 * MiB)
        assert res["received"]["sha256"] == res["sent"]["sha256"]
        back = ns.transfer(n2, n1, "198.18.11.1", 32 * MiB, port=5202)
        assert back["received"]["sha256"] == back["sent"]["sha256"]
    s = pump.stats()
    assert_stats_add_up(s)
    if a.offloads and not b.offloads:
        assert s.to_endpoint.gso_split > 0
    if b.offloads and not a.vnet_hdr:
        assert s.to_endpoint.gro_built > 0
    for n, dev in ((n1, "tpua"), (n2, "tpub")):
        rx = dev_counters(n, dev)
        assert rx["errors"] == 0 and rx["dropped"] == 0, rx


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_udp_segment_refused_falls_back(world):
    """When the kernel refuses UDP_SEGMENT (here EINVAL: the underlay's MTU is
    below the tunnel's datagrams, a common misconfiguration) the worker falls
    back to one datagram per packet, counts it, and the transfer completes
    (the kernel fragments the oversized datagrams)."""
    w = world
    for n in (w.n1, w.n2):
        veth = json.loads(sh("ip", "-n", n, "-j", "link", "show", "type", "veth").stdout)[0]["ifname"]
        sh("ip", "-n", n, "link", "set", veth, "mtu", "1300")
    p1, p2 = tunnel(w, "udp")
    with p1, p2:
        check_traffic(w, 16 * MiB, inner=(4,))
    e = p1.stats().to_endpoint
    assert e.gso_fallbacks >= 1, e
    assert e.gso_split > 0
    assert_stats_add_up(p1.stats())


@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_small_mtu_super_packets_split_whole(world, batch):
    """issue 12 bug 8: at MTU 576 (MSS 536) a 64 KB TSO packet has over 64
    segments; it must be split whole, not dropped as too big."""
    w = world
    for d in (w.a, w.b):
        d.link.set_mtu(576)   # below IPv6's minimum: IPv4 only from here
    e1 = UDPEndpoint(("198.18.10.1", 6500), ("198.18.10.2", 6500), netns=w.n1)
    e2 = UDPEndpoint(("198.18.10.2", 6500), ("198.18.10.1", 6500), netns=w.n2)
    with Pump(w.a, e1, batch=batch) as p1, Pump(w.b, e2, batch=batch) as p2:
        res = w.ns.transfer(w.n1, w.n2, "198.18.11.2", 16 * MiB, timeout=60)
    assert res["received"]["sha256"] == res["sent"]["sha256"]
    s = p1.stats().to_endpoint
    assert s.gso_split > 0 and s.drops["too_big"] == 0, s
    assert s.packets_in > 16 * MiB // 536
