"""Faults and load (issue 12): each fault leaves the pump up, or stopped with
a clear event and exception; nothing hangs and every packet is counted."""
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from helpers.nettest import wait_until
from helpers.udp import received, udp_pumps, udp_receiver, udp_send
from helpers.world import assert_stats_add_up, pair
from helpers.world import World
from tunpump import Device, Pump, PumpError, UDPEndpoint, Verdict, WorkerError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def world(ns):
    w = World(ns)
    yield w
    w.close()


def run_in_thread(pump, timeout=10.0):
    """pump.run() on a thread; returns what it raised (None if nothing).
    Fails the test if run() is still blocked after `timeout` seconds."""
    box = {}

    def target():
        try:
            pump.run()
        except BaseException as exc:   # noqa: B902 - handed to the test
            box["exc"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pump.stop()
        pytest.fail(f"pump.run() still blocked {timeout} s after the fault")
    return box.get("exc")


# ---- the device deleted under a running pump ----------------------------------

def test_device_deleted_under_a_running_pump(ns):
    n1, n2, a, b = pair(ns)
    events = []
    with b:
        pump = Pump(a, b, on_event=events.append).start()
        assert ns.ping(n1, "198.18.11.2", count=2).returncode == 0
        ns.run(n1, "ip", "link", "del", a.name)
        ns.ping(n2, "198.18.11.1", count=1, timeout=2)   # traffic towards the gone device
        exc = run_in_thread(pump)
        assert isinstance(exc, PumpError), exc
        assert f"device {a.name!r} deleted" in str(exc) and "bad state" not in str(exc)
        assert not pump.running
        errs = [e for e in events if isinstance(e, WorkerError)]
        assert errs and errs[0].device_gone
        assert_stats_add_up(pump.stats())
        a.close()


def test_cli_says_device_deleted(ns):
    n1, n2 = ns.make(), ns.make()
    p = subprocess.Popen([sys.executable, "-m", "tunpump", "relay", "tpdela", "tpdelb", "--netns-a", n1,
                          "--netns-b", n2], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ns.procs.append(p)
    line = p.stdout.readline()
    assert "running" in line, line + p.stderr.read()
    ns.run(n1, "ip", "link", "del", "tpdela")
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the CLI kept running after its device was deleted")
    assert p.returncode == 2, (out, err)
    assert "device 'tpdela' deleted" in err and "bad state" not in err, err


# ---- the namespace deleted under a running pump --------------------------------

def test_namespace_deleted_under_a_relay(ns):
    """`ip netns del` removes the name; the namespace itself lives on while the
    pump's device fd holds it, so the pump stays up and keeps forwarding."""
    n1, n2, a, b = pair(ns)
    with a, b, Pump(a, b) as pump:
        assert ns.ping(n1, "198.18.11.2", count=2).returncode == 0
        assert subprocess.run(["ip", "netns", "del", n2]).returncode == 0
        assert not os.path.exists(f"/run/netns/{n2}")
        r = ns.ping(n1, "198.18.11.2", count=3)
        assert r.returncode == 0, r.stdout   # n2's kernel still answers through the pump
        assert pump.running and pump.error() is None
    assert_stats_add_up(pump.stats())
    assert pump.stats().to_device.packets_out >= 5


def test_namespace_of_a_udp_endpoint_deleted(world):
    p1, p2 = udp_pumps(world)
    with p1, p2:
        assert world.ns.ping(world.n1, "198.18.11.2", count=1).returncode == 0
        assert subprocess.run(["ip", "netns", "del", world.n2]).returncode == 0
        r = world.ns.ping(world.n1, "198.18.11.2", count=3)
        assert r.returncode == 0, r.stdout
        assert p1.error() is None and p2.error() is None
    for p in (p1, p2):
        assert_stats_add_up(p.stats())


# ---- callbacks that raise or hang ----------------------------------------------

def test_raising_callbacks_leave_the_pump_up(world, caplog):
    def on_flow(flow):
        if flow.protocol == 1:
            return Verdict.PUNT
        raise RuntimeError("policy bug")

    def on_packet(packet, flow):
        raise ValueError("punt handler bug")

    def on_event(ev):
        raise KeyError("event handler bug")

    p1, p2 = udp_pumps(world, on_flow=on_flow, on_packet=on_packet, on_event=on_event, stats_interval=0.1)
    with caplog.at_level(logging.ERROR, logger="tunpump"), p1, p2:
        world.ns.ping(world.n1, "198.18.11.2", count=2, timeout=3)   # punted: on_packet raises
        rx = udp_receiver(world.ns, world.n2, 7201)
        udp_send(world.ns, world.n1, "198.18.11.2", 7201, 20, sport=7301)   # on_flow raises: FORWARD
        assert received(rx) == list(range(20))
        assert wait_until(lambda: "on_event raised" in caplog.text, timeout=3)
        assert p1.running and p1.error() is None
    assert "on_flow raised" in caplog.text and "on_packet raised" in caplog.text
    assert p1.callback_errors >= 3
    assert_stats_add_up(p1.stats())


def test_callback_hanging_past_decision_timeout(world):
    release = threading.Event()
    entered = threading.Event()
    threads = threading.active_count()

    def on_flow(flow):
        if flow.protocol == 17:
            entered.set()
            release.wait(30)   # far past decision_timeout and stop()'s wait
        return Verdict.DROP

    p1, p2 = udp_pumps(world, on_flow=on_flow, decision_timeout=0.1, default_verdict=Verdict.FORWARD)
    with p2:
        p1.start()
        rx = udp_receiver(world.ns, world.n2, 7202)
        udp_send(world.ns, world.n1, "198.18.11.2", 7202, 10, sport=7302)
        assert received(rx) == list(range(10))   # fail-open after decision_timeout
        assert entered.is_set() and p1.stats().flows.decision_timeouts >= 1
        # stop() does not hang on the callback: it gives up waiting, the
        # workers are gone, and the core is freed when the callback returns
        t0 = time.monotonic()
        p1.stop()
        assert time.monotonic() - t0 < 6
        assert not p1.running
        assert_stats_add_up(p1.stats())
        release.set()
    assert wait_until(lambda: threading.active_count() <= threads, timeout=5)


# ---- stop() from a signal handler, a callback, and another thread ---------------

def test_stop_from_a_signal_handler(ns):
    n1, n2, a, b = pair(ns)
    with a, b:
        pump = Pump(a, b, on_event=lambda ev: None)
        old = signal.signal(signal.SIGUSR1, lambda *_: pump.stop())
        try:
            timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
            timer.start()
            t0 = time.monotonic()
            pump.run()   # returns once the handler stopped the pump
            assert time.monotonic() - t0 < 5
        finally:
            signal.signal(signal.SIGUSR1, old)
        assert not pump.running and pump.error() is None
        assert_stats_add_up(pump.stats())


def test_stop_from_a_callback_is_complete_when_it_returns(world):
    box = {}

    def on_flow(flow):
        if flow.protocol != 1:
            return None
        pump = box["pump"]
        pump.stop()
        box["running_after_stop"] = pump.running
        box["stats"] = pump.stats()
        return Verdict.FORWARD

    p1, p2 = udp_pumps(world, on_flow=on_flow)
    box["pump"] = p1
    with p2:
        p1.start()
        world.ns.run(world.n1, "ping", "-c", "1", "-W", "1", "198.18.11.2")
        assert wait_until(lambda: "stats" in box, timeout=5)
        assert box["running_after_stop"] is False
        assert not p1.running and p1.error() is None
        p1.stop()   # again, from here: nothing left to do
    assert_stats_add_up(box["stats"])


def test_stop_while_other_threads_read_stats(ns):
    n1, n2, a, b = pair(ns, queues=2)
    stop = threading.Event()
    failures = []
    with a, b:
        pumps = [Pump(a, b), Pump(a, b, on_event=lambda ev: None, stats_interval=0.01)]
        pump = pumps[0]

        def reader():
            while not stop.is_set():
                try:
                    pump.stats()
                    pump.stats(per_queue=True)
                    pump.error()
                except Exception as exc:   # noqa: BLE001 - collected for the test
                    failures.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        try:
            for i in range(80):
                pump = pumps[i % 10 == 0]   # sometimes with a control thread that reads stats too
                pump.start()
                stopper = threading.Thread(target=pump.stop)
                stopper.start()
                pump.stop()       # two threads stop at once
                stopper.join(5)
                assert not stopper.is_alive() and not pump.running
        finally:
            stop.set()
            for t in readers:
                t.join(5)
    assert not failures, failures[:3]
    assert_stats_add_up(pump.stats())


# ---- many start/stop cycles ----------------------------------------------------

def _rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_thousand_start_stop_cycles_leak_nothing(ns):
    n1 = ns.make()
    with Device("tpcy1", queues=2, netns=n1) as a, Device("tpcy2", queues=2, netns=n1) as b:
        udp = UDPEndpoint(("127.0.0.1", 6640), ("127.0.0.1", 6641), netns=n1)

        def cycle(i):
            if i % 10 == 0:
                # with a control thread (its stop() waits up to 50 ms for it)
                p = Pump(a, b, on_event=lambda ev: None, stats_interval=0.01)
            elif i % 2:
                p = Pump(a, b)
            else:
                p = Pump(a, udp)                           # with sockets
            p.start()
            p.stop()

        for i in range(100):   # warm-up: first-use allocations, malloc arenas
            cycle(i)
        fds, threads, rss = len(os.listdir("/proc/self/fd")), threading.active_count(), _rss_kb()
        native = len(os.listdir("/proc/self/task"))
        for i in range(1000):
            cycle(i)
        assert len(os.listdir("/proc/self/fd")) == fds
        assert threading.active_count() == threads
        assert len(os.listdir("/proc/self/task")) == native
        grown = _rss_kb() - rss
        assert grown < 4096, f"RSS grew by {grown} KiB over 1,000 cycles"


def test_device_closed_from_a_callback_while_another_thread_stops(ns):
    """The callback's close() must not return while the workers still use the
    fds, even though the first stop() (on the main thread) is waiting for
    that very callback to return."""
    n1, n2, a, b = pair(ns)
    tasks = lambda: len(os.listdir("/proc/self/task"))   # noqa: E731
    box = {}
    base = tasks()

    entered = threading.Event()

    def on_flow(flow):
        if "pump" not in box or flow.protocol != 1:
            return None
        entered.set()
        assert wait_until(lambda: box["pump"]._control._stop.is_set(), timeout=5)   # main is in stop()
        a.close()
        box["tasks_after_close"] = tasks()
        return None

    with b:
        pump = Pump(a, b, on_flow=on_flow)
        pump.start()
        assert tasks() == base + 2   # one worker and the control thread
        box["pump"] = pump
        ns.spawn(n1, "ping", "-c", "3", "-i", "0.2", "198.18.11.2")
        assert entered.wait(5)
        pump.stop()
        assert wait_until(lambda: "tasks_after_close" in box, timeout=5)
        assert box["tasks_after_close"] == base + 1   # the worker was gone when close() returned
        assert a.closed and not pump.running
    assert_stats_add_up(pump.stats())
