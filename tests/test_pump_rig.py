"""Pump behaviour that needs no kernel device: each test body runs on fake
devices (a socketpair per queue, no root) and on real TUN devices in
namespaces (the `rig` fixture, tests/helpers/fakedev.py)."""
import errno
import fcntl
import os
import socket
import subprocess
import sys

import pytest

from helpers.fakedev import FakeDevice
from helpers.nettest import wait_until
from helpers.world import assert_stats_add_up
from helpers.packets import udp_packet
from tunpump import Pump, Verdict

N = 50


def payloads(tag: str, n: int = N):
    return [f"{tag}-{i:04d}".encode() * (1 + i % 7) for i in range(n)]


def test_relay_carries_datagrams_both_ways(rig):
    with Pump(rig.a, rig.b) as pump:
        for side, tag in ((0, "ab"), (1, "ba")):
            sent = payloads(tag)
            with rig.receiver(1 - side, 7000) as rx:
                rig.send(side, sent, 7000)
                assert rx.collect(len(sent)) == sent
    s = pump.stats()
    assert_stats_add_up(s)
    for d in ("to_endpoint", "to_device"):
        assert s.direction(d).packets_out >= N
        if rig.exact:
            assert s.direction(d).packets_in == s.direction(d).packets_out == N


def test_udp_tunnel_carries_datagrams_both_ways(rig):
    e1, e2 = rig.underlay(6600)
    with Pump(rig.a, e1) as p1, Pump(rig.b, e2) as p2:
        for side, tag in ((0, "ab"), (1, "ba")):
            sent = payloads(tag)
            with rig.receiver(1 - side, 7000) as rx:
                rig.send(side, sent, 7000)
                assert rx.collect(len(sent)) == sent
    for p in (p1, p2):
        s = p.stats()
        assert_stats_add_up(s)
        if rig.exact:
            assert s.to_endpoint.packets_out == s.to_device.packets_out == N


def test_on_flow_drops_one_port_and_forwards_another(rig):
    seen = []

    def on_flow(flow):
        seen.append((flow.protocol_name, flow.src, flow.dst, flow.dport))
        return Verdict.DROP if flow.dport == 7001 else Verdict.FORWARD

    with Pump(rig.a, rig.b, on_flow=on_flow) as pump:
        with rig.receiver(1, 7000) as ok, rig.receiver(1, 7001) as blocked:
            rig.send(0, payloads("drop", 5), 7001, sport=40001)
            rig.send(0, payloads("pass", 5), 7000, sport=40000)
            assert ok.collect(5) == payloads("pass", 5)
            assert blocked.collect(1, timeout=0.3) == []
        assert wait_until(lambda: pump.stats().to_endpoint.drops["verdict"] == 5)
    assert ("udp", "198.18.11.1", "198.18.11.2", 7001) in seen
    assert ("udp", "198.18.11.1", "198.18.11.2", 7000) in seen
    assert_stats_add_up(pump.stats())


# ---- fake devices only: what a real device would hide --------------------------

def test_fake_relay_between_formats_adds_and_strips_prefixes():
    """PI + vnet_hdr on one side, plain on the other: the pump converts each
    packet's prefix and leaves the packet itself byte for byte."""
    a = FakeDevice("fa", pi=True, vnet_hdr_size=12)
    b = FakeDevice("fb")
    pkt = udp_packet("198.18.11.1", "198.18.11.2", 40000, 7000, b"x" * 300)
    try:
        with Pump(a, b) as pump:
            a.send(pkt)
            assert b.wire[0].recv(4096) == pkt                 # plain: no prefix at all
            b.send(pkt)
            raw = a.wire[0].recv(4096)
            assert raw[:4] == b"\0\0\x08\x00"                   # PI: IPv4
            assert raw[4:16] == bytes(12) and raw[16:] == pkt    # an empty vnet header
        assert_stats_add_up(pump.stats())
    finally:
        a.close()
        b.close()


def test_fake_malformed_packet_is_counted_not_forwarded():
    """A read no longer than the device's prefix is a malformed packet."""
    a, b = FakeDevice("fa", vnet_hdr_size=12), FakeDevice("fb")
    try:
        with Pump(a, b) as pump:
            a.wire[0].send(bytes(12))                    # a prefix and no packet
            a.send(udp_packet("198.18.11.1", "198.18.11.2", 40000, 7000, b"ok"))
            assert b.recv()[-2:] == b"ok"
            assert wait_until(lambda: pump.stats().to_endpoint.drops["malformed"] == 1)
        assert_stats_add_up(pump.stats())
    finally:
        a.close()
        b.close()


