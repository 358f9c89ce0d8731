"""Regression tests for pump bugs (issue 9 item 7, issue 12 bugs 1, 5, 7, 20):
each failed before its fix."""
import os
import subprocess
import sys
import time

import pytest

from helpers.nettest import wait_until
from helpers.packets import udp_packet
from tunpump import Device, Pump, TCPEndpoint, UDPEndpoint, Verdict
from tunpump import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAIN = (0, 0, 0, 0)   # (pi, vnet_hdr_sz, tap, offloads)


def start_relay(dev_fmt=PLAIN, peer_fmt=PLAIN, nworkers=1, ctl=None):
    """A relay pump over pipes: enough for start() to check and allocate."""
    fds = [os.pipe() for _ in range(nworkers)]
    core = _core.CorePump()
    try:
        core.start(_core.KIND_TUN, 1, [r for r, _ in fds], dev_fmt, [r for r, _ in fds], peer_fmt, ctl=ctl)
    finally:
        core.stop()
        core.close()
        for r, w in fds:
            os.close(r)
            os.close(w)


# ---- start() checks its arguments and cleans up once ------------------------------

FD0_SCRIPT = """
import os, socket, sys, tempfile
from tunpump import _core
f = tempfile.TemporaryFile()
os.dup2(f.fileno(), 0)
before = os.fstat(0).st_ino
r, w = os.pipe()
core = _core.CorePump()
try:
    if sys.argv[1] == "ctl":
        # worker 0's control eventfd cannot be made (the pump's three can):
        # start() fails at worker 0 of 3. (A table_size over the limit no
        # longer gets this far: the config check refuses it.)
        import resource
        free = [os.dup(1) for _ in range(4)]
        for fd in free:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(free), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        core.start(_core.KIND_TUN, 1, [r, r, r], (0, 0, 0, 0), [r, r, r], (0, 0, 0, 0),
                   ctl={"enabled": 1, "table_size": 64})
    else:
        # worker 0's port is taken: start() fails at worker 0 of 3
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        core.start(_core.KIND_UDP, 1, [r, r, r], (0, 0, 0, 0),
                   sock={"family": socket.AF_INET, "local_addr": bytes([127, 0, 0, 1]), "local_port": port,
                         "remotes": [(bytes([127, 0, 0, 1]), 9)]})
    print("started")
except OSError as e:
    print("failed")
try:
    print("fd0", "same" if os.fstat(0).st_ino == before else "other")
except OSError:
    print("fd0 closed")
"""


@pytest.mark.parametrize("how", ["ctl", "port"])
def test_failed_start_leaves_fd_0_alone(how):
    """Workers not reached by a failed start() had fds 0, and both cleanup
    paths closed them: fd 0 (here a file) was closed twice."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":allocator_may_return_null=1"
    r = subprocess.run([sys.executable, "-c", FD0_SCRIPT, how], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["failed", "fd0", "same"], r.stdout + r.stderr


@pytest.mark.parametrize("fmt, what", [
    ((0, 16, 0, 0), "vnet_hdr_sz"),     # overflowed the 16-byte prefix buffer with PI
    ((1, 14, 0, 0), "vnet_hdr_sz"),
    ((0, 11, 0, 0), "vnet_hdr_sz"),
    ((2, 0, 0, 0), "device format"),
    ((0, 0, 3, 0), "device format"),
    ((0, 0, 0, 1), "offloads"),         # offloads need a vnet_hdr
    ((0, 12, 0, 0x1000), "offloads"),
])
def test_start_refuses_a_bad_device_format(fmt, what):
    with pytest.raises(OSError, match=what) as e:
        start_relay(dev_fmt=fmt)
    assert e.value.errno == 22
    with pytest.raises(OSError, match=what):
        start_relay(peer_fmt=fmt)


@pytest.mark.parametrize("fmt", [(0, 0, 0, 0), (1, 10, 1, 0x7f), (0, 12, 0, 0x67), (1, 12, 0, 0x01)])
def test_start_takes_every_good_device_format(fmt):
    start_relay(dev_fmt=fmt, peer_fmt=fmt)


def test_stats_are_words():
    """tp_pump_stats copies the struct as uint64 words (a static assertion
    in C holds it to that); the binding sees every field."""
    core = _core.CorePump()
    r, w = os.pipe()
    try:
        core.start(_core.KIND_TUN, 1, [r], PLAIN, [r], PLAIN)
        s = core.stats()[0]
        assert s["to_device"]["drops"].keys() == set(_core.DROP_REASONS)
        assert "too_many_segments" in _core.DROP_REASONS
    finally:
        core.stop()
        core.close()
        os.close(r)
        os.close(w)


# ---- bug 20: pending_limit ----------------------------------------------------------

def test_pending_limit_is_bounded_in_c():
    """65,536 slots of 64 KiB each were allocated per worker (4.3 GB)."""
    with pytest.raises(OSError, match="pending_limit"):
        start_relay(ctl={"enabled": 1, "pending_limit": 65536})
    with pytest.raises(OSError, match="pending_limit"):
        start_relay(ctl={"events": 1, "pending_limit": 4097})
    start_relay(ctl={"enabled": 1, "pending_limit": 4096, "table_size": 16})


@pytest.fixture
def dev(ns):
    n = ns.make()
    d = Device("tpbug", netns=n)
    yield n, d
    d.close()


def test_pending_limit_is_bounded_in_python(dev):
    n, d = dev
    ep = UDPEndpoint(("198.18.10.1", 6800), ("198.18.10.2", 6800), netns=n)
    with pytest.raises(ValueError, match=r"pending_limit=65536.*4096"):
        Pump(d, ep, on_flow=lambda f: Verdict.FORWARD, pending_limit=65536)
    Pump(d, ep, on_flow=lambda f: Verdict.FORWARD, pending_limit=4096)


# ---- bug 5: pending packets cycling ------------------------------------------------

def test_decision_timeout_must_be_below_idle_timeout(dev):
    n, d = dev
    ep = UDPEndpoint(("198.18.10.1", 6800), ("198.18.10.2", 6800), netns=n)
    for decision in (1.0, 2.0):
        with pytest.raises(ValueError, match="decision_timeout.*flow_idle_timeout"):
            Pump(d, ep, on_flow=lambda f: Verdict.FORWARD, flow_idle_timeout=1.0, decision_timeout=decision)
    Pump(d, ep, on_flow=lambda f: Verdict.FORWARD, flow_idle_timeout=1.0, decision_timeout=0.5)


RECV_ONE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.11.2", 7000))
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
got = []
try:
    while True:
        got.append(s.recv(100).decode())
except socket.timeout:
    pass
print(" ".join(got))
"""


