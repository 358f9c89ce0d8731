"""Dynamic UDP peers (issue 10 item 4): Pump.set_peer / remove_peer / peers
while the pump runs; roaming (a transform's pkt->roam moves a peer to the
source of a datagram it authenticated, and a PeerMoved event says so); and
TUNPUMP_UNKNOWN_SOURCES (strangers' datagrams reach the transform instead of
being dropped as unknown_peer).

Most tests run on a fake device (tests/helpers/fakedev.py: no root needed)
with the peers as plain UDP sockets the test holds, in a namespace made here
(over 127.0.0.1 without the privilege to make one). The last ones run real
tunnels between namespaces. The probe transform (tests/helpers/xf_probe) is
built against tunpump.get_include() like any third-party one."""
import socket
import threading
import time

import pytest

from helpers.fakedev import INNER, FakeDevice, _free_udp_port
from helpers.nettest import privilege_problem, wait_until
from helpers.packets import udp_packet
from helpers.world import assert_stats_add_up
from tunpump import Pump, PeerMoved, TCPEndpoint, UDPEndpoint, Verdict, transforms
from tunpump.netns import entered


def _stats(p):
    """The stats' dict form (Stats.to_dict()), read by key."""
    return p.stats().to_dict()


def _drops(p, direction, reason):
    return _stats(p)[direction]["drops"][reason]


class Net:
    """Where the pump's socket and the peers' sockets live: a namespace made
    here with 198.18.20.1-3 on its loopback, or 127.0.0.1 without the
    privilege to make one (then addrs are all 127.0.0.1, ports differ)."""

    def __init__(self, ns):
        self.netns = None
        self.addrs = ("127.0.0.1",) * 3
        if ns is not None:
            self.netns = ns.make()
            self.addrs = ("198.18.20.1", "198.18.20.2", "198.18.20.3")
            for a in self.addrs:
                ns.run(self.netns, "ip", "addr", "add", f"{a}/32", "dev", "lo")
        self.socks = []

    def port(self):
        if self.netns is None:
            return _free_udp_port()
        return 6000 + len(self.socks) * 10 + 100

    def sock(self, i=1, port=None):
        """A peer: a UDP socket on addrs[i]."""
        with entered(self.netns):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((self.addrs[i], port or 0))
        s.settimeout(5)
        self.socks.append(s)
        return s

    def endpoint(self, remote, port=None, **kw):
        self.pump_addr = (self.addrs[0], port or self.port())
        return UDPEndpoint(self.pump_addr, remote, netns=self.netns, **kw)

    def close(self):
        for s in self.socks:
            s.close()


@pytest.fixture
def net(request):
    ns = request.getfixturevalue("ns") if privilege_problem() is None else None
    n = Net(ns)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def dev():
    d = FakeDevice("fakepeer")
    try:
        yield d
    finally:
        d.close()


def _out_packet(payload, dport=9000, sport=5000):
    """A packet the device's stack sends (device -> endpoint)."""
    return udp_packet(INNER[0], INNER[1], sport, dport, payload)


def _in_packet(payload):
    """A packet from the far side (endpoint -> device)."""
    return udp_packet(INNER[1], INNER[0], 9000, 5000, payload)


def _addr(s):
    return s.getsockname()[:2]


def _recv(s, timeout=5.0):
    s.settimeout(timeout)
    try:
        return s.recv(1 << 16)
    except (socket.timeout, TimeoutError):
        return None


def _quiet(s, timeout=0.3):
    """Nothing arrives at s for a while."""
    return _recv(s, timeout) is None


# ---- Python changes the peers ---------------------------------------------------------

