"""The relay (queue i of device A <-> queue i of device B) with real traffic
between two namespaces."""
import os
import threading
import time

import pytest

from helpers.world import assert_stats_add_up, pair
from tunpump import Device, Pump


@pytest.mark.parametrize("vnet", [(False, False), (True, True)], ids=["plain", "vnet_hdr"])
def test_relay_ping_and_64mib(ns, vnet):
    n1, n2, a, b = pair(ns, vnet=vnet)
    with a, b, Pump(a, b) as pump:
        r = ns.ping(n1, "198.18.11.2")
        assert r.returncode == 0, r.stdout + r.stderr
        r6 = ns.ping(n1, "fd00:11::2")
        assert r6.returncode == 0, r6.stdout + r6.stderr
        res = ns.transfer(n1, n2, "198.18.11.2", 64 << 20)
        assert res["received"]["bytes"] == 64 << 20
        assert res["received"]["sha256"] == res["sent"]["sha256"]
        s = pump.stats()
        assert s.to_endpoint.packets_out > 0 and s.to_device.packets_out > 0
        if vnet[0]:
            # super-packets pass through whole, and still count as the
            # segments they carry: "packets" are wire packets on every path
            assert s.to_endpoint.gso_passed > 0 and s.to_endpoint.gso_split == 0
            assert s.to_endpoint.bytes_out / s.to_endpoint.packets_out <= 1500
            assert s.to_endpoint.packets_in == s.to_endpoint.packets_out
    assert_stats_add_up(pump.stats())


def test_relay_two_queues_four_flows(ns):
    n1, n2, a, b = pair(ns, queues=2, vnet=(True, True))
    with a, b, Pump(a, b) as pump:
        results = [None] * 4

        def one(i):
            results[i] = ns.transfer(n1, n2, "198.18.11.2", 16 << 20, port=5300 + i)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for r in results:
            assert r is not None
            assert r["received"]["sha256"] == r["sent"]["sha256"]
            assert r["received"]["bytes"] == 16 << 20
        per_q = pump.stats(per_queue=True)
        assert len(per_q) == 2
    assert_stats_add_up(pump.stats())


@pytest.mark.parametrize("vnet,pi", [((True, False), (False, False)), ((False, False), (True, False)),
                                     ((True, True), (True, False))],
                         ids=["vnet-plain", "pi-nopi", "vnet+pi-vnet"])
def test_relay_between_different_formats(ns, vnet, pi):
    n1, n2, a, b = pair(ns, vnet=vnet, pi=pi)
    with a, b, Pump(a, b) as pump:
        assert ns.ping(n1, "198.18.11.2").returncode == 0
        res = ns.transfer(n1, n2, "198.18.11.2", 8 << 20)
        assert res["received"]["sha256"] == res["sent"]["sha256"]
    assert_stats_add_up(pump.stats())
    # super-packets were split for the device that cannot take them, never dropped
    assert pump.stats().to_endpoint.drops["offload_mismatch"] == 0
    if vnet[0] and not vnet[1]:
        assert pump.stats().to_endpoint.gso_split > 0


def test_relay_tap(ns):
    n1, n2 = ns.make(), ns.make()
    with Device("tpta", "tap", netns=n1) as a, Device("tptb", "tap", netns=n2) as b:
        a.link.up().add_address("198.18.4.1/24")
        b.link.up().add_address("198.18.4.2/24")
        with Pump(a, b):
            r = ns.ping(n1, "198.18.4.2")
            assert r.returncode == 0, r.stdout + r.stderr


def test_stop_under_load_is_quick(ns):
    n1, n2, a, b = pair(ns, vnet=(True, True))
    with a, b:
        pump = Pump(a, b).start()
        sink = ns.python(n2, "-m", "tunpump.bench.traffic", "sink", "--port", "5400", "--timeout", "20")
        src = ns.python(n1, "-m", "tunpump.bench.traffic", "source", "--host", "198.18.11.2", "--port", "5400",
                        "--bytes", str(4 << 30), "--timeout", "10")
        # wait until traffic flows
        deadline = time.monotonic() + 10
        while pump.stats().to_endpoint.bytes_out < (32 << 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pump.stats().to_endpoint.bytes_out >= (32 << 20)
        t0 = time.monotonic()
        pump.stop()
        elapsed = time.monotonic() - t0
        assert elapsed < 1.0, elapsed
        assert not pump.running
        src.kill()
        sink.kill()
    assert_stats_add_up(pump.stats())


def _threads():
    return len(os.listdir("/proc/self/task"))


def _fds():
    return len(os.listdir("/proc/self/fd"))


def test_start_stop_cycles_leak_nothing(ns):
    n1, n2, a, b = pair(ns, queues=2)
    with a, b:
        Pump(a, b).start().stop()  # warm-up: first-use allocations
        fds, threads = _fds(), _threads()
        for _ in range(100):
            p = Pump(a, b)
            p.start()
            p.stop()
        same = Pump(a, b)
        for _ in range(20):
            same.start()
            same.stop()
        assert _fds() == fds
        assert _threads() == threads


def test_pump_arguments(ns):
    n1 = ns.make()
    with Device("tpx1", netns=n1) as a, Device("tpx2", queues=2, netns=n1) as b:
        with pytest.raises(ValueError, match="batch=0"):
            Pump(a, a, batch=0)
        with pytest.raises(ValueError, match="to itself"):
            Pump(a, a)
        with pytest.raises(ValueError, match="2 queues"):
            Pump(a, b)
        with pytest.raises(TypeError, match="endpoint="):
            Pump(a, "nowhere")
        p = Pump(a, Device("tpx3", netns=n1)).start()
        with pytest.raises(RuntimeError, match="already running"):
            p.start()
        p.stop()