def tunnel_pair(ns, port, vnet=False, mtu=1400):
    """Devices tpba (198.18.11.1, ns1) and tpbb (198.18.11.2, ns2) over veth."""
    n1, n2 = ns.make(), ns.make()
    ns.veth(n1, n2, "198.18.10.1/24", "198.18.10.2/24")
    a = Device("tpba", netns=n1, vnet_hdr=vnet)
    b = Device("tpbb", netns=n2, vnet_hdr=vnet)
    a.link.up().set_mtu(mtu).add_address("198.18.11.1/32", peer="198.18.11.2")
    b.link.up().set_mtu(mtu).add_address("198.18.11.2/32", peer="198.18.11.1")
    return n1, n2, a, b


def test_late_verdict_releases_pending_packets_once(ns):
    """A verdict given after flow_idle_timeout: the decided flow was evicted as
    idle, its released packet made it anew and went back to pending, and so
    on for ever. pump.py now refuses such timeouts; the C side must hold up
    regardless (here the timeouts are set below the Python check)."""
    n1, n2, a, b = tunnel_pair(ns, 6900)
    asked = []

    def on_flow(flow):
        if flow.dport == 7000:
            asked.append(flow.id)
            time.sleep(0.6)   # well past the idle timeout below
        return Verdict.FORWARD

    try:
        p1 = Pump(a, UDPEndpoint(("198.18.10.1", 6900), ("198.18.10.2", 6900), netns=n1), on_flow=on_flow,
                  flow_idle_timeout=10.0, decision_timeout=5.0)
        p1._ctl_cfg["idle_ns"] = 200_000_000
        p2 = Pump(b, UDPEndpoint(("198.18.10.2", 6900), ("198.18.10.1", 6900), netns=n2))
        rx = ns.python(n2, "-c", RECV_ONE, "3")
        assert rx.stdout.readline().strip() == "ready"
        with p1, p2:
            code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "s.sendto(b'hello', ('198.18.11.2', 7000))\n")
            r = ns.run(n1, sys.executable, "-c", code)
            assert r.returncode == 0, r.stderr
            out, _ = rx.communicate(timeout=30)
            stats = p1.stats()
        assert out.split() == ["hello"]
        assert len(asked) == 1, asked
        assert stats.flows.decision_timeouts == 0
    finally:
        a.close()
        b.close()


# ---- bug 1: UDP_GRO segment counts ---------------------------------------------------

GSO_SEND = """
import socket, sys
SOL_UDP, UDP_SEGMENT = 17, 103
seg, count, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data = bytes.fromhex(sys.argv[4])
assert len(data) == seg * count
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.setsockopt(SOL_UDP, UDP_SEGMENT, seg)
s.sendto(data, ("127.0.0.1", port))
print("sent")
"""