def test_peers_added_readdressed_and_removed_while_traffic_flows(net, dev):
    """remote=[]: no peer, packets drop as no_peer. A peer added while the
    device keeps sending gets the packets; re-addressed, the new address
    gets them and the old one nothing; removed, they drop as no_peer and
    its datagrams are unknown_peer."""
    a, b = net.sock(1), net.sock(2)
    stop = threading.Event()

    def device_sends():
        i = 0
        while not stop.is_set():
            dev.send(_out_packet(b"flow %d" % i))
            i += 1
            time.sleep(0.002)

    with Pump(dev, net.endpoint([])) as p:
        assert p.peers() == {}
        sender = threading.Thread(target=device_sends)
        sender.start()
        try:
            assert wait_until(lambda: _drops(p, "to_endpoint", "no_peer") > 3)
            p.set_peer(0, _addr(a))
            assert p.peers() == {0: _addr(a)}
            got = _recv(a)
            assert got is not None and got[0] >> 4 == 4 and got[9] == 17 and b"flow" in got
            # datagrams from the peer reach the device
            a.sendto(_in_packet(b"from a"), net.pump_addr)
            assert wait_until(lambda: _in_packet(b"from a") in _drain(dev), timeout=5)

            p.set_peer(0, f"{_addr(b)[0]}:{_addr(b)[1]}")    # "host:port" works too
            assert p.peers() == {0: _addr(b)}
            _drain_sock(a)
            assert _recv(b) is not None
            assert _quiet(a)

            p.remove_peer(0)
            assert p.peers() == {}
            before = _drops(p, "to_endpoint", "no_peer")
            _drain_sock(b)
            assert wait_until(lambda: _drops(p, "to_endpoint", "no_peer") > before + 3)
            assert _quiet(b)
            unknown = _drops(p, "to_device", "unknown_peer")
            b.sendto(_in_packet(b"from b"), net.pump_addr)
            assert wait_until(lambda: _drops(p, "to_device", "unknown_peer") == unknown + 1)
        finally:
            stop.set()
            sender.join()
    assert_stats_add_up(p.stats())


def test_peer_flips_under_traffic_lose_nothing_uncounted(net, dev):
    """Python re-addresses peer 0 back and forth (and removes it now and
    then) while the device sends and another thread injects: every packet
    the worker sent reached one of the two addresses, the rest are counted
    as no_peer, and inject never saw a torn address (it always reached a or
    b, or was refused for a removed peer)."""
    a, b = net.sock(1), net.sock(2)
    for s in (a, b):
        # thousands of injections land here too: a reader behind by a few
        # hundred must not lose a device packet to a full receive buffer
        # (RcvbufErrors), which the pump could not count
        try:
            s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 32 << 20)
        except PermissionError:   # without CAP_NET_ADMIN: up to net.core.rmem_max
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
    got = {"a": 0, "b": 0}
    stop = threading.Event()

    def reader(s, key):
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                data = s.recv(1 << 16)
            except (socket.timeout, TimeoutError):
                continue
            if data != b"inj":
                got[key] += 1

    readers = [threading.Thread(target=reader, args=(s, k)) for s, k in ((a, "a"), (b, "b"))]
    for t in readers:
        t.start()
    try:
        with Pump(dev, net.endpoint([_addr(a)])) as p:
            def device_sends():
                for i in range(400):
                    dev.send(_out_packet(b"n%d" % i))
                    time.sleep(0.001)
            sender = threading.Thread(target=device_sends)
            sender.start()
            i = 0
            while sender.is_alive():
                if i % 7 == 6:
                    p.remove_peer(0)
                else:
                    p.set_peer(0, _addr(b if i % 2 else a))
                try:
                    p.inject(b"inj", "endpoint", peer=0)
                except ValueError:
                    pass   # removed just now
                i += 1
            sender.join()
            p.set_peer(0, _addr(a))
        s = _stats(p)["to_endpoint"]
        assert s["packets_in"] == 400
        assert wait_until(lambda: got["a"] + got["b"] == s["packets_out"], timeout=5), (got, s)
        assert s["packets_out"] + s["drops"]["no_peer"] == 400, s
        assert got["a"] > 0 and got["b"] > 0 and i > 10
    finally:
        stop.set()
        for t in readers:
            t.join()


def _drain(dev):
    out = []
    while True:
        try:
            out.append(dev.recv(timeout=0.05))
        except (socket.timeout, TimeoutError, BlockingIOError):
            return out


