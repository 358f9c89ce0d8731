"""UDP and TCP tunnels between two namespaces joined by a veth pair."""
import struct
import sys
import os
import time

import pytest

from helpers.framing import echo_request
from helpers.nettest import wait_until
from helpers.world import World, assert_stats_add_up, check_traffic
from helpers.packets import csum, ipv4_header
from tunpump import Device, Pump, PumpError, TCPEndpoint, UDPEndpoint

HERE = os.path.dirname(os.path.abspath(__file__))
UNDERLAY = {4: ("198.18.10.1", "198.18.10.2"), 6: ("fd00:10::1", "fd00:10::2")}


def icmp_in_echos(ns, n):
    lines = [ln.split() for ln in ns.run(n, "cat", "/proc/net/snmp").stdout.splitlines() if ln.startswith("Icmp:")]
    return int(lines[1][lines[0].index("InEchos")])


# ---- UDP -----------------------------------------------------------------------

@pytest.mark.parametrize("underlay", [4, 6])
@pytest.mark.parametrize("inner", [4, 6])
def test_udp_tunnel(world, underlay, inner):
    x, y = UNDERLAY[underlay]
    e1 = UDPEndpoint((x, 6000), (y, 6000), netns=world.n1)
    e2 = UDPEndpoint((y, 6000), (x, 6000), netns=world.n2)
    with Pump(world.a, e1) as p1, Pump(world.b, e2) as p2:
        check_traffic(world, 64 << 20, inner=(inner, 10 - inner))
        assert p1.stats().to_endpoint.packets_out > 0
    for p in (p1, p2):
        assert_stats_add_up(p.stats())


def test_udp_stranger_is_dropped_and_counted(world):
    e1 = UDPEndpoint(("198.18.10.1", 6000), ("198.18.10.2", 6000), netns=world.n1)
    e2 = UDPEndpoint(("198.18.10.2", 6000), ("198.18.10.1", 6000), netns=world.n2)
    with Pump(world.a, e1) as p1, Pump(world.b, e2):
        # A datagram carrying a valid inner packet, from the right host but the wrong port.
        body = struct.pack("!BBHHH", 8, 0, 0, 7, 1) + b"inject"
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        pkt = ipv4_header("198.18.11.2", "198.18.11.1", 1, len(body)) + body
        code = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.bind(('198.18.10.2', 6001)); "
                f"[s.sendto(bytes.fromhex('{pkt.hex()}'), ('198.18.10.1', 6000)) for _ in range(5)]")
        r = world.ns.run(world.n2, sys.executable, "-c", code)
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: p1.stats().to_device.drops["unknown_peer"] == 5)
        assert icmp_in_echos(world.ns, world.n1) == 0  # nothing reached ns1's stack
        check_traffic(world, 1 << 20, inner=(4,))
    assert_stats_add_up(p1.stats())


