"""Pump.stats() as typed objects (tunpump.stats): the dict form stays the
binding's, drop reasons stay open-ended, a pump that never ran reads 0, and
"packets" are wire packets (segments) on every path. Fake devices: no root."""
import dataclasses
import json

import pytest

from helpers.fakedev import FakeDevice
from helpers.nettest import wait_until
from helpers.packets import tcp_packet, udp_packet, vnet_hdr
from helpers.world import assert_stats_add_up
from tunpump import DirectionStats, FlowStats, Pump, Stats, Verdict, _core

TSO = _core.OFFLOADS["csum"] | _core.OFFLOADS["tso4"] | _core.OFFLOADS["tso6"]
V4 = ("198.18.40.1", "198.18.40.2")


def test_a_pump_that_never_ran_reads_zero():
    a, b = FakeDevice("fa", queues=2), FakeDevice("fb", queues=2)
    with a, b:
        pump = Pump(a, b)
        s = pump.stats()
        assert isinstance(s, Stats) and s == Stats.zero(injected=True)
        assert s.to_endpoint.packets_in == 0 and s.to_device.injected == 0 and s.flows.new == 0
        assert set(s.to_endpoint.drops) == set(_core.DROP_REASONS) and s.to_endpoint.dropped == 0
        per = pump.stats(per_queue=True)
        assert per == [Stats.zero(), Stats.zero()]


def test_to_dict_is_exactly_the_binding_form():
    a, b = FakeDevice("fa"), FakeDevice("fb")
    with a, b:
        with Pump(a, b) as pump:
            for i in range(5):
                a.send(udp_packet(*V4, 1000, 2000, b"x" * i, ident=i + 1))
            assert wait_until(lambda: pump.stats().to_endpoint.packets_out == 5)
        raw = pump._last_stats   # what the binding gave at stop
        per = pump.stats(per_queue=True)
        assert [q.to_dict() for q in per] == raw
        total = pump.stats().to_dict()
        for d in ("to_endpoint", "to_device"):
            assert total[d].pop("injected") == 0
        assert total == raw[0]
        json.dumps(pump.stats().to_dict())    # JSON-ready
        assert Stats.from_dict(pump.stats().to_dict()) == pump.stats()
        assert pump.stats().to_endpoint.packets_out == 5 and pump.stats().drops["malformed"] == 0


def test_drop_reasons_are_open_ended_and_objects_read_only():
    d = Stats.zero().to_dict()
    d["to_device"]["drops"]["aead_replay"] = 3    # a transform's reason, "<transform>_<reason>"
    s = Stats.from_dict(d)
    assert s.to_device.drops["aead_replay"] == 3 and s.to_device.dropped == 3
    assert s.drops["aead_replay"] == 3
    both = s + Stats.zero()                       # one side lacks the reason: kept
    assert both.to_device.drops["aead_replay"] == 3
    assert (s + s).to_device.drops["aead_replay"] == 6
    assert s.to_dict() == d
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.connects = 1
    with pytest.raises(TypeError):
        s.to_device.drops["aead_replay"] = 0
    with pytest.raises(ValueError, match="unknown key.*bogus"):
        Stats.from_dict(dict(d, bogus=1))
    with pytest.raises(ValueError, match="missing key 'packets_in'"):
        DirectionStats.from_dict({"bytes_in": 0})
    with pytest.raises(ValueError, match="direction='up'"):
        s.direction("up")
    assert FlowStats.from_dict(FlowStats(new=2).to_dict()).new == 2


def _super_packet(nseg: int, mss: int = 1000) -> bytes:
    """A TSO super-packet as a vnet_hdr device hands it over: nseg segments' payload."""
    pkt = tcp_packet(*V4, 40000, 5201, 1, b"s" * (mss * nseg - 10))
    return vnet_hdr(1, 1, 40, mss, 20, 16) + pkt   # NEEDS_CSUM, GSO_TCPV4


def test_a_super_packet_passed_whole_counts_its_segments():
    """Regression: a super-packet passed through whole to a device with TSO
    counted as one packet, a split one as its segments."""
    a = FakeDevice("fa", vnet_hdr_size=10, offload_bits=TSO)
    b = FakeDevice("fb", vnet_hdr_size=10, offload_bits=TSO)
    with a, b:
        with Pump(a, b) as pump:
            a.wire[0].send(_super_packet(5))
            assert len(b.recv()) == 40 + 4990      # passed whole
            assert wait_until(lambda: pump.stats().to_endpoint.packets_out >= 5)
        e = pump.stats().to_endpoint
        assert (e.gso_passed, e.gso_split, e.packets_in, e.packets_out, e.gro_built) == (1, 0, 5, 5, 0)
        assert_stats_add_up(pump.stats())


def test_a_split_super_packet_counts_its_segments_too():
    a = FakeDevice("fa", vnet_hdr_size=10, offload_bits=TSO)
    b = FakeDevice("fb")                           # no offloads: cut into segments
    with a, b:
        with Pump(a, b) as pump:
            a.wire[0].send(_super_packet(5))
            got = [b.recv() for _ in range(5)]
            assert all(len(p) <= 1040 for p in got)
        e = pump.stats().to_endpoint
        assert (e.gso_split, e.packets_in, e.packets_out) == (1, 5, 5)


def test_a_dropped_super_packet_counts_its_segments():
    a = FakeDevice("fa", vnet_hdr_size=10, offload_bits=TSO)
    b = FakeDevice("fb", vnet_hdr_size=10, offload_bits=TSO)
    with a, b:
        with Pump(a, b, on_flow=lambda f: Verdict.DROP) as pump:
            a.wire[0].send(_super_packet(4))
            assert wait_until(lambda: pump.stats().to_endpoint.drops["verdict"] >= 1)
            a.wire[0].send(_super_packet(3))       # the flow has its verdict: dropped at once
            assert wait_until(lambda: pump.stats().to_endpoint.drops["verdict"] >= 7)
        e = pump.stats().to_endpoint
        assert (e.packets_in, e.drops["verdict"], e.packets_out) == (7, 7, 0)
        assert_stats_add_up(pump.stats())