def _drain_sock(s):
    while _recv(s, 0.05) is not None:
        pass


def test_set_peer_follows_the_per_queue_port_rule(net):
    """As with UDPEndpoint(remote=...), the port given is queue 0's: queue i
    sends to port + i (and peers() shows each queue's own)."""
    d = FakeDevice("fakeq", queues=2)
    base = net.port()
    p0, p1 = net.sock(1, base), net.sock(1, base + 1)
    try:
        # a verdict sends every flow to peer 3
        with Pump(d, net.endpoint([]), on_flow=lambda f: Verdict.route(3)) as p:
            p.set_peer(3, (net.addrs[1], base))
            assert p.peers(0) == {3: (net.addrs[1], base)}
            assert p.peers(1) == {3: (net.addrs[1], base + 1)}
            with pytest.raises(ValueError, match="queue=2: expected 0..1"):
                p.peers(2)
            d.send(_out_packet(b"q1"), queue=1)
            assert _recv(p1) == _out_packet(b"q1")
            d.send(_out_packet(b"q0"), queue=0)
            assert _recv(p0) == _out_packet(b"q0")
    finally:
        d.close()


def test_a_removed_peer_gets_nothing_its_flows_drop_as_no_peer(net, dev):
    """A flow routed to peer 1 by a verdict keeps its verdict; once peer 1
    is removed its packets are dropped and counted as no_peer (never sent to
    another peer); set again, they flow to the new address."""
    a, b, c = net.sock(1), net.sock(2), net.sock(1)
    with Pump(dev, net.endpoint([_addr(a), _addr(b)]),
              on_flow=lambda f: Verdict.route(1) if f.dport == 9001 else Verdict.FORWARD) as p:
        dev.send(_out_packet(b"to b", dport=9001))
        assert _recv(b) == _out_packet(b"to b", dport=9001)
        p.remove_peer(1)
        assert p.peers() == {0: _addr(a)}
        dev.send(_out_packet(b"lost", dport=9001))
        assert wait_until(lambda: _drops(p, "to_endpoint", "no_peer") == 1)
        dev.send(_out_packet(b"to a"))
        assert _recv(a) == _out_packet(b"to a")   # the other peer is untouched
        assert _quiet(b, 0.2)
        p.set_peer(1, _addr(c))
        dev.send(_out_packet(b"to c", dport=9001))
        assert _recv(c) == _out_packet(b"to c", dport=9001)
        with pytest.raises(ValueError, match=r"peer=5: queue 0 has no peer 5 \(peers: \[0, 1\]\)"):
            p.inject(b"x", "endpoint", peer=5)
    assert_stats_add_up(p.stats())


def test_inject_to_a_peer_after_set_peer_uses_the_new_address(net, dev):
    a, b = net.sock(1), net.sock(2)
    with Pump(dev, net.endpoint([_addr(a)])) as p:
        p.inject(b"one", "endpoint", peer=0)
        assert _recv(a) == b"one"
        p.set_peer(0, _addr(b))
        p.inject(b"two", "endpoint", peer=0)
        assert _recv(b) == b"two"
        assert _quiet(a, 0.2)
        p.remove_peer(0)
        with pytest.raises(ValueError, match=r"peer=0: queue 0 has no peer 0 \(peers: \[\]\)"):
            p.inject(b"three", "endpoint", peer=0)


@pytest.mark.parametrize("index", [-1, 16, True, "0", 1.0])
def test_set_peer_index_checked(net, dev, index):
    with Pump(dev, net.endpoint([])) as p:
        with pytest.raises(ValueError, match=rf"index={index!r}: expected a peer index from 0 to 15"):
            p.set_peer(index, (net.addrs[1], 7000))
        with pytest.raises(ValueError, match=rf"index={index!r}: expected a peer index from 0 to 15"):
            p.remove_peer(index)


