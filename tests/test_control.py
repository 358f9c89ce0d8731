"""The control plane with real traffic: Python decides, C forwards."""
import asyncio
import logging
import os
import sys
import threading
import time

import pytest

from helpers.nettest import wait_until
from helpers.udp import received, udp_pumps, udp_receiver, udp_send
from helpers.world import assert_stats_add_up
from helpers.packets import echo_reply_v4, echo_reply_v6, tap_echo_reply
from tunpump import _core
from tunpump import (Device, FlowEvicted, Packet, PeerDown, PeerUp, Pump, Stats, StatsTick, TCPEndpoint,
                     UDPEndpoint, Verdict)

def test_drop_one_port_pass_another(world):
    seen = []

    def on_flow(flow):
        seen.append(flow)
        return Verdict.DROP if flow.protocol == 6 and flow.dport == 5301 else Verdict.FORWARD

    p1, p2 = udp_pumps(world, on_flow=on_flow)
    with p1, p2:
        res = world.ns.transfer(world.n1, world.n2, "198.18.11.2", 4 << 20, port=5201)
        assert res["received"]["sha256"] == res["sent"]["sha256"]
        code = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
                "try:\n    s.connect(('198.18.11.2', 5301)); print('connected')\n"
                "except OSError as e:\n    print('failed', type(e).__name__)\n")
        r = world.ns.run(world.n1, sys.executable, "-c", code)
        assert r.stdout.startswith("failed"), r.stdout + r.stderr
    s = p1.stats()
    assert s.to_endpoint.drops["verdict"] >= 1
    assert any(f.dport == 5201 and f.protocol_name == "tcp" for f in seen)
    tcp5301 = [f for f in seen if f.dport == 5301]
    assert len(tcp5301) == 1  # asked once: the table remembers the verdict
    assert tcp5301[0].src == "198.18.11.1" and tcp5301[0].dst == "198.18.11.2"
    assert s.flows.new == len(seen)
    assert_stats_add_up(s)


def test_route_two_flows_to_two_peers(ns):
    n1, n2, n3 = ns.make(), ns.make(), ns.make()
    ns.veth(n1, n2, "198.18.10.1/24", "198.18.10.2/24")
    ns.veth(n1, n3, "198.18.12.1/24", "198.18.12.3/24")
    a = Device("tpra", netns=n1)
    b = Device("tprb", netns=n2)
    c = Device("tprc", netns=n3)
    try:
        a.link.up().add_address("198.18.11.1/24")
        b.link.up().add_address("198.18.11.2/24")
        c.link.up().add_address("198.18.11.3/24")
        routes = {"198.18.11.2": 0, "198.18.11.3": 1}

        def on_flow(flow):
            return Verdict.route(routes[flow.dst]) if flow.dst in routes else Verdict.DROP

        hub = UDPEndpoint(("0.0.0.0", 6700), [("198.18.10.2", 6700), ("198.18.12.3", 6700)], netns=n1)
        with Pump(a, hub, on_flow=on_flow) as pa, \
                Pump(b, UDPEndpoint(("198.18.10.2", 6700), ("198.18.10.1", 6700), netns=n2)) as pb, \
                Pump(c, UDPEndpoint(("198.18.12.3", 6700), ("198.18.12.1", 6700), netns=n3)) as pc:
            for dst in ("198.18.11.2", "198.18.11.3"):
                r = ns.ping(n1, dst)
                assert r.returncode == 0, dst + r.stdout + r.stderr
            # each peer got only its own flow
            assert pb.stats().to_device.packets_out >= 3
            assert pc.stats().to_device.packets_out >= 3
            pings_b = pb.stats().to_device.packets_out
            r = ns.ping(n1, "198.18.11.3")
            assert r.returncode == 0
            assert pb.stats().to_device.packets_out == pings_b
        assert_stats_add_up(pa.stats())
    finally:
        for d in (a, b, c):
            d.close()


