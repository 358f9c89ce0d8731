"""The CLI's monitor: pump events and counters as log lines (logger
"tunpump"), rate-limited where they can repeat, and the stats lines."""
import copy
import logging

from tunpump.control import PeerDown, PeerUp, WorkerError
from tunpump.monitor import Monitor, RateLimit, stats_line, summary_line
from tunpump.stats import Stats


def zero():
    """Counters as a plain dict (Stats.to_dict()), for the tests to set."""
    return Stats.zero().to_dict()


class FakePump:
    def __init__(self):
        self.s = zero()
        self.device = type("D", (), {"name": "tpx"})()
        self.endpoint = "UDPEndpoint(...)"

    def stats(self, per_queue=False):
        s = Stats.from_dict(copy.deepcopy(self.s))
        return [s] if per_queue else s


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "tunpump"]


def mon():
    return Monitor(FakePump(), kind="tunnel", name="tpx", offloads={"tpx": ["csum"]})


def test_peer_up_relearned_down_and_reconnect(caplog):
    caplog.set_level(logging.INFO, "tunpump")
    m = mon()
    m.on_event(PeerUp(0, ("198.18.0.2", 7000)))
    m.on_event(PeerUp(0, ("198.18.0.3", 7001)))
    m._limit = RateLimit(0)   # let the next ones through at once
    m.on_event(PeerDown(0, ("198.18.0.3", 7001)))
    m.on_event(PeerUp(0, ("198.18.0.3", 7001)))
    msgs = messages(caplog)
    assert msgs[0] == "queue 0: peer 198.18.0.2:7000 up"
    assert msgs[1] == "queue 0: peer re-learned: 198.18.0.3:7001 (was 198.18.0.2:7000)"
    assert msgs[2].startswith("queue 0: peer 198.18.0.3:7001 down (")
    assert msgs[3] == "queue 0: peer 198.18.0.3:7001 up again (reconnected)"
    snap = m.snapshot()
    assert {p["address"]: p["up"] for p in snap["peers"]} == {"198.18.0.2:7000": False, "198.18.0.3:7001": True}


def test_down_reason_names_framing_errors(caplog):
    caplog.set_level(logging.INFO, "tunpump")
    m = mon()
    m.on_event(PeerUp(0, ("198.18.0.2", 55555)))
    m.pump.s["protocol_errors"] = 2
    m.on_event(PeerDown(0, ("198.18.0.2", 55555)))
    assert "2 framing error(s)" in messages(caplog)[-1]


def test_repeats_are_rate_limited(caplog):
    caplog.set_level(logging.INFO, "tunpump")
    m = mon()
    for _ in range(50):
        m.on_event(WorkerError(1, 5, "device read"))
    msgs = messages(caplog)
    assert msgs == ["queue 1: worker error in device read: errno 5 (the device is gone)"]
    m._limit.interval = 0
    m.on_event(WorkerError(1, 5, "device read"))
    assert "49 similar message(s) held back" in messages(caplog)[-1]


def test_poll_logs_fallbacks_and_drops(caplog):
    caplog.set_level(logging.INFO, "tunpump")
    m = mon()
    m.poll()
    assert messages(caplog) == []
    m.pump.s["to_endpoint"]["gso_fallbacks"] = 3
    m.pump.s["to_device"]["drops"]["unknown_peer"] = 4
    m.pump.s["to_endpoint"]["drops"]["no_peer"] = 1
    m.poll()
    msgs = messages(caplog)
    assert any("refused UDP_SEGMENT: 3 batch(es)" in x for x in msgs), msgs
    assert "drops: unknown_peer 4, no_peer 1" in msgs
    m.poll()   # nothing new: nothing logged
    assert len(messages(caplog)) == len(msgs)


def test_stats_and_summary_lines():
    a, b = zero(), zero()
    b["to_endpoint"]["packets_out"], b["to_endpoint"]["bytes_out"] = 2000, 1_000_000
    b["to_device"]["drops"]["unknown_peer"] = 7
    b["to_endpoint"]["drops"]["no_peer"] = 2
    b["to_endpoint"]["drops"]["too_big"] = 1
    b["to_endpoint"]["drops"]["malformed"] = 1
    a, b = Stats.from_dict(a), Stats.from_dict(b)
    line = stats_line(a, b, 1.0)
    assert "dev->ep      2.0 kpps   0.008 Gbit/s" in line
    assert line.endswith("| drops 11 (unknown_peer 7, no_peer 2, malformed 1)")
    s = summary_line(b, 3.0)
    assert s.startswith("total: dev->ep 2000 packets 1000000 bytes | ep->dev 0 packets 0 bytes | drops 11 (")
    assert "too_big 1" in s