@pytest.mark.parametrize("address, match", [
    (("fd00::1", 7000), "not the same IP version as the socket's local address"),
    (("198.18.20.2", 0), "port must be 1..65535|expected a port"),
    (("198.18.20.2", 70000), "expected a port from 0 to 65535"),
    ("nonsense", "not an IP address or a known host name|expected"),
    (("198.18.20.2",), "expected"),
])
def test_set_peer_address_checked(net, dev, address, match):
    with Pump(dev, net.endpoint([])) as p:
        with pytest.raises(ValueError, match=f"address=.*({match})"):
            p.set_peer(0, address)
        assert p.peers() == {}


def test_set_peer_port_plus_queues_checked(net):
    d = FakeDevice("fakeq2", queues=2)
    try:
        with Pump(d, net.endpoint([])) as p:
            with pytest.raises(ValueError, match=r"address=.*ports 65535..65536 \(one per queue\) run past 65535"):
                p.set_peer(0, (net.addrs[1], 65535))
    finally:
        d.close()


def test_peer_changes_need_a_running_pump_with_set_peers(net, dev):
    ep = net.endpoint([])
    p = Pump(dev, ep)
    with pytest.raises(RuntimeError, match="not running"):
        p.set_peer(0, (net.addrs[1], 7000))
    with pytest.raises(RuntimeError, match="not running"):
        p.peers()
    with p:
        with pytest.raises(ValueError, match=r"index=4: there is no peer 4 \(peers: \[\]\)"):
            p.remove_peer(4)
    learner = UDPEndpoint((net.addrs[0], net.port()), netns=net.netns)
    with Pump(dev, learner) as p:
        with pytest.raises(ValueError, match=r"set_peer: the endpoint learns its peer \(learn_peer=True\)"):
            p.set_peer(0, (net.addrs[1], 7000))
        with pytest.raises(ValueError, match="remove_peer: the endpoint learns its peer"):
            p.remove_peer(0)
        assert p.peers() == {}    # nobody learned yet
    tcp = TCPEndpoint.listen((net.addrs[0], net.port()), netns=net.netns)
    with Pump(dev, tcp) as p:
        with pytest.raises(ValueError, match="set_peer: the endpoint is TCPEndpoint.*only on a UDPEndpoint"):
            p.set_peer(0, (net.addrs[1], 7000))
        with pytest.raises(ValueError, match="peers: the endpoint is TCPEndpoint"):
            p.peers()


def test_local_address_of_an_ephemeral_port(net, dev):
    """UDPEndpoint((addr, 0), ...): the port the kernel chose is readable, so
    a peer can be told where to send."""
    a = net.sock(1)
    with Pump(dev, UDPEndpoint((net.addrs[0], 0), [_addr(a)], netns=net.netns)) as p:
        host, port = p.local_address()
        assert host == net.addrs[0] and port > 0
        a.sendto(_in_packet(b"found you"), (host, port))
        assert dev.recv() == _in_packet(b"found you")
        with pytest.raises(ValueError, match="queue=1: expected 0..0"):
            p.local_address(1)
    with pytest.raises(RuntimeError, match="not running"):
        p.local_address()
    with Pump(dev, TCPEndpoint.listen((net.addrs[0], net.port()), netns=net.netns)) as p:
        with pytest.raises(ValueError, match="local_address: the endpoint is TCPEndpoint"):
            p.local_address()


def test_udp_endpoint_with_an_empty_remote_list():
    ep = UDPEndpoint(("198.18.20.1", 7000), [])
    assert ep.peers == [] and not ep.learn_peer
    assert "remote=[]" in repr(ep)
    with pytest.raises(ValueError, match="learn_peer=True: only without a remote address"):
        UDPEndpoint(("198.18.20.1", 7000), [], learn_peer=True)
    with pytest.raises(ValueError, match="remote=None: give the peer's address, remote=\\[\\] to add peers"):
        UDPEndpoint(("198.18.20.1", 7000), None, learn_peer=False)
    with pytest.raises(ValueError, match="a list of 0 to 16 peers, got 17"):
        UDPEndpoint(("198.18.20.1", 7000), [("198.18.20.2", 7000 + i) for i in range(17)])