@pytest.mark.parametrize("family", [4, 6])
def test_punt_icmp_and_answer_from_python(world, family):
    pump_box = {}

    def on_flow(flow):
        return Verdict.PUNT if flow.protocol in (1, 58) else Verdict.FORWARD

    def on_packet(packet, flow):
        data = bytes(packet)
        reply = echo_reply_v4(data) if family == 4 else echo_reply_v6(data)
        if reply:
            pump_box["pump"].inject(reply, to="device", queue=flow.queue)

    p1, p2 = udp_pumps(world, on_flow=on_flow, on_packet=on_packet)
    pump_box["pump"] = p1
    with p1, p2:
        target = "198.18.11.2" if family == 4 else "fd00:11::2"
        r = world.ns.ping(world.n1, target)
        assert r.returncode == 0, r.stdout + r.stderr
        s = p1.stats()
        assert s.flows.punted >= 3
        # the far side never saw the pings: Python answered them
        assert p2.stats().to_device.packets_out < s.flows.punted
    assert_stats_add_up(p1.stats())


def test_punt_verdict_packets_reach_on_punt_in_batches(world):
    # Without on_packet, a PUNT flow's packets come to on_punt as a
    # transform's do: lists of tunpump.Packet, one call per dispatch round.
    flows, batches = [], []

    def on_flow(flow):
        if flow.protocol != 17:
            return Verdict.FORWARD
        flows.append(flow)
        time.sleep(0.3)   # the flow's packets wait in C meanwhile, then are punted together
        return Verdict.PUNT

    p1, p2 = udp_pumps(world, on_flow=on_flow, on_punt=batches.append, decision_timeout=5.0)
    with p1, p2:
        udp_send(world.ns, world.n1, "198.18.11.2", 7000, 20, sport=7100)
        assert wait_until(lambda: sum(map(len, batches)) >= 20, timeout=5), batches
        s = p1.stats()
    got = [pkt for b in batches for pkt in b]
    assert all(isinstance(pkt, Packet) for pkt in got)
    assert {(pkt.direction, pkt.queue, pkt.peer, pkt.source) for pkt in got} == {("to_endpoint", 0, None, None)}
    assert [f.id for f in flows] == [got[0].flow] and {pkt.flow for pkt in got} == {flows[0].id}
    assert [int(pkt.data[28:]) for pkt in got] == list(range(20))   # whole IPv4/UDP packets, in order
    assert max(map(len, batches)) > 1, [len(b) for b in batches]   # held while on_flow decided: one batch
    assert s.flows.punted == 20
    assert_stats_add_up(s)


def test_on_punt_needs_a_source_of_packets(world):
    for kw in ({}, {"on_flow": lambda f: Verdict.PUNT, "on_packet": print}):   # on_packet takes PUNTs first
        with pytest.raises(ValueError, match=r"on_punt: nothing would reach it.*transform.*Verdict.PUNT"):
            Pump(world.a, world.b, on_punt=print, **kw)
    Pump(world.a, world.b, on_punt=print, on_flow=lambda f: Verdict.PUNT)   # a PUNT verdict may come


def test_pending_packets_released_in_order(world):
    def on_flow(flow):
        if flow.protocol == 17:
            time.sleep(0.3)   # slow decision: packets queue in C meanwhile
        return Verdict.FORWARD

    p1, p2 = udp_pumps(world, on_flow=on_flow, decision_timeout=5.0)
    with p1, p2:
        rx = udp_receiver(world.ns, world.n2, 7000)
        udp_send(world.ns, world.n1, "198.18.11.2", 7000, 100, sport=7100)
        got = received(rx)
    assert got == list(range(100))
    assert p1.stats().flows.decision_timeouts == 0


@pytest.mark.parametrize("default,expect_delivered", [(Verdict.DROP, False), (Verdict.FORWARD, True)],
                         ids=["fail-closed", "fail-open"])
def test_decision_timeout_applies_default(world, default, expect_delivered):
    release = threading.Event()

    def on_flow(flow):
        if flow.protocol == 17:
            release.wait(5)   # far longer than decision_timeout
        return None

    p1, p2 = udp_pumps(world, on_flow=on_flow, decision_timeout=0.2, default_verdict=default)
    with p1, p2:
        rx = udp_receiver(world.ns, world.n2, 7001)
        udp_send(world.ns, world.n1, "198.18.11.2", 7001, 20, sport=7101)
        assert wait_until(lambda: p1.stats().flows.decision_timeouts >= 1, timeout=5)
        got = received(rx)
        release.set()
    assert (got == list(range(20))) is expect_delivered
    if not expect_delivered:
        assert got == [] and p1.stats().to_endpoint.drops["verdict"] >= 20


