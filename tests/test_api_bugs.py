"""Regression tests for the Python API bugs of issue 12 (bugs 12-17)."""
import asyncio
import errno
import subprocess
import sys

import pytest

from helpers.nettest import ip_link_json
from helpers.world import World
from tunpump import Device, DeviceConflictError, PeerUp, PrivilegeError, Pump, UDPEndpoint


def tun_data(ns_name, name):
    return ip_link_json(ns_name, name)["linkinfo"]["info_data"]


def has_link(ns, ns_name, name):
    return ns.run(ns_name, "ip", "link", "show", name).returncode == 0


# ---- bug 12: stop() from signal handlers, re-entrantly -------------------------

SIGNAL_STOP = r"""
import os, signal, sys, threading, time
from tunpump import Device, Pump

n = sys.argv[1]
a = Device("tpsa", netns=n)
b = Device("tpsb", netns=n)
pump = Pump(a, b, on_event=lambda ev: None)   # a control thread: stop() joins it
handled = []

def on_term(signum, frame):
    handled.append(time.monotonic())
    pump.stop()

signal.signal(signal.SIGTERM, on_term)

def kill_repeatedly():
    time.sleep(0.3)
    for _ in range(40):                      # SIGTERMs a few milliseconds apart
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.003)

threading.Thread(target=kill_repeatedly, daemon=True).start()
pump.run()
time.sleep(0.3)                              # the last signals land after run() returned
print("stopped", len(handled), pump.running, flush=True)
"""