def test_dual_stack_endpoint_arguments():
    from tunpump.endpoint import V4_MAPPED
    mixed = UDPEndpoint(remote=[("198.18.0.2", 7000), ("fd00::2", 7000)])
    assert mixed.local == ("::", 0)     # an IPv6 peer: a dual-stack socket
    cfg = mixed.sock_cfg(1)
    assert cfg["remotes"][0][0] == V4_MAPPED + socket.inet_aton("198.18.0.2")
    assert UDPEndpoint(("::", 7000), [("198.18.0.2", 7000)]).local == ("::", 7000)
    assert UDPEndpoint(remote=("198.18.0.2", 7000)).local == ("0.0.0.0", 0)
    with pytest.raises(ValueError, match="remote=.*not the same IP version as the socket's local address 'fd00::1'"):
        UDPEndpoint(("fd00::1", 7000), [("198.18.0.2", 7000)]).sock_cfg(1)


def test_dual_stack_socket_takes_ipv4_and_ipv6_peers(ns, dev):
    """A socket bound to "::" has IPv4 and IPv6 peers at once (as a
    WireGuard interface does): Python gives and sees plain IPv4 addresses
    (the socket's v4-mapped ones never show)."""
    n = ns.make()
    ns.run(n, "ip", "addr", "add", "198.18.20.2/32", "dev", "lo")
    ns.run(n, "ip", "addr", "add", "fd00:20::2/128", "dev", "lo")
    with entered(n):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s4.bind(("198.18.20.2", 0))
        s6.bind(("fd00:20::2", 0))
        a4, a6 = _addr(s4), _addr(s6)
        route = lambda f: Verdict.route(0 if f.dport == 9000 else 1)   # noqa: E731
        with Pump(dev, UDPEndpoint(("::", 6000), [], netns=n), on_flow=route) as p:
            p.set_peer(0, a4)
            p.set_peer(1, a6)
            assert p.peers() == {0: a4, 1: a6}
            assert p.local_address() == ("::", 6000)
            dev.send(_out_packet(b"v4", dport=9000))
            assert _recv(s4) == _out_packet(b"v4", dport=9000)
            dev.send(_out_packet(b"v6", dport=9001))
            assert _recv(s6) == _out_packet(b"v6", dport=9001)
            s4.sendto(_in_packet(b"from v4"), ("198.18.20.2", 6000))
            assert dev.recv() == _in_packet(b"from v4")
            s6.sendto(_in_packet(b"from v6"), ("fd00:20::2", 6000))
            assert dev.recv() == _in_packet(b"from v6")
            p.inject(b"to v4", "endpoint", address=a4)
            assert _recv(s4) == b"to v4"
            assert _drops(p, "to_device", "unknown_peer") == 0
    finally:
        s4.close()
        s6.close()


# ---- a transform: unknown sources and roaming -------------------------------------------

def test_strangers_are_unknown_peer_without_the_flag(net, dev, probe):
    a, stranger = net.sock(1), net.sock(2)
    got = []
    with Pump(dev, net.endpoint([_addr(a)]), transform=probe.Probe(10), on_punt=got.extend) as p:
        stranger.sendto(b"hello?", net.pump_addr)
        assert wait_until(lambda: _drops(p, "to_device", "unknown_peer") == 1)
        a.sendto(_in_packet(b"known"), net.pump_addr)
        assert dev.recv() == _in_packet(b"known")
    assert got == []
    assert_stats_add_up(p.stats())


def test_strangers_reach_a_transform_with_unknown_sources(net, dev, probe):
    """With TUNPUMP_UNKNOWN_SOURCES a stranger's datagram reaches the
    transform with peer -1 and its source (here it punts them: Python sees
    peer None and the source, as a handshake initiation would arrive); a
    configured peer's still come with its index."""
    a, stranger = net.sock(1), net.sock(2)
    got = []
    with Pump(dev, net.endpoint([_addr(a)]), transform=probe.Probe(10, unknown_sources=True),
              on_punt=got.extend) as p:
        stranger.sendto(b"initiation", net.pump_addr)
        assert wait_until(lambda: got)
        pkt = got[0]
        assert (pkt.direction, pkt.peer, pkt.source, pkt.data) == ("to_device", None, _addr(stranger),
                                                                    b"initiation")
        # the handshake reply goes back to the stranger's address
        p.inject(b"response", "endpoint", address=pkt.source)
        assert _recv(stranger) == b"response"
        a.sendto(_in_packet(b"known"), net.pump_addr)
        assert dev.recv() == _in_packet(b"known")
        assert _drops(p, "to_device", "unknown_peer") == 0
    assert_stats_add_up(p.stats())


