"""Silent failures made loud (issue 13): an unreachable UDP peer and a
refused TCP connect post a PeerUnreachable event (at most one a second per
queue) and a log line (rate-limited), and a TCP client's connect attempts
are counted (stats, status, metrics). In a namespace made here."""
import errno
import logging

import pytest

from helpers.fakedev import FakeDevice
from helpers.nettest import wait_until
from helpers.packets import udp_packet
from helpers.world import assert_stats_add_up
from tunpump import PeerUnreachable, Pump, TCPEndpoint, UDPEndpoint
from tunpump.monitor import Monitor
from tunpump.status import format_status

V4 = ("198.18.52.1", "198.18.52.2")


@pytest.fixture
def lo_ns(ns):
    """A namespace with 198.18.50.1 on its loopback and nothing else: no
    route to 198.18.60.0/24 at all, an `unreachable` route to 198.18.61.0/24."""
    n = ns.make()
    ns.run(n, "ip", "addr", "add", "198.18.50.1/32", "dev", "lo")
    ns.run(n, "ip", "route", "add", "unreachable", "198.18.61.0/24")
    return n


def _watch(pump_kw, caplog):
    events = []
    mon = Monitor(None, kind="tunnel", name="tpu", offloads={})
    mon._limit.interval = 60   # nothing repeats within the test

    def on_event(ev):
        mon.on_event(ev)
        if isinstance(ev, PeerUnreachable):
            events.append(ev)
    return events, mon, on_event


@pytest.mark.parametrize("peer,err", [("198.18.60.9", errno.ENETUNREACH), ("198.18.61.9", errno.EHOSTUNREACH)],
                         ids=["no-route", "unreachable-route"])
def test_unreachable_udp_peer_is_an_event_a_log_line_and_a_drop_reason(ns, lo_ns, caplog, peer, err):
    caplog.set_level(logging.INFO, "tunpump")
    events, mon, on_event = _watch({}, caplog)
    dev = FakeDevice("fu")
    with dev:
        pump = Pump(dev, UDPEndpoint(("198.18.50.1", 7200), (peer, 7200), netns=lo_ns), on_event=on_event)
        mon.pump = pump
        with pump:
            for i in range(200):   # many datagrams, many refused batches
                dev.send(udp_packet(*V4, 40000, 7000, b"u" * 20, ident=i + 1))
            assert wait_until(lambda: pump.stats().to_endpoint.drops["unreachable"] == 200)
            assert wait_until(lambda: len(events) >= 1)
        s = pump.stats()
        assert s.to_endpoint.packets_out == 0 and s.to_endpoint.drops["write_error"] == 0
        assert_stats_add_up(s)
    ev = events[0]
    assert (ev.queue, ev.address, ev.what, ev.errno) == (0, (peer, 7200), "send", err)
    assert len(events) <= 3                      # one a second, not one per batch or packet
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert lines == [f"queue 0: peer {peer}:7200 unreachable: {ev.reason} "
                     f"(its datagrams are dropped as 'unreachable')"]


def test_refused_tcp_connect_is_an_event_a_log_line_and_counted(ns, lo_ns, caplog):
    caplog.set_level(logging.INFO, "tunpump")
    events, mon, on_event = _watch({}, caplog)
    dev = FakeDevice("ft")
    with dev:
        pump = Pump(dev, TCPEndpoint.connect(("198.18.50.1", 7300), netns=lo_ns), on_event=on_event)
        mon.pump = pump
        with pump:   # nobody listens on 7300: every connect is refused, retried with backoff
            assert wait_until(lambda: pump.stats().connect_attempts >= 3, timeout=10)
            assert wait_until(lambda: len(events) >= 1)
            snap = mon.snapshot()
        s = pump.stats()
        assert s.connects == 0 and s.connect_attempts >= 3
    ev = events[0]
    assert (ev.address, ev.what, ev.errno) == (("198.18.50.1", 7300), "connect", errno.ECONNREFUSED)
    assert len(events) <= s.connect_attempts
    lines = [r.getMessage() for r in caplog.records if "connecting to" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(
        "queue 0: connecting to 198.18.50.1:7300 failed: Connection refused (")
    assert snap["total"]["connect_attempts"] >= 3 and snap["queues"][0]["connect_attempts"] >= 3
    assert "connections: 0 made of " in format_status(snap)


def test_connect_attempts_count_the_one_that_works(ns, lo_ns):
    a, b = FakeDevice("fa"), FakeDevice("fb")
    with a, b:
        server = Pump(a, TCPEndpoint.listen(("198.18.50.1", 7400), netns=lo_ns))
        client = Pump(b, TCPEndpoint.connect(("198.18.50.1", 7400), netns=lo_ns))
        with server, client:
            assert wait_until(lambda: client.stats().connects == 1)
        assert client.stats().connect_attempts == 1 and server.stats().connect_attempts == 0


def test_metrics_name_connect_attempts():
    pytest.importorskip("prometheus_client")
    from tunpump.metrics import PumpCollector
    from tunpump.stats import Stats
    q = Stats.zero().to_dict()
    q["connect_attempts"] = 4
    q["peers_moved"], q["roams_refused"] = 2, 1
    snap = {"name": "t", "kind": "tunnel", "device": "d", "endpoint": "e", "uptime": 1.0, "offloads": {},
            "queues": [q], "peers": []}
    fams = {f.name: f for f in PumpCollector(lambda: snap).collect()}
    assert [s.value for s in fams["tunpump_connect_attempts"].samples if s.name.endswith("_total")] == [4]
    for name, want in (("tunpump_peers_moved", 2), ("tunpump_roams_refused", 1)):
        assert [s.value for s in fams[name].samples if s.name.endswith("_total")] == [want], name
    drops = {s.labels["reason"] for s in fams["tunpump_drops"].samples}
    assert "unreachable" in drops