def test_callback_exception_is_logged_and_default_applies(world, caplog):
    def on_flow(flow):
        raise RuntimeError("policy bug")

    p1, p2 = udp_pumps(world, on_flow=on_flow)
    with caplog.at_level(logging.ERROR, logger="tunpump"), p1, p2:
        r = world.ns.ping(world.n1, "198.18.11.2")
        assert r.returncode == 0, r.stdout   # fail-open default
        assert p1.callback_errors >= 1
        assert p1.error() is None
    assert "on_flow raised" in caplog.text and "policy bug" in caplog.text


def test_bad_verdict_type_is_an_error_not_a_crash(world, caplog):
    p1, p2 = udp_pumps(world, on_flow=lambda f: "forward please")
    with caplog.at_level(logging.ERROR, logger="tunpump"), p1, p2:
        assert world.ns.ping(world.n1, "198.18.11.2").returncode == 0
    assert "expected a tunpump.Verdict" in caplog.text


def test_idle_eviction_event_with_counts(world):
    events = []
    p1, p2 = udp_pumps(world, on_flow=lambda f: Verdict.FORWARD, on_event=events.append,
                       flow_idle_timeout=0.3, decision_timeout=0.1)
    with p1, p2:
        rx = udp_receiver(world.ns, world.n2, 7002, idle=0.5)
        udp_send(world.ns, world.n1, "198.18.11.2", 7002, 7, sport=7102)
        received(rx)
        assert wait_until(lambda: any(isinstance(e, FlowEvicted) and e.flow.dport == 7002 for e in events),
                          timeout=5)
    ev = [e for e in events if isinstance(e, FlowEvicted) and e.flow.dport == 7002][0]
    assert ev.reason == "idle" and ev.packets == 7 and ev.bytes > 7 * 28
    assert ev.flow.sport == 7102 and ev.age >= 0


def test_table_full_evicts_lru(world):
    events = []
    p1, p2 = udp_pumps(world, on_flow=lambda f: Verdict.FORWARD, on_event=events.append, flow_table_size=4)
    with p1, p2:
        rx = udp_receiver(world.ns, world.n2, 7003)
        for i in range(10):
            udp_send(world.ns, world.n1, "198.18.11.2", 7003, 3, sport=7200 + i)
        got = received(rx)
        assert wait_until(lambda: sum(isinstance(e, FlowEvicted) and e.reason == "table_full"
                                      for e in events) >= 6)
    assert len(got) == 30   # eviction never costs packets
    s = p1.stats()
    assert s.flows.active <= 4 and s.flows.new >= 10


def test_tap_arp_answered_from_python(ns):
    n1, n2 = ns.make(), ns.make()
    ns.veth(n1, n2, "198.18.10.1/24", "198.18.10.2/24")
    kinds = []
    with Device("tptap", "tap", netns=n1) as dev:
        dev.link.up().add_address("198.18.60.1/24")
        box = {}

        def on_flow(flow):
            kinds.append(flow.kind)
            return Verdict.PUNT if flow.kind == "arp" or flow.protocol == 1 else Verdict.FORWARD

        def on_packet(packet, flow):
            reply = tap_echo_reply(bytes(packet))
            if reply:
                box["pump"].inject(reply)

        pump = Pump(dev, UDPEndpoint(("198.18.10.1", 6800), ("198.18.10.2", 6800), netns=n1),
                    on_flow=on_flow, on_packet=on_packet)
        box["pump"] = pump
        with pump:
            r = ns.ping(n1, "198.18.60.2")
            assert r.returncode == 0, r.stdout + r.stderr
            neigh = ns.run(n1, "ip", "neigh", "show", "198.18.60.2").stdout
            assert "02:00:5e:00:00:02" in neigh   # learned from the ARP reply Python sent
    assert "arp" in kinds