def test_roaming_moves_the_peer_and_reports_it(net, dev, probe):
    """The transform "authenticates" every datagram as peer 0 and sets roam:
    a datagram from a new address moves peer 0 there (PeerMoved, once), the
    device's packets and inject follow it, and the old address gets
    nothing. Other queues' tables are their own."""
    old, new = net.sock(1), net.sock(2)
    events = []
    with Pump(dev, net.endpoint([_addr(old)]), transform=probe.Probe(9, arg=0, unknown_sources=True),
              on_event=events.append) as p:
        dev.send(_out_packet(b"before"))
        assert _recv(old) == _out_packet(b"before")
        for i in range(3):
            new.sendto(_in_packet(b"roamed %d" % i), net.pump_addr)
            assert dev.recv() == _in_packet(b"roamed %d" % i)
        assert wait_until(lambda: any(isinstance(e, PeerMoved) for e in events))
        assert [e for e in events if isinstance(e, PeerMoved)] == [PeerMoved(0, 0, _addr(new))]
        assert p.peers() == {0: _addr(new)}
        dev.send(_out_packet(b"after"))
        assert _recv(new) == _out_packet(b"after")
        p.inject(b"injected", "endpoint", peer=0)
        assert _recv(new) == b"injected"
        assert _quiet(old, 0.2)
        s = _stats(p)
        assert s["peers_moved"] == 1 and s["roams_refused"] == 0
        # Python moves it back: the worker agrees
        p.set_peer(0, _addr(old))
        assert p.peers() == {0: _addr(old)}
    assert_stats_add_up(p.stats())


def test_roam_from_a_dropped_keepalive_still_moves(net, dev, probe):
    old, new = net.sock(1), net.sock(2)
    with Pump(dev, net.endpoint([_addr(old)]), transform=probe.Probe(12, arg=0, unknown_sources=True)) as p:
        new.sendto(b"keepalive", net.pump_addr)
        assert wait_until(lambda: p.peers() == {0: _addr(new)})
        assert _drops(p, "to_device", "transform") == 1
        assert _stats(p)["peers_moved"] == 1


@pytest.mark.parametrize("mode, arg", [(9, 7), (9, 200), (11, 0)], ids=["absent-peer", "past-the-table", "outbound"])
def test_a_roam_that_cannot_apply_is_counted_and_ignored(net, dev, probe, mode, arg):
    """Roam to a peer the endpoint lacks (index 7, index 200) or on the way
    out: counted as roams_refused, nothing moves, the packets go on."""
    a = net.sock(1)
    with Pump(dev, net.endpoint([_addr(a)]), transform=probe.Probe(mode, arg=arg, unknown_sources=True)) as p:
        if mode == 11:
            dev.send(_out_packet(b"out"))
            assert _recv(a) == _out_packet(b"out")
        else:
            a.sendto(_in_packet(b"in"), net.pump_addr)
            assert dev.recv() == _in_packet(b"in")
        assert wait_until(lambda: _stats(p)["roams_refused"] == 1)
        assert p.peers() == {0: _addr(a)} and _stats(p)["peers_moved"] == 0
    assert_stats_add_up(p.stats())


def test_transform_flags_known(probe):
    name, flags, _ = transforms.info(probe.Probe(0, unknown_sources=True))
    assert name == "probe" and flags == 3


# ---- real tunnels between namespaces ----------------------------------------------------

