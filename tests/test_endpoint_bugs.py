"""Endpoint bugs of issue 12, each with its regression test: a UDP server
that never re-learned a restarted client (bug 18), and a TCP server that any
host reaching its port could take over (bug 19)."""
import math
import os
import socket
import struct
import sys
import time

import pytest

import tunpump.device
from helpers.framing import echo_request
from helpers.nettest import wait_until
from helpers.world import assert_stats_add_up
from tunpump import Device, PeerDown, PeerUp, Pump, TCPEndpoint, UDPEndpoint
from tunpump.cli import main as cli_main
from tunpump.netns import entered

SERVER = "198.18.10.1"


def _device(ns, n, name):
    d = Device(name, netns=n)
    d.link.up().add_address("198.18.11.1/32", peer="198.18.11.2")
    return d


def _client(n, port):
    """A UDP socket in namespace n, bound to `port` (a client's ephemeral port)."""
    with entered(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((SERVER, port))
    s.settimeout(3)
    return s


def _ping_through(s, server_port, seq):
    """An echo request through the tunnel; True when its reply comes back to s."""
    s.sendto(echo_request("198.18.11.2", "198.18.11.1", seq=seq), (SERVER, server_port))
    try:
        while True:
            pkt = s.recv(65535)
            if pkt[9] == 1 and pkt[20] == 0 and struct.unpack("!H", pkt[26:28])[0] == seq:
                return True
    except socket.timeout:
        return False


# ---- bug 18: the UDP server re-learns a restarted client after peer_timeout ----

def test_udp_server_relearns_a_restarted_client_after_peer_timeout(ns):
    """A client restarted on a new port was dropped as unknown_peer forever.
    Now the new source replaces the peer once the old one has been silent for
    peer_timeout; before that it is a stranger, dropped and counted."""
    n1 = ns.make()
    ns.run(n1, "ip", "addr", "add", f"{SERVER}/32", "dev", "lo")
    dev = _device(ns, n1, "tprl")
    events = []
    a = b = None
    try:
        ep = UDPEndpoint((SERVER, 6970), netns=n1, peer_timeout=1.5)
        with Pump(dev, ep, on_event=events.append) as p:
            a = _client(n1, 40001)
            assert _ping_through(a, 6970, 1)
            b = _client(n1, 40002)                     # the client restarted on a new port
            b.sendto(echo_request("198.18.11.2", "198.18.11.1", seq=2), (SERVER, 6970))
            assert wait_until(lambda: p.stats().to_device.drops["unknown_peer"] == 1)
            assert p.stats().peers_learned == 1     # a talking peer is not replaced
            time.sleep(1.7)                            # the old client stays silent
            assert _ping_through(b, 6970, 3)
            assert p.stats().peers_learned == 2
            a.sendto(echo_request("198.18.11.2", "198.18.11.1", seq=4), (SERVER, 6970))
            assert wait_until(lambda: p.stats().to_device.drops["unknown_peer"] == 2)
            assert _ping_through(b, 6970, 5)           # the old client did not take it back
            assert wait_until(lambda: sum(isinstance(e, PeerUp) for e in events) == 2)
        assert_stats_add_up(p.stats())
        peer_events = [(type(e).__name__, e.address[1]) for e in events if isinstance(e, (PeerUp, PeerDown))]
        assert peer_events == [("PeerUp", 40001), ("PeerDown", 40001), ("PeerUp", 40002)]
    finally:
        for s in (a, b):
            if s is not None:
                s.close()
        dev.close()


def test_udp_peer_timeout_inf_keeps_the_first_peer(ns):
    """peer_timeout=math.inf: the first peer is kept for good (the old behaviour)."""
    n1 = ns.make()
    ns.run(n1, "ip", "addr", "add", f"{SERVER}/32", "dev", "lo")
    dev = _device(ns, n1, "tprk")
    a = b = None
    try:
        with Pump(dev, UDPEndpoint((SERVER, 6971), netns=n1, peer_timeout=math.inf)) as p:
            a = _client(n1, 40011)
            assert _ping_through(a, 6971, 1)
            b = _client(n1, 40012)
            for seq in range(3):
                b.sendto(echo_request("198.18.11.2", "198.18.11.1", seq=10 + seq), (SERVER, 6971))
                time.sleep(0.1)
            assert wait_until(lambda: p.stats().to_device.drops["unknown_peer"] == 3)
            assert p.stats().peers_learned == 1
    finally:
        for s in (a, b):
            if s is not None:
                s.close()
        dev.close()


def test_udp_peer_timeout_arguments():
    assert UDPEndpoint(("198.18.0.1", 5000)).peer_timeout == 30.0
    assert UDPEndpoint(("198.18.0.1", 5000), ("198.18.0.2", 5000)).peer_timeout is None
    assert UDPEndpoint(("198.18.0.1", 5000), peer_timeout=2).sock_cfg(1)["peer_timeout_ns"] == 2 * 10**9
    assert "peer_timeout_ns" not in UDPEndpoint(("198.18.0.1", 5000), peer_timeout=math.inf).sock_cfg(1)
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(ValueError, match="peer_timeout"):
            UDPEndpoint(("198.18.0.1", 5000), peer_timeout=bad)
    with pytest.raises(ValueError, match="peer_timeout=5.*learns its peer"):
        UDPEndpoint(("198.18.0.1", 5000), ("198.18.0.2", 5000), peer_timeout=5)


# ---- bug 19: a TCP server with a configured peer refuses everyone else -------------

CONNECT_FROM = """
import socket, struct, sys
sys.path.insert(0, {tests!r})
from helpers.framing import echo_request, frame, read_frame
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(({src!r}, 0))
s.settimeout(3)
s.connect(({server!r}, {port}))
s.sendall(frame(echo_request("198.18.11.2", "198.18.11.1")))
try:
    while True:
        pkt = read_frame(s)
        if pkt[9] == 1 and pkt[20] == 0:
            print("reply"); break
except Exception as exc:
    print("no reply:", type(exc).__name__)
"""


def _tcp_world(ns):
    n1, n2 = ns.make(), ns.make()
    va, vb = ns.veth(n1, n2, f"{SERVER}/24", "198.18.10.2/24")
    ns.run(n2, "ip", "addr", "add", "198.18.10.3/24", "dev", vb)     # a second host on the far side
    return n1, n2


def _connect_from(ns, n, src, port):
    tests = os.path.dirname(os.path.abspath(__file__))
    r = ns.run(n, sys.executable, "-c", CONNECT_FROM.format(tests=tests, src=src, server=SERVER, port=port))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_tcp_server_with_a_remote_refuses_other_hosts(ns):
    """Any host reaching the port replaced the server's connection. With
    remote= configured, a connection from another address is closed at once
    and counted; the configured client still gets through."""
    n1, n2 = _tcp_world(ns)
    dev = _device(ns, n1, "tptr")
    try:
        ep = TCPEndpoint.listen((SERVER, 55610), remote="198.18.10.2", netns=n1)
        with Pump(dev, ep) as p:
            assert _connect_from(ns, n2, "198.18.10.3", 55610).startswith("no reply")
            assert wait_until(lambda: p.stats().refused_connections == 1)
            assert p.stats().connects == 0
            assert _connect_from(ns, n2, "198.18.10.2", 55610) == "reply"
            assert p.stats().connects == 1 and p.stats().refused_connections == 1
        assert_stats_add_up(p.stats())
    finally:
        dev.close()


def test_tcp_server_remote_port_pins_the_source_port(ns):
    n1, n2 = _tcp_world(ns)
    dev = _device(ns, n1, "tptp")
    try:
        with Pump(dev, TCPEndpoint.listen((SERVER, 55620), remote="198.18.10.2:40100", netns=n1)) as p:
            assert _connect_from(ns, n2, "198.18.10.2", 55620).startswith("no reply")   # another port
            assert wait_until(lambda: p.stats().refused_connections == 1)
            client = Pump(Device("tptq", netns=n2), TCPEndpoint.connect((SERVER, 55620), ("198.18.10.2", 40100),
                                                                    netns=n2))
            try:
                with client:
                    assert wait_until(lambda: p.stats().connects == 1)
            finally:
                client.device.close()
            assert p.stats().refused_connections == 1
    finally:
        dev.close()


def test_tcp_server_without_a_remote_still_takes_any_client(ns):
    """The documented default: a new client replaces the current connection."""
    n1, n2 = _tcp_world(ns)
    dev = _device(ns, n1, "tpta")
    try:
        with Pump(dev, TCPEndpoint.listen((SERVER, 55630), netns=n1)) as p:
            assert _connect_from(ns, n2, "198.18.10.3", 55630) == "reply"
            assert _connect_from(ns, n2, "198.18.10.2", 55630) == "reply"
            assert p.stats().connects == 2 and p.stats().refused_connections == 0
    finally:
        dev.close()


def test_tcp_listen_remote_arguments():
    ep = TCPEndpoint.listen(("0.0.0.0", 5555), remote="198.18.0.2")
    assert ep.remote == ("198.18.0.2", 0) and "remote=" in repr(ep)
    assert ep.sock_cfg(2)["remotes"] == [(socket.inet_aton("198.18.0.2"), 0)]
    assert TCPEndpoint.listen(("0.0.0.0", 5555), remote="[fd00::2]:7000").local == ("::", 5555)
    assert TCPEndpoint.connect("198.18.0.2").remote == ("198.18.0.2", 55555)
    with pytest.raises(ValueError, match="remote port cannot be 0"):
        TCPEndpoint.connect("198.18.0.2:0").sock_cfg(1)


@pytest.mark.parametrize("argv, message", [
    (["--tcp", "--connect", "198.18.0.1:5555", "--remote", "198.18.0.2"], "--remote: only with --listen"),
    (["--tcp", "--listen", "0.0.0.0:5555", "--peer-timeout", "5"], "--peer-timeout: only with --udp --listen"),
    (["--udp", "--listen", "0.0.0.0:5555", "--remote", "198.18.0.2:5555", "--peer-timeout", "5"], "peer_timeout=5"),
])
def test_cli_tunnel_refuses_options_it_would_ignore(argv, message, capsys, monkeypatch):
    """`--remote` was silently ignored with --tcp (and with --connect)."""
    def no_device(*a, **kw):   # the arguments must be refused before any device is made
        raise AssertionError("a device was made")
    monkeypatch.setattr(tunpump.device, "Device", no_device)
    assert cli_main(["tunnel", "--dev", "tpx%d", *argv]) == 2
    assert message in capsys.readouterr().err