def test_peer_events_and_asyncio_iterator(world):
    events = []

    async def consume(pump, stop_after):
        got = []
        async for ev in pump.events():
            got.append(ev)
            if len([e for e in got if isinstance(e, (PeerUp, PeerDown))]) >= stop_after:
                return got

    async def main():
        server = Pump(world.a, TCPEndpoint.listen(("198.18.10.1", 6900), netns=world.n1),
                      on_event=events.append)
        task = asyncio.create_task(consume(server, 2))
        await asyncio.sleep(0)   # the iterator registers before start()
        server.start()
        client = Pump(world.b, TCPEndpoint.connect(("198.18.10.1", 6900), netns=world.n2)).start()
        await asyncio.sleep(0.5)
        client.stop()
        got = await asyncio.wait_for(task, 10)
        server.stop()
        return got

    got = asyncio.run(main())
    ups = [e for e in got if isinstance(e, PeerUp)]
    downs = [e for e in got if isinstance(e, PeerDown)]
    assert ups and downs and ups[0].address[0] == "198.18.10.2"
    assert any(isinstance(e, PeerUp) for e in events)   # callbacks and the iterator both see them


def test_stats_tick(world):
    ticks = []
    p1, p2 = udp_pumps(world, on_event=lambda e: ticks.append(e) if isinstance(e, StatsTick) else None,
                       stats_interval=0.1)
    with p1, p2:
        assert wait_until(lambda: len(ticks) >= 3, timeout=5)
    assert isinstance(ticks[0].stats, Stats)


def test_without_on_flow_no_table(world):
    p1, p2 = udp_pumps(world)
    with p1, p2:
        assert world.ns.ping(world.n1, "198.18.11.2").returncode == 0
    assert p1.stats().flows.new == 0


def test_control_arguments():
    dev = Device.__new__(Device)
    dev._fds = [3]
    ep = UDPEndpoint(("198.18.0.1", 1), ("198.18.0.2", 1))
    with pytest.raises(TypeError, match="on_flow="):
        Pump(dev, ep, on_flow=42)
    with pytest.raises(ValueError, match="default_verdict="):
        Pump(dev, ep, default_verdict=Verdict.PUNT)
    with pytest.raises(ValueError, match="flow_table_size=0"):
        Pump(dev, ep, flow_table_size=0)
    with pytest.raises(ValueError, match="decision_timeout=-1"):
        Pump(dev, ep, decision_timeout=-1)
    with pytest.raises(ValueError, match="peer=16"):
        Verdict.route(16)
    with pytest.raises(ValueError, match="ttl=0"):
        Verdict.FORWARD.with_ttl(0)
    with pytest.raises(ValueError, match="default_verdict="):
        Pump(dev, ep, default_verdict="drop")
    dev._fds = []


def test_verdict_is_an_enum():
    """Verdict is an enum.Enum; a ROUTE or a ttl is a Decision made by its helpers."""
    import enum
    from tunpump import Decision
    assert issubclass(Verdict, enum.Enum)
    assert [v.name for v in Verdict] == ["FORWARD", "DROP", "PUNT", "ROUTE"]
    assert Verdict("drop") is Verdict.DROP and Verdict["PUNT"] is Verdict.PUNT
    with pytest.raises(ValueError, match="verdict='dorp': expected one of 'forward', 'drop'"):
        Verdict("dorp")
    r = Verdict.route(3, ttl=30)
    assert isinstance(r, Decision) and (r.verdict, r.peer, r.ttl) == (Verdict.ROUTE, 3, 30)
    assert r == Verdict.route(3, ttl=30) and r != Verdict.route(2, ttl=30)
    assert repr(r) == "<Verdict.ROUTE(3) ttl=30>" and repr(Verdict.DROP) == "Verdict.DROP"
    assert Verdict.FORWARD.with_ttl(5) == Decision(Verdict.FORWARD, ttl=5)
    assert r.with_ttl(1) == Verdict.route(3, ttl=1)
    with pytest.raises(ValueError, match="needs a peer"):
        Verdict.ROUTE.with_ttl(5)
    with pytest.raises(ValueError, match="peer=1: only Verdict.route"):
        Decision(Verdict.DROP, peer=1)
    with pytest.raises(ValueError, match="peer=-1"):
        Verdict.route(-1)
    with pytest.raises(ValueError, match="peer=True"):
        Verdict.route(True)
    with pytest.raises(TypeError, match="verdict='drop'"):
        Decision("drop")
    assert Verdict.DROP._code()[0] == _core.VERDICT_DROP
    assert r._code() == (_core.VERDICT_ROUTE, 3, 30000)
    with pytest.raises(ValueError, match="needs a peer index"):
        Verdict.ROUTE._code()