def _ping(world, ok=True, count=3):
    # a ping expected to fail gets a short deadline (CI time)
    r = world.ns.ping(world.n1, "198.18.11.2", count=count, **({} if ok else {"timeout": 1}))
    assert (r.returncode == 0) == ok, r.stdout + r.stderr


def test_a_peer_added_to_a_running_tunnel(world):
    """n1 starts with no peer (remote=[]): ping fails, counted as no_peer;
    set_peer while it runs and the tunnel works."""
    e1 = UDPEndpoint(("198.18.10.1", 6000), [], netns=world.n1)
    e2 = UDPEndpoint(("198.18.10.2", 6000), ("198.18.10.1", 6000), netns=world.n2)
    with Pump(world.a, e1) as p1, Pump(world.b, e2):
        _ping(world, ok=False, count=1)
        assert _drops(p1, "to_endpoint", "no_peer") > 0
        p1.set_peer(0, ("198.18.10.2", 6000))
        _ping(world)
    assert_stats_add_up(p1.stats())


def test_a_roaming_client_is_followed_to_its_new_address(world, probe):
    """The client (n2) moves to a second address on its veth; the server
    (n1), whose transform authenticates its datagrams (here: any) and sets
    roam, follows it: the tunnel keeps working and PeerMoved reports it."""
    world.ns.run(world.n2, "ip", "addr", "add", "198.18.10.3/24", "dev",
                 _veth_of(world, world.n2, "198.18.10.2"))
    moved = []
    server = UDPEndpoint(("198.18.10.1", 6000), [("198.18.10.2", 6000)], netns=world.n1)
    with Pump(world.a, server, transform=probe.Probe(9, arg=0, unknown_sources=True),
              on_event=lambda e: isinstance(e, PeerMoved) and moved.append(e)) as p1:
        with Pump(world.b, UDPEndpoint(("198.18.10.2", 6000), ("198.18.10.1", 6000), netns=world.n2)):
            _ping(world)
        assert moved == []
        with Pump(world.b, UDPEndpoint(("198.18.10.3", 6000), ("198.18.10.1", 6000), netns=world.n2)):
            # the server only learns the new address from the client's datagrams
            world.ns.ping(world.n2, "198.18.11.1", count=1, timeout=2)
            _ping(world)
        assert moved == [PeerMoved(0, 0, ("198.18.10.3", 6000))]
        assert p1.peers() == {0: ("198.18.10.3", 6000)}
    assert_stats_add_up(p1.stats())


def _veth_of(world, netns, addr):
    import json
    out = world.ns.run(netns, "ip", "-j", "addr", "show").stdout
    for link in json.loads(out):
        if any(a.get("local") == addr for a in link.get("addr_info", [])):
            return link["ifname"]
    raise AssertionError(f"no link with {addr} in {netns}")


# ---- what a WireGuard-style transform also needs -------------------------------------

def test_a_packet_injected_after_a_control_message_meets_it(net, dev, probe):
    """transform_control() then inject(through_transform=True): the worker
    runs the control message before the injected packet, every time, even
    while the device keeps it busy (new session keys, then the first packet
    under them). Here the message switches the probe between passing and
    prepending its 32-byte header."""
    a = net.sock(1)
    magic = b"tunpump-probe-header-32-bytes!!!"
    stop = threading.Event()

    def device_sends():
        while not stop.is_set():
            dev.send(_out_packet(b"busy", dport=9999))
            time.sleep(0.0002)

    with Pump(dev, net.endpoint([_addr(a)]), transform=probe.Probe(0),
              on_flow=lambda f: Verdict.DROP if f.dport == 9999 else None) as p:
        sender = threading.Thread(target=device_sends)
        sender.start()
        try:
            for i in range(300):
                grow = i % 2 == 1
                p.transform_control(bytes([5 if grow else 0]))
                p.inject(_out_packet(b"n%d" % i, dport=9000), "endpoint", through_transform=True)
                got = _recv(a)
                assert got is not None, i
                assert got.startswith(magic) == grow, (i, got[:40])
        finally:
            stop.set()
            sender.join()
