"""Faults on the endpoint side (issue 12, "Faults and load"), in namespaces:
a sink that cannot take more (a full UDP send buffer behind a slow link, a
TCP peer that stops reading) and a peer killed and restarted. Each leaves the
pump up, never hung, with every packet it read counted (in == out + drops)."""
import json
import os
import signal
import socket
import sys
import time

from helpers.framing import echo_request, frame
from helpers.nettest import wait_until
from helpers.world import assert_stats_add_up
from tunpump import Pump, TCPEndpoint, UDPEndpoint
from tunpump.netns import entered

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLAST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent = 0
for i in range({count}):
    try:
        s.sendto(b"x" * {size}, ("198.18.11.2", 9))
        sent += 1
    except OSError:
        pass
print(sent)
"""


def blast(world, count=20000, size=1000):
    """A bounded burst from n1's stack into device a (towards 198.18.11.2)."""
    r = world.ns.run(world.n1, sys.executable, "-c", BLAST.format(count=count, size=size), timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def tx_dropped(ns, n, dev):
    out = ns.run(n, "ip", "-s", "-j", "link", "show", dev).stdout
    return json.loads(out)[0]["stats64"]["tx"]["dropped"]


def assert_no_send_losses(d):
    assert d.drops["enobufs"] == 0 and d.drops["write_error"] == 0, d


def test_udp_full_send_buffer_parks_and_counts(world):
    """A tiny SO_SNDBUF behind a 1 Mbit/s link: sendmmsg says EAGAIN, the
    batch waits for POLLOUT and the device is not read meanwhile (its own
    queue overflows, in the kernel), nothing the pump read is lost
    uncounted, and the tunnel works afterwards."""
    va = json.loads(world.ns.run(world.n1, "ip", "-j", "link", "show", "type", "veth").stdout)[0]["ifname"]
    world.ns.run(world.n1, "tc", "qdisc", "add", "dev", va, "root", "tbf", "rate", "1mbit", "burst", "10k",
                 "latency", "50ms")
    e1 = UDPEndpoint(("198.18.10.1", 6300), ("198.18.10.2", 6300), netns=world.n1, sock_buf=4096)
    e2 = UDPEndpoint(("198.18.10.2", 6300), ("198.18.10.1", 6300), netns=world.n2)
    with Pump(world.a, e1) as p1, Pump(world.b, e2) as p2:
        before = tx_dropped(world.ns, world.n1, "tpua")
        assert blast(world) > 0
        assert p1.error() is None
        d = p1.stats().to_endpoint
        assert d.packets_out > 0
        assert_no_send_losses(d)                                   # EAGAIN parks, never drops
        assert tx_dropped(world.ns, world.n1, "tpua") > before     # the device waited meanwhile
        world.ns.run(world.n1, "tc", "qdisc", "del", "dev", va, "root")
        assert wait_until(lambda: world.ns.ping(world.n1, "198.18.11.2", count=1, timeout=3).returncode == 0,
                          timeout=15)
        assert p1.error() is None and p2.error() is None
    for p in (p1, p2):
        assert_stats_add_up(p.stats())
    assert_no_send_losses(p1.stats().to_endpoint)


def test_tcp_peer_that_stops_reading(world):
    """A TCP peer that stops reading: the stream fills, the batch waits for
    room (the device is not read meanwhile), the other direction still
    flows, and once the peer reads again everything parked goes out."""
    with Pump(world.a, TCPEndpoint.listen(("198.18.10.1", 55640), netns=world.n1, sock_buf=16384)) as p:
        with entered(world.n2):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(10)
        c.connect(("198.18.10.1", 55640))
        try:
            assert wait_until(lambda: p.stats().connects == 1)
            before = tx_dropped(world.ns, world.n1, "tpua")
            blast(world, count=5000)
            assert tx_dropped(world.ns, world.n1, "tpua") > before      # the pump stopped reading the device
            c.sendall(frame(echo_request("198.18.11.2", "198.18.11.1", seq=7)))
            assert wait_until(lambda: p.stats().to_device.packets_out == 1)   # the other way still flows
            got, deadline = 0, time.monotonic() + 30
            while time.monotonic() < deadline:                           # the peer reads again
                try:
                    chunk = c.recv(1 << 16)
                except socket.timeout:
                    break
                if not chunk:
                    break
                got += len(chunk)
                d = p.stats().to_endpoint
                if got >= d.bytes_out + 2 * d.packets_out and d.packets_in == d.packets_out + d.dropped:
                    break
            d = p.stats().to_endpoint
            # The device's own first packets (IPv6 router solicitations, MLD) may
            # come before the client connected: those, and only those, are dropped.
            assert d.dropped == d.drops["no_connection"], d
            assert d.packets_in == d.packets_out + d.dropped and got == d.bytes_out + 2 * d.packets_out, (got, d)
            assert p.error() is None
        finally:
            c.close()
    assert_stats_add_up(p.stats())
    assert_no_send_losses(p.stats().to_endpoint)


PEER = """
import os, sys, time
from tunpump import Device, Pump, TCPEndpoint, UDPEndpoint
kind, role, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
dev = Device("tpub")
dev.link.up().add_address("198.18.11.2/32", peer="198.18.11.1")
if kind == "udp":
    ep = UDPEndpoint(("198.18.10.2", 0), ("198.18.10.1", port))
elif role == "server":
    ep = TCPEndpoint.listen(("198.18.10.2", port))
else:
    ep = TCPEndpoint.connect(("198.18.10.1", port))
with Pump(dev, ep):
    print("up", flush=True)
    time.sleep(120)
"""


def start_peer(world, kind, role, port):
    proc = world.ns.python(world.n2, "-c", PEER, kind, role, str(port), cwd=ROOT)
    line = proc.stdout.readline().strip()
    if line != "up":
        proc.kill()
        raise AssertionError(f"the peer did not start: {line!r} {proc.stderr.read()[-2000:]}")
    return proc


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def ping_works(world, timeout=20):
    return wait_until(lambda: world.ns.ping(world.n1, "198.18.11.2", count=1, timeout=3).returncode == 0,
                      timeout=timeout, interval=0.2)


def test_udp_client_killed_and_restarted_is_relearned(world):
    """The client's process is killed; its restart comes from a new port.
    The server re-learns it once the old one has been silent peer_timeout."""
    world.b.close()
    world.b = None                                        # the peer process makes its own tpub
    server = UDPEndpoint(("198.18.10.1", 6310), netns=world.n1, peer_timeout=1.0)
    with Pump(world.a, server) as p:
        peer = start_peer(world, "udp", "client", 6310)
        assert world.ns.ping(world.n2, "198.18.11.1", count=1).returncode == 0   # the client speaks first
        assert ping_works(world)
        kill(peer)
        peer = start_peer(world, "udp", "client", 6310)
        assert wait_until(lambda: world.ns.ping(world.n2, "198.18.11.1", count=1, timeout=3).returncode == 0,
                          timeout=20, interval=0.2)
        assert ping_works(world)
        assert p.stats().peers_learned == 2 and p.error() is None
        kill(peer)
    assert_stats_add_up(p.stats())


def test_tcp_client_reconnects_after_the_server_restarts(world):
    """The server's process is killed and restarted: the client's pump
    counts the disconnect, reconnects by itself, and the tunnel works again."""
    world.b.close()
    world.b = None
    with Pump(world.a, TCPEndpoint.connect(("198.18.10.2", 55650), netns=world.n1)) as p:
        peer = start_peer(world, "tcp", "server", 55650)
        assert wait_until(lambda: p.stats().connects == 1, timeout=10)
        assert ping_works(world)
        kill(peer)
        assert wait_until(lambda: p.stats().disconnects == 1, timeout=10)
        peer = start_peer(world, "tcp", "server", 55650)
        assert wait_until(lambda: p.stats().connects == 2, timeout=15)
        assert ping_works(world)
        assert p.error() is None
        kill(peer)
    assert_stats_add_up(p.stats())


def test_tcp_server_takes_a_restarted_client(world):
    """The client's process is killed and restarted: the server takes the new
    connection (the old one is reset or replaced) and the tunnel works."""
    world.b.close()
    world.b = None
    with Pump(world.a, TCPEndpoint.listen(("198.18.10.1", 55660), netns=world.n1)) as p:
        peer = start_peer(world, "tcp", "client", 55660)
        assert wait_until(lambda: p.stats().connects == 1, timeout=10)
        assert ping_works(world)
        kill(peer)
        peer = start_peer(world, "tcp", "client", 55660)
        assert wait_until(lambda: p.stats().connects == 2, timeout=15)
        assert ping_works(world)
        assert p.error() is None
        kill(peer)
    assert_stats_add_up(p.stats())