def test_udp_learn_peer_server(world):
    server = UDPEndpoint(("198.18.10.1", 6100), netns=world.n1)  # learns its client
    assert server.learn_peer
    client = UDPEndpoint(("198.18.10.2", 0), ("198.18.10.1", 6100), netns=world.n2)
    with Pump(world.a, server) as p1, Pump(world.b, client):
        # The server knows no peer until the client speaks: ping from the client side first.
        r = world.ns.ping(world.n2, "198.18.11.1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert p1.stats().peers_learned == 1
        check_traffic(world, 8 << 20, inner=(4,))


@pytest.mark.parametrize("world", [{"queues": 2}], ids=["2queues"], indirect=True)
def test_udp_two_queues(world):
    w = world
    e1 = UDPEndpoint(("198.18.10.1", 6200), ("198.18.10.2", 6200), netns=w.n1)
    e2 = UDPEndpoint(("198.18.10.2", 6200), ("198.18.10.1", 6200), netns=w.n2)
    with Pump(w.a, e1) as p1, Pump(w.b, e2):
        check_traffic(w, 16 << 20, inner=(4,))
        assert len(p1.stats(per_queue=True)) == 2


def test_udp_endpoint_arguments():
    with pytest.raises(ValueError, match="remote=None"):
        UDPEndpoint(("198.18.0.1", 5000), learn_peer=False)
    with pytest.raises(ValueError, match="port"):
        UDPEndpoint("198.18.0.1:99999", "198.18.0.2:1")
    with pytest.raises(ValueError, match="not an IP address"):
        UDPEndpoint(("198.18.0.1", 1), ("no-such-host.invalid", 1))
    with pytest.raises(ValueError, match="same IP version"):
        Pump.__new__(Pump)  # no-op: keep the pump import used
        UDPEndpoint(("198.18.0.1", 1), ("fd00::1", 1)).sock_cfg(1)
    with pytest.raises(ValueError, match="sock_buf"):
        UDPEndpoint(("198.18.0.1", 1), ("198.18.0.2", 1), sock_buf=-1)
    assert UDPEndpoint("[fd00::1]:7000", "[fd00::2]:7000").remote == ("fd00::2", 7000)


def test_udp_bind_error_is_raised_by_start(world):
    with Pump(world.a, UDPEndpoint(("198.18.10.1", 6400), ("198.18.10.2", 6400), netns=world.n1)):
        other = Device("tpuc", netns=world.n1)
        try:
            with pytest.raises(PumpError, match="UDP socket bind"):
                Pump(other, UDPEndpoint(("198.18.10.1", 6400), ("198.18.10.2", 6400), netns=world.n1)).start()
        finally:
            other.close()


# ---- TCP -----------------------------------------------------------------------

@pytest.mark.parametrize("underlay", [4, 6])
def test_tcp_tunnel(world, underlay):
    x, _ = UNDERLAY[underlay]
    with Pump(world.a, TCPEndpoint.listen((x, 55555), netns=world.n1)) as p1, \
            Pump(world.b, TCPEndpoint.connect((x, 55555), netns=world.n2)) as p2:
        assert wait_until(lambda: p2.stats().connects == 1 and p1.stats().connects == 1)
        check_traffic(world, 64 << 20)
    for p in (p1, p2):
        assert_stats_add_up(p.stats())


REF_CLIENT = """
import socket, struct, sys, time
sys.path.insert(0, {here!r})
from helpers.framing import echo_request, read_frame, frame
s = socket.create_connection(("198.18.10.1", 55555), timeout=5)
s.sendall(frame(echo_request("198.18.11.2", "198.18.11.1")))
for _ in range(50):
    pkt = read_frame(s)
    if pkt[9] == 1 and pkt[20] == 0:
        print(pkt.hex()); break
"""


def test_tcp_framing_byte_for_byte(world):
    """The reference client sends one framed echo request; tunpump writes the
    exact packet into the device, the kernel answers, and tunpump frames the
    answer: [2-byte length][packet] and nothing else."""
    with Pump(world.a, TCPEndpoint.listen(("198.18.10.1", 55555), netns=world.n1)) as p1:
        r = world.ns.run(world.n2, sys.executable, "-c", REF_CLIENT.format(here=HERE))
        assert r.returncode == 0, r.stderr
        reply = bytes.fromhex(r.stdout.strip())
        sent = echo_request("198.18.11.2", "198.18.11.1")
        assert len(reply) == len(sent)
        assert reply[12:16] == sent[16:20] and reply[16:20] == sent[12:16]
        assert reply[20] == 0 and reply[24:] == sent[24:]  # same id, seq, payload
        assert csum(reply[:20]) == 0 and csum(reply[20:]) == 0
        s = p1.stats()
        assert s.to_device.packets_out == 1
        assert s.to_device.bytes_in == len(sent)  # the length prefix is not payload


def test_tcp_frames_from_device_are_exact(world):
    """What the kernel sends into the device comes out as [len][packet]."""
    with Pump(world.a, TCPEndpoint.listen(("198.18.10.1", 55555), netns=world.n1)) as p1:
        code = (f"import sys; sys.path.insert(0, {HERE!r})\n"
                "import socket\nfrom helpers.framing import read_frame\n"
                "s = socket.create_connection(('198.18.10.1', 55555), timeout=10)\n"
                "print('up', flush=True)\n"
                "pkt = read_frame(s)\n"
                "while pkt[0] >> 4 != 4 or pkt[9] != 1: pkt = read_frame(s)\n"
                "print(pkt.hex())\n")
        client = world.ns.python(world.n2, "-c", code)
        assert client.stdout.readline().strip() == "up"
        assert wait_until(lambda: p1.stats().connects == 1)
        world.ns.run(world.n1, "ping", "-c", "1", "-W", "1", "198.18.11.2")
        out, err = client.communicate(timeout=10)
        pkt = bytes.fromhex(out.strip())
        assert pkt[16:20] == bytes([198, 18, 11, 2]) and pkt[20] == 8  # echo request to the peer
        assert struct.unpack("!H", pkt[2:4])[0] == len(pkt)
        assert csum(pkt[:20]) == 0 and csum(pkt[20:]) == 0


@pytest.mark.parametrize("bad", [b"\x00\x00", struct.pack("!H", 3000) + b"x" * 3000],
                         ids=["zero-length", "too-long"])
def test_tcp_malformed_frame_closes_and_pump_recovers(world, bad):
    srv = TCPEndpoint.listen(("198.18.10.1", 55555), netns=world.n1, max_frame=2000)
    with Pump(world.a, srv) as p1:
        code = ("import socket\n"
                "s = socket.create_connection(('198.18.10.1', 55555), timeout=5)\n"
                f"s.sendall(bytes.fromhex('{bad.hex()}'))\n"
                "print('closed' if s.recv(10) == b'' else 'open')\n")
        r = world.ns.run(world.n2, sys.executable, "-c", code)
        assert r.stdout.strip() == "closed", r.stdout + r.stderr
        assert wait_until(lambda: p1.stats().protocol_errors == 1)
        # the pump keeps running and takes the next client
        with Pump(world.b, TCPEndpoint.connect(("198.18.10.1", 55555), netns=world.n2)):
            check_traffic(world, 1 << 20, inner=(4,))
        assert p1.error() is None


def test_tcp_client_reconnects(world):
    client = TCPEndpoint.connect(("198.18.10.1", 55555), netns=world.n2)
    with Pump(world.b, client) as p2:
        time.sleep(0.3)  # nobody listens yet: the client retries with backoff
        assert p2.stats().connects == 0
        with Pump(world.a, TCPEndpoint.listen(("198.18.10.1", 55555), netns=world.n1)):
            assert wait_until(lambda: p2.stats().connects == 1, timeout=8)
            check_traffic(world, 1 << 20, inner=(4,))
        # server gone: the client notices, then comes back when a server does
        assert wait_until(lambda: p2.stats().disconnects == 1, timeout=5)
        with Pump(world.a, TCPEndpoint.listen(("198.18.10.1", 55555), netns=world.n1)):
            assert wait_until(lambda: p2.stats().connects == 2, timeout=10)
            check_traffic(world, 1 << 20, inner=(4,))


@pytest.mark.parametrize("role", ["tunpump-server", "tunpump-client"])
@pytest.mark.parametrize("mode", ["tun", "tap"])
def test_tcp_interoperates_with_simpletun(ns, role, mode):
    w = World(ns, mode=mode, make_b=False)
    try:
        flag = ["-a"] if mode == "tap" else []
        if role == "tunpump-server":
            pump = Pump(w.a, TCPEndpoint.listen(("198.18.10.1", 55555), netns=w.n1)).start()
            ref = ns.python(w.n2, os.path.join(HERE, "helpers", "simpletun.py"), "-i", "tpub", "-c", "198.18.10.1",
                            *flag, "--seconds", "60")
        else:
            ref = ns.python(w.n2, os.path.join(HERE, "helpers", "simpletun.py"), "-i", "tpub", "-s", *flag,
                            "--seconds", "60")
            assert ref.stdout.readline().strip() == "listening"
            pump = Pump(w.a, TCPEndpoint.connect(("198.18.10.2", 55555), netns=w.n1)).start()
        # the reference made its device; configure it like the other side
        assert wait_until(lambda: ns.run(w.n2, "ip", "link", "show", "tpub").returncode == 0)
        ns.run(w.n2, "ip", "link", "set", "tpub", "up", "mtu", "1400")
        if mode == "tun":
            ns.run(w.n2, "ip", "addr", "add", "198.18.11.2", "peer", "198.18.11.1", "dev", "tpub")
        else:
            ns.run(w.n2, "ip", "addr", "add", "198.18.11.2/24", "dev", "tpub")
        try:
            assert wait_until(lambda: pump.stats().connects == 1, timeout=10)
            r = ns.ping(w.n1, "198.18.11.2")
            assert r.returncode == 0, r.stdout + r.stderr
            res = ns.transfer(w.n1, w.n2, "198.18.11.2", 4 << 20)
            assert res["received"]["sha256"] == res["sent"]["sha256"]
        finally:
            pump.stop()
        assert_stats_add_up(pump.stats())
    finally:
        w.close()


@pytest.mark.parametrize("world", [{"queues": 2}], ids=["2queues"], indirect=True)
def test_tcp_two_queues_use_two_connections(world):
    """With N queues, queue i connects to port P+i: one TCP connection each."""
    w = world
    with Pump(w.a, TCPEndpoint.listen(("198.18.10.1", 55555), netns=w.n1)) as p1, \
            Pump(w.b, TCPEndpoint.connect(("198.18.10.1", 55555), netns=w.n2)) as p2:
        assert wait_until(lambda: [q.connects for q in p2.stats(per_queue=True)] == [1, 1])
        listening = w.ns.run(w.n1, "ss", "-Htln").stdout
        assert ":55555" in listening and ":55556" in listening
        check_traffic(w, 16 << 20, inner=(4,))
    for p in (p1, p2):
        assert_stats_add_up(p.stats())