def test_fake_inject_into_device():
    a, b = FakeDevice("fa", pi=True), FakeDevice("fb")
    pkt = udp_packet("198.18.11.2", "198.18.11.1", 7000, 40000, b"from python")
    try:
        with Pump(a, b) as pump:
            pump.inject(pkt)                              # into a, with its PI prefix
            a.wire[0].settimeout(5)
            assert a.wire[0].recv(4096) == b"\0\0\x08\x00" + pkt
    finally:
        a.close()
        b.close()


def test_fake_device_is_a_nonblocking_seqpacket_socket():
    a = FakeDevice("fa")
    try:
        assert fcntl.fcntl(a.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        s = socket.socket(fileno=os.dup(a.fileno()))
        with s:
            assert s.type == socket.SOCK_SEQPACKET
    finally:
        a.close()


EOF_CHILD = """
import os, sys, threading, time
sys.path.insert(0, {tests!r})
from helpers.fakedev import FakeDevice
from tunpump import Pump
a, b = FakeDevice("fa"), FakeDevice("fb")
p = Pump(a, b).start()
a.wire[0].close()          # the device side reads 0 bytes from now on
time.sleep(0.2)
err = p.error()
t = threading.Thread(target=p.stop, daemon=True)
t.start()
t.join(3)
print("stopped" if not t.is_alive() else "hung", flush=True)
print(err.errno if err else None, err, flush=True)
os._exit(0)
"""


def test_fake_device_at_eof_does_not_hang_stop():
    """A read of 0 bytes was counted as malformed and read again without
    bound: the worker spun and stop() never returned. Now a device that
    reads 0 bytes (only a socket standing in for one can: its other end
    closed) ends the worker with EPIPE at "device read"."""
    tests = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", EOF_CHILD.format(tests=tests)], capture_output=True, text=True,
                       timeout=60, cwd=os.path.dirname(tests))
    lines = r.stdout.strip().splitlines()
    assert lines and lines[0] == "stopped", r.stdout + r.stderr
    assert lines[1].startswith(f"{errno.EPIPE} ") and "device read" in lines[1], r.stdout + r.stderr


def test_malformed_reads_do_not_starve_stop():
    """Reads that yield no packet (a prefix and nothing else) are capped per
    wakeup too: a flood of them leaves the pump stoppable and each counted."""
    a, b = FakeDevice("fa", vnet_hdr_size=12), FakeDevice("fb", vnet_hdr_size=12)
    try:
        with Pump(a, b, batch=4) as pump:
            for _ in range(200):
                a.wire[0].send(bytes(12))
            a.send(udp_packet("198.18.11.1", "198.18.11.2", 40000, 7000, b"ok"))
            assert b.recv()[-2:] == b"ok"
        assert pump.stats().to_endpoint.drops["malformed"] == 200
        assert_stats_add_up(pump.stats())
    finally:
        a.close()
        b.close()


NOBODY = 65534
UNPRIVILEGED = """
import os, sys
sys.path.insert(0, {tests!r})
from helpers.fakedev import Rig
from helpers.world import assert_stats_add_up
from tunpump import Pump
os.setgroups([])
os.setgid({uid})
os.setuid({uid})            # no capability left: no device, no namespace could be made
rig = Rig("fake", None)     # without the privilege: the tunnel runs over this namespace's 127.0.0.1
try:
    e1, e2 = rig.underlay(0)
    with Pump(rig.a, rig.b) as relay:
        with rig.receiver(1, 7000) as rx:
            rig.send(0, [b"relay"] * 20, 7000)
            assert rx.collect(20) == [b"relay"] * 20
    with Pump(rig.a, e1) as p1, Pump(rig.b, e2) as p2:
        with rig.receiver(0, 7000) as rx:
            rig.send(1, [b"tunnel"] * 20, 7000)
            assert rx.collect(20) == [b"tunnel"] * 20
    for p in (relay, p1, p2):
        assert_stats_add_up(p.stats())
finally:
    rig.close()
print("ok")
"""


def test_fake_devices_need_no_privilege(ns):
    """The fake-device tests run as an unprivileged user (here: root drops
    every capability, inside a namespace made for the test)."""
    n = ns.make()
    tests = os.path.dirname(os.path.abspath(__file__))
    r = ns.run(n, sys.executable, "-c", UNPRIVILEGED.format(tests=tests, uid=NOBODY), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