def test_stop_from_nested_signal_handlers_does_not_deadlock(ns):
    n = ns.make()
    for _ in range(3):   # the race is timing-dependent: try a few times
        try:
            r = subprocess.run([sys.executable, "-c", SIGNAL_STOP, n], capture_output=True, text=True,
                               timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("the process hung: a SIGTERM inside stop() deadlocked")
        assert r.returncode == 0, r.stderr
        words = r.stdout.split()
        assert words[0] == "stopped" and int(words[1]) >= 2 and words[2] == "False", r.stdout


# ---- bug 13: closing a device under a running pump ------------------------------

def test_closing_a_device_stops_its_pumps_first(ns):
    n = ns.make()
    a = Device("tpca", netns=n)
    b = Device("tpcb", netns=n)
    pump = Pump(a, b).start()
    fd = a.fileno()
    a.close()
    assert not pump.running
    assert pump.error() is None
    # the fd number may now be reused by a new device: the old worker is gone
    c = Device("tpcc", netns=n)
    try:
        assert not pump.running
        # the pump cannot be restarted on the closed device
        with pytest.raises(ValueError, match="closed"):
            pump.start()
        del fd
    finally:
        c.close()
        b.close()


def test_closing_the_relay_peer_device_stops_the_pump(ns):
    n = ns.make()
    with Device("tppa", netns=n) as a:
        b = Device("tppb", netns=n)
        pump = Pump(a, b).start()
        b.close()
        assert not pump.running
        s = pump.stats()
        for d in (s.to_endpoint, s.to_device):
            assert d.packets_in == d.packets_out + d.dropped


def test_closing_a_device_after_its_pump_stopped_is_plain(ns):
    n = ns.make()
    a, b = Device("tpqa", netns=n), Device("tpqb", netns=n)
    pump = Pump(a, b)
    pump.start()
    pump.stop()
    a.close()
    b.close()
    assert not pump.running


# ---- bug 14: attach with mismatched flags ---------------------------------------

def test_attach_multi_queue_with_vnet_hdr_the_device_lacks(ns):
    n = ns.make()
    with Device("tpmq", queues=2, netns=n):
        with pytest.raises(DeviceConflictError, match="vnet_hdr") as ei:
            Device("tpmq", queues=1, multi_queue=True, vnet_hdr=True, netns=n)
        assert ei.value.errno == errno.EINVAL
        assert tun_data(n, "tpmq")["numqueues"] == 2   # the refused queue was closed
        # the other way round: the device has vnet_hdr, the caller does not want it
    with Device("tpmv", queues=2, vnet_hdr=True, netns=n):
        with pytest.raises(DeviceConflictError, match="vnet_hdr"):
            Device("tpmv", queues=1, multi_queue=True, netns=n)
        with Device("tpmv", queues=1, multi_queue=True, vnet_hdr=True, netns=n) as more:
            assert more.vnet_hdr_size == 12


def test_flags_are_read_back_after_attaching(ns, monkeypatch):
    """Even when the device appears between the check and the attach (here:
    the check is skipped), the flags the kernel applied are read back."""
    from tunpump import device as devmod
    n = ns.make()
    with Device("tprb", queues=2, netns=n):
        monkeypatch.setattr(devmod, "_existing", lambda name: None)
        with pytest.raises(DeviceConflictError, match="kept the device's own flags.*vnet_hdr"):
            Device("tprb", queues=1, multi_queue=True, vnet_hdr=True, netns=n)
        assert tun_data(n, "tprb")["numqueues"] == 2


@pytest.mark.parametrize("kwargs,word", [({"vnet_hdr": True}, "vnet_hdr"), ({"pi": True}, "pi")],
                         ids=["vnet_hdr", "pi"])
def test_attach_to_persistent_device_does_not_rewrite_its_flags(ns, kwargs, word):
    n = ns.make()
    with Device("tpps", persist=True, netns=n):
        pass
    try:
        before = tun_data(n, "tpps")
        assert not before["vnet_hdr"] and not before["pi"]
        with pytest.raises(DeviceConflictError, match=word):
            Device("tpps", netns=n, **kwargs)
        after = tun_data(n, "tpps")
        assert (after["vnet_hdr"], after["pi"]) == (False, False)
        # attaching with the device's own flags works
        with Device("tpps", netns=n) as same:
            assert same.prefix_size == 0
    finally:
        ns.run(n, "ip", "link", "del", "tpps")


def test_attach_to_persistent_vnet_hdr_device_needs_vnet_hdr(ns):
    n = ns.make()
    with Device("tppv", vnet_hdr=True, pi=True, persist=True, netns=n):
        pass
    try:
        with pytest.raises(DeviceConflictError, match="vnet_hdr"):
            Device("tppv", pi=True, netns=n)
        with pytest.raises(DeviceConflictError, match="pi"):
            Device("tppv", vnet_hdr=True, netns=n)
        data = tun_data(n, "tppv")
        assert data["vnet_hdr"] and data["pi"]
        with Device("tppv", vnet_hdr=True, pi=True, netns=n) as d:
            assert d.prefix_size == 16
    finally:
        ns.run(n, "ip", "link", "del", "tppv")


# ---- bug 15: a failed persistent create leaves nothing behind --------------------

@pytest.mark.parametrize("arg", ["owner", "group"])
def test_unknown_owner_leaves_no_device(ns, arg):
    n = ns.make()
    with pytest.raises(ValueError, match=f"{arg}='tpnosuchname': no such"):
        Device("tpown", persist=True, netns=n, **{arg: "tpnosuchname"})
    assert not has_link(ns, n, "tpown")


def test_kernel_failure_after_persist_leaves_no_device(ns, monkeypatch):
    from tunpump import device as devmod

    def refuse(fd, gid):
        raise OSError(errno.EPERM, "TUNSETGROUP: Operation not permitted")

    n = ns.make()
    monkeypatch.setattr(devmod._core, "set_group", refuse)
    with pytest.raises(PrivilegeError):
        Device("tpgrp", persist=True, group=0, netns=n)
    assert not has_link(ns, n, "tpgrp")


def test_failed_attach_keeps_an_existing_persistent_device(ns, monkeypatch):
    from tunpump import device as devmod
    n = ns.make()
    with Device("tpkeep", persist=True, netns=n):
        pass
    try:
        def refuse(fd, uid):
            raise OSError(errno.EPERM, "TUNSETOWNER: Operation not permitted")
        monkeypatch.setattr(devmod._core, "set_owner", refuse)
        with pytest.raises(PrivilegeError):
            Device("tpkeep", persist=True, owner=0, netns=n)
        assert tun_data(n, "tpkeep")["persist"]   # it was there before: it stays
    finally:
        ns.run(n, "ip", "link", "del", "tpkeep")


def test_exclusive_on_existing_device_says_it_exists(ns):
    n = ns.make()
    with Device("tpexi", netns=n):
        with pytest.raises(DeviceConflictError, match="'tpexi' already exists") as ei:
            Device("tpexi", exclusive=True, netns=n)
        assert ei.value.errno == errno.EBUSY


# ---- bug 16: events() registers when created --------------------------------------

def test_events_iterator_created_before_start_sees_events(ns):
    w = World(ns)
    try:
        server = Pump(w.a, UDPEndpoint(("198.18.10.1", 6620), netns=w.n1))
        client = Pump(w.b, UDPEndpoint(("198.18.10.2", 6621), ("198.18.10.1", 6620), netns=w.n2))

        async def main():
            events = server.events()       # made before start(), first iterated after it
            server.start()
            client.start()
            try:
                r = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: w.ns.ping(w.n2, "198.18.11.1", count=1))
                assert r.returncode == 0, r.stdout
                return await asyncio.wait_for(events.__anext__(), 5)
            finally:
                client.stop()
                server.stop()
                await events.aclose()

        ev = asyncio.run(main())
        assert isinstance(ev, PeerUp) and ev.address == ("198.18.10.2", 6621)
    finally:
        w.close()


def test_events_iterator_ends_registration_when_closed(ns):
    n = ns.make()
    with Device("tpev1", netns=n) as a, Device("tpev2", netns=n) as b:
        pump = Pump(a, b)

        async def main():
            it = pump.events()
            assert pump._control.streams
            await it.aclose()
            assert not pump._control.streams
            with pytest.raises(StopAsyncIteration):
                await it.__anext__()

        asyncio.run(main())


# ---- bug 17: a TUN device relayed to a TAP device ---------------------------------

@pytest.mark.parametrize("modes", [("tun", "tap"), ("tap", "tun")])
def test_relay_between_tun_and_tap_is_refused(ns, modes):
    n = ns.make()
    with Device("tpm1", modes[0], netns=n) as a, Device("tpm2", modes[1], netns=n) as b:
        with pytest.raises(ValueError, match=f"{modes[0].upper()}.*{modes[1].upper()}") as ei:
            Pump(a, b)
        assert "tpm1" in str(ei.value) and "tpm2" in str(ei.value)