def test_one_name_for_a_peer():
    """A peer index is `peer` everywhere; endpoint= is the deprecated old name."""
    import inspect
    import warnings
    from tunpump import Packet
    with pytest.warns(DeprecationWarning, match="peer="):
        assert Verdict.route(endpoint=2) == Verdict.route(peer=2) == Verdict.route(2)
    with pytest.warns(DeprecationWarning, match="Decision.peer"):
        assert Verdict.route(3).endpoint == 3
    with pytest.raises(TypeError, match="peer= only"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        Verdict.route(1, endpoint=2)
    with pytest.raises(TypeError, match="missing the peer index"):
        Verdict.route()
    assert "peer" in inspect.signature(Pump.inject).parameters
    assert "peer" in {f for f in Packet.__dataclass_fields__}


def test_stop_from_a_callback(world):
    box = {}

    def on_flow(flow):
        box["pump"].stop()   # e.g. a policy that shuts the tunnel
        return Verdict.FORWARD

    p1, p2 = udp_pumps(world, on_flow=on_flow)
    box["pump"] = p1
    p1.start()
    with p2:
        world.ns.run(world.n1, "ping", "-c", "1", "-W", "1", "198.18.11.2")
        assert wait_until(lambda: not p1.running, timeout=5)
    assert p1.error() is None


def test_verdict_ttl_asks_again(world):
    asked = []

    def on_flow(flow):
        if flow.protocol == 17 and flow.dport == 7004:
            asked.append(time.monotonic())
        return Verdict.FORWARD.with_ttl(0.2)

    p1, p2 = udp_pumps(world, on_flow=on_flow)
    with p1, p2:
        rx = udp_receiver(world.ns, world.n2, 7004)
        udp_send(world.ns, world.n1, "198.18.11.2", 7004, 3, sport=7104)
        time.sleep(0.4)
        udp_send(world.ns, world.n1, "198.18.11.2", 7004, 3, sport=7104)
        got = received(rx)
    assert got == [0, 1, 2, 0, 1, 2]
    assert len(asked) >= 2 and asked[1] - asked[0] >= 0.2


def test_pending_overflow_is_counted(world):
    gate = threading.Event()

    def on_flow(flow):
        if flow.protocol == 17:
            gate.wait(2)
        return Verdict.FORWARD

    p1, p2 = udp_pumps(world, on_flow=on_flow, pending_limit=4, decision_timeout=5.0)
    with p1, p2:
        rx = udp_receiver(world.ns, world.n2, 7005)
        udp_send(world.ns, world.n1, "198.18.11.2", 7005, 20, sport=7105)
        assert wait_until(lambda: p1.stats().to_endpoint.drops["pending_full"] >= 1)
        gate.set()
        got = received(rx)
    full = p1.stats().to_endpoint.drops["pending_full"]
    assert got == list(range(len(got))) and len(got) + full == 20 and len(got) >= 4
    assert_stats_add_up(p1.stats())


def test_learned_udp_peer_event(world):
    events = []
    server = Pump(world.a, UDPEndpoint(("198.18.10.1", 6610), netns=world.n1), on_event=events.append)
    client = Pump(world.b, UDPEndpoint(("198.18.10.2", 6611), ("198.18.10.1", 6610), netns=world.n2))
    with server, client:
        assert world.ns.ping(world.n2, "198.18.11.1").returncode == 0
        assert wait_until(lambda: any(isinstance(e, PeerUp) for e in events))
    up = [e for e in events if isinstance(e, PeerUp)][0]
    assert up.address == ("198.18.10.2", 6611) and up.queue == 0


def test_worker_error_event_when_the_device_goes(world):
    from tunpump import PumpError, WorkerError
    events = []
    p1, p2 = udp_pumps(world, on_event=events.append)
    with p2:
        p1.start()
        os.close(world.a.fds[0])          # the device's fd vanishes under the worker
        world.a._fds = []
        world.ns.ping(world.n2, "198.18.11.1", count=1, timeout=1)   # only to wake the worker
        with pytest.raises(PumpError, match="device (read|write)"):
            p1.run()
    errs = [e for e in events if isinstance(e, WorkerError)]
    assert errs and errs[0].device_gone and errs[0].where in ("device read", "device write")