def test_udp_gro_datagram_with_more_segments_than_the_batch_holds(ns):
    """One UDP_SEGMENT datagram of 100 segments reaches a UDP_GRO socket
    whole; at batch=1 the packet array held 64 and the other 36 were written
    past it (a heap overflow). The array now has room for a whole packet
    beyond the batch, and a read takes at most the kernel's 128 segments
    (UDP_MAX_SEGMENTS) into it, never more than it holds: all 100 arrive.
    What does not fit is dropped as too_many_segments (fuzz_dgram checks the
    cut at every batch position)."""
    n1 = ns.make()
    a = Device("tpgro", netns=n1, vnet_hdr=True)
    try:
        a.link.up().add_address("198.18.11.1/24")
        assert {"tso4", "tso6"} <= a.offloads   # the pump turns UDP_GRO on for such a device
        seg, count = 60, 100
        pkts = [udp_packet("198.18.11.9", "198.18.11.1", 5000, 9, b"%04d" % i + b"x" * 28, ident=i)
                for i in range(count)]
        assert all(len(p) == seg for p in pkts)
        with Pump(a, UDPEndpoint(("127.0.0.1", 6950), learn_peer=True, netns=n1), batch=1) as p:
            r = ns.run(n1, sys.executable, "-c", GSO_SEND, str(seg), str(count), "6950", b"".join(pkts).hex())
            assert r.returncode == 0 and r.stdout.strip() == "sent", r.stderr
            assert wait_until(lambda: p.stats().to_device.packets_in >= count)
            time.sleep(0.2)
        d = p.stats().to_device
        assert d.packets_in == count
        assert d.drops["too_many_segments"] == 0, d
        assert d.packets_out == count, d
    finally:
        a.close()


# ---- bug 7: the TCP stream buffer ------------------------------------------------------

TCP_JUNK_THEN_PING = """
import socket, struct, sys
sys.path.insert(0, {tests!r})
from helpers.packets import ipv4_header, csum
def frame(p): return struct.pack("!H", len(p)) + p
def read_n(s, n):
    buf = b""
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c: raise SystemExit("closed")
        buf += c
    return buf
s = socket.create_connection(("198.18.10.1", 55600), timeout=10)
junk = frame(b"\\x00" * 1000)   # not an IP packet: the pump drops it as malformed
s.sendall(junk * {njunk})
body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"after-the-junk"
body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s.sendall(frame(ipv4_header("198.18.11.2", "198.18.11.1", 1, len(body)) + body))
while True:
    (n,) = struct.unpack("!H", read_n(s, 2))
    pkt = read_n(s, n)
    if pkt[9] == 1 and pkt[20] == 0:
        print("reply", pkt[28:].decode()); break
"""


def test_tcp_stream_survives_frames_the_device_refuses(ns):
    """The stream buffer was compacted only after a read that delivered a
    packet: 256 KiB of frames that were all dropped filled it, the next read
    asked for 0 bytes, got 0, and the connection was closed as if by the
    peer."""
    n1, n2 = ns.make(), ns.make()
    ns.veth(n1, n2, "198.18.10.1/24", "198.18.10.2/24")
    a = Device("tptcp", netns=n1)
    try:
        a.link.up().add_address("198.18.11.1/32", peer="198.18.11.2")
        njunk = 300   # 300 KB of frames, more than the 256 KiB buffer
        with Pump(a, TCPEndpoint.listen(("198.18.10.1", 55600), netns=n1)) as p:
            code = TCP_JUNK_THEN_PING.format(tests=os.path.join(ROOT, "tests"), njunk=njunk)
            r = ns.run(n2, sys.executable, "-c", code, timeout=60)
            assert r.stdout.strip() == "reply after-the-junk", r.stdout + r.stderr
            s = p.stats()
        # one connection all along (the client closes it when done)
        assert s.connects == 1 and s.protocol_errors == 0
        assert s.to_device.drops["malformed"] == njunk
        assert s.to_device.packets_out >= 1
    finally:
        a.close()


EMPTY_SEND = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.sendto(b"", ("127.0.0.1", 6960))
print("sent")
"""


def test_empty_udp_datagram_is_counted_as_malformed(ns):
    """An empty datagram was counted in but neither out nor dropped."""
    n1 = ns.make()
    a = Device("tpudp0", netns=n1)
    try:
        a.link.up()
        with Pump(a, UDPEndpoint(("127.0.0.1", 6960), learn_peer=True, netns=n1)) as p:
            r = ns.run(n1, sys.executable, "-c", EMPTY_SEND)
            assert r.returncode == 0 and r.stdout.strip() == "sent", r.stderr
            assert wait_until(lambda: p.stats().to_device.packets_in >= 1)
        d = p.stats().to_device
        assert d.packets_in == 1 and d.drops["malformed"] == 1, d
    finally:
        a.close()
