"""The transform hook (tunpump/include/tunpump.h): the built-in Null
transform through tunnels with offloads on, capsule checks, and a probe
transform (tests/helpers/xf_probe.pyx, built here against
tunpump.get_include() like any third-party one) for outcomes, overflow,
punting, control messages and TUNPUMP_GATHER_TO_ENDPOINT (packets handed
where they lie, in pieces, with an out area)."""
import socket
import struct

import pytest

from helpers.capture import CAPTURE_UDP_6000
from helpers.packets import verify_l4_checksum
from helpers.world import assert_stats_add_up, check_traffic
from tunpump import Pump, TCPEndpoint, UDPEndpoint, Verdict, netns, transforms

MiB = 1 << 20


def _add_up_without(stats, *reasons):
    """Each pump's stats add up, with none of `reasons` dropped either way."""
    for s in stats:
        assert_stats_add_up(s)
        for d in ("to_endpoint", "to_device"):
            drops = s.direction(d).drops
            assert [drops[r] for r in reasons] == [0] * len(reasons), (d, drops)


def _udp(world, port=6000):
    e1 = UDPEndpoint(("198.18.10.1", port), ("198.18.10.2", port), netns=world.n1)
    e2 = UDPEndpoint(("198.18.10.2", port), ("198.18.10.1", port), netns=world.n2)
    return e1, e2


@pytest.mark.parametrize("inner", [4, 6])
@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_null_udp_tunnel_with_offloads(world, inner):
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=transforms.Null()) as p1, \
            Pump(world.b, e2, transform=transforms.Null()) as p2:
        check_traffic(world, 64 * MiB, inner=(inner, 10 - inner))
    s1, s2 = p1.stats(), p2.stats()
    # offloads stay on around the stage: split, transform, UDP_SEGMENT out;
    # UDP_GRO in, transform, coalesce
    assert s1.to_endpoint.gso_split > 0
    assert s1.to_endpoint.packets_out > 2 * s1.to_endpoint.write_calls, s1.to_endpoint
    assert s2.to_device.gro_built > 0
    _add_up_without((s1, s2), "transform", "transform_overflow")


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_null_tcp_tunnel(world):
    e1 = TCPEndpoint.listen(("198.18.10.1", 6500), netns=world.n1)
    e2 = TCPEndpoint.connect(("198.18.10.1", 6500), netns=world.n2)
    with Pump(world.a, e1, transform=transforms.Null()) as p1, \
            Pump(world.b, e2, transform=transforms.Null()) as p2:
        check_traffic(world, 16 * MiB, inner=(4,))
    for p in (p1, p2):
        assert_stats_add_up(p.stats())


def test_null_capsule_and_info():
    name, flags, has_control = transforms.info(transforms.Null())
    # NEEDS_SEGMENTS | IN_PLACE_TO_DEVICE | GATHER_TO_ENDPOINT
    assert name == "null" and flags == 0x1 | 0x8 | 0x10 and not has_control
    assert transforms.CAPSULE_NAME == "tunpump.transform.v2" and transforms.ABI_VERSION == 2


def test_transform_fails_closed(world):
    e1, _ = _udp(world)
    with pytest.raises(ValueError, match="default_verdict=Verdict.FORWARD.*fails closed"):
        Pump(world.a, e1, transform=transforms.Null(), default_verdict=Verdict.FORWARD,
             on_flow=lambda f: None)
    p = Pump(world.a, e1, transform=transforms.Null(), on_flow=lambda f: None)
    assert p._ctl_cfg["default_verdict"] == Verdict.DROP._code()[0]


@pytest.mark.parametrize("bad", [0, 3, 8192, True, "64"])
def test_punt_ring_checked(world, bad):
    e1, _ = _udp(world)
    with pytest.raises(ValueError, match="punt_ring"):
        Pump(world.a, e1, transform=transforms.Null(), punt_ring=bad)


def test_not_a_capsule_refused(world):
    e1, _ = _udp(world)
    with pytest.raises(TypeError, match="transform=.*PyCapsule named 'tunpump.transform.v2'"):
        Pump(world.a, e1, transform=object())


def test_wrong_capsule_name_refused(world):
    import ctypes
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    cap = new(ctypes.cast(ctypes.pointer(ctypes.c_int(1)), ctypes.c_void_p), b"tunpump.transform.v1", None)   # built against ABI 1
    e1, _ = _udp(world)
    with pytest.raises(ValueError, match="a capsule named 'tunpump.transform.v1'.*takes 'tunpump.transform.v2'"):
        Pump(world.a, e1, transform=cap)


# ---- the probe: a Cython transform built against get_include() ---------------------

import threading

from helpers.nettest import wait_until


def _ping(world, ok=True):
    # an expected failure needs no 10-second deadline: the 3 probes leave within 0.4 s,
    # and a reply, were one let through, would be back within milliseconds (veth, no queue)
    r = world.ns.ping(world.n1, "198.18.11.2", timeout=10 if ok else 1)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr


def test_probe_passes(world, probe):
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(0)), Pump(world.b, e2, transform=probe.Probe(0)):
        _ping(world)


@pytest.mark.parametrize("mode,reason", [(1, "transform_overflow"), (2, "transform_overflow"),
                                         (3, "transform"), (6, "transform")],
                         ids=["past-tailroom", "before-headroom", "drop", "not-an-outcome"])
def test_probe_bad_results_counted_and_dropped(world, probe, mode, reason):
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(mode)) as p1, Pump(world.b, e2, transform=probe.Probe(0)) as p2:
        _ping(world, ok=False)
        assert p1.stats().to_endpoint.drops[reason] > 0
        assert p1.stats().to_endpoint.packets_out == 0
        assert p2.stats().to_device.packets_in == 0   # nothing left n1
    assert_stats_add_up(p1.stats())


@pytest.mark.parametrize("mode,reason", [(13, "probe_beta"), (14, "transform")], ids=["named", "out-of-range"])
def test_probe_drop_reasons_counted_by_name(world, probe, mode, reason):
    # drop_reason k names ops->drop_reasons[k - 1], shown as "<transform>_<reason>";
    # a k the transform does not name counts as the generic "transform"
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(mode)) as p1, Pump(world.b, e2, transform=probe.Probe(0)):
        _ping(world, ok=False)
        drops = p1.stats().to_endpoint.drops
        assert drops[reason] > 0, drops
        assert {"probe_alpha", "probe_beta"} <= set(drops)
        assert sum(drops.values()) == drops[reason], drops
        assert p1.stats().to_device.drops["probe_beta"] == 0
    assert_stats_add_up(p1.stats())
    assert transforms.drop_reasons(probe.Probe(0)) == ("alpha", "beta")


def test_probe_bad_drop_reason_name_refused(world, probe):
    e1, _ = _udp(world)
    with pytest.raises(ValueError, match=r"drop_reasons\[0\] = 'Bad Reason': expected 1 to 31 characters"):
        Pump(world.a, e1, transform=probe.Probe(0, bad_reasons=True))


def test_probe_unknown_flag_refused(world, probe):
    e1, _ = _udp(world)
    with pytest.raises(ValueError, match=r"unknown flags 0x21 \(ABI 2 knows NEEDS_SEGMENTS=0x1, .*"
                                         r"IN_PLACE_TO_DEVICE=0x8, GATHER_TO_ENDPOINT=0x10\)"):
        Pump(world.a, e1, transform=probe.Probe(0, unknown_flag=True))


def test_flag_names_cover_every_flag_once():
    """The names the unknown-flags error lists are every flag of the ABI."""
    from tunpump import _core
    values = list(_core.TRANSFORM_FLAGS.values())
    assert all(v and v & (v - 1) == 0 for v in values), values   # one bit each
    assert sum(values) == _core.TRANSFORM_ALL_FLAGS and len(set(values)) == len(values)


def test_probe_wrong_abi_refused(world, probe):
    e1, _ = _udp(world)
    with pytest.raises(ValueError, match="built for ABI version 3, this tunpump speaks 2"):
        Pump(world.a, e1, transform=probe.Probe(0, abi_off_by_one=True))


@pytest.mark.parametrize("in_place", [False, True], ids=["copied", "in-place"])
@pytest.mark.parametrize("inner", [4, 6])
@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_probe_grows_packets_with_offloads(world, probe, inner, in_place):
    """A 32-byte header in the headroom of every segment, stripped on the
    far side (where it was received, with TUNPUMP_IN_PLACE_TO_DEVICE):
    segments still leave with UDP_SEGMENT and are coalesced after."""
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(5, in_place=in_place)) as p1, \
            Pump(world.b, e2, transform=probe.Probe(5, in_place=in_place)) as p2:
        check_traffic(world, 32 * MiB, inner=(inner,))
    s1, s2 = p1.stats(), p2.stats()
    assert s1.to_endpoint.packets_out > 2 * s1.to_endpoint.write_calls
    assert s2.to_device.gro_built > 0
    # every packet left with the 32-byte header (none dropped: checked below), and
    # split segments with headers of their own on top
    assert s1.to_endpoint.bytes_out >= s1.to_endpoint.bytes_in + 32 * s1.to_endpoint.packets_out
    for s in (s1, s2):
        assert_stats_add_up(s)
        assert s.to_device.drops["transform"] == 0


@pytest.mark.parametrize("in_place,reason", [(False, "probe_alpha"), (True, "transform_overflow")],
                         ids=["copied", "in-place"])
def test_probe_room_on_the_way_in(world, probe, in_place, reason):
    # Copied, a packet coming in has room around it; with
    # TUNPUMP_IN_PLACE_TO_DEVICE it has none, and growing it is an overflow.
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(0)), \
            Pump(world.b, e2, transform=probe.Probe(15, in_place=in_place)) as p2:
        _ping(world, ok=False)
        s = p2.stats().to_device
        assert s.packets_out == 0 and s.drops[reason] > 0, s.drops
        assert {k for k, v in s.drops.items() if v} == {reason}, s.drops
    assert_stats_add_up(p2.stats())


def test_control_switches_mode_between_batches(world, probe):
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(3)) as p1, Pump(world.b, e2, transform=probe.Probe(0)):
        _ping(world, ok=False)
        p1.transform_control(b"\x00")             # every queue: pass from now on
        assert wait_until(lambda: world.ns.ping(world.n1, "198.18.11.2").returncode == 0)
        p1.transform_control(b"\x03", queue=0)    # drop again
        dropped = p1.stats().to_endpoint.drops["transform"]
        _ping(world, ok=False)
        assert p1.stats().to_endpoint.drops["transform"] > dropped
        with pytest.raises(ValueError, match="queue=1"):
            p1.transform_control(b"\x00", queue=1)
        with pytest.raises(ValueError, match="message: 1025 bytes, at most 1024"):
            p1.transform_control(bytes(1025))


def test_control_needs_a_control_op(world):
    e1, _ = _udp(world)
    with Pump(world.a, e1, transform=transforms.Null()) as p:
        with pytest.raises(RuntimeError, match="no control function"):
            p.transform_control(b"x")
    with Pump(world.a, e1) as p:
        with pytest.raises(RuntimeError, match="no transform"):
            p.transform_control(b"x")


def test_to_python_both_ways_with_metadata_and_inject(world, probe):
    """n2's transform sends everything to Python. Python hands each packet on
    by hand (inject into the device, inject to the endpoint peer): a ping
    from n1 completes through Python, and every packet is counted."""
    got = []
    done = threading.Event()
    e1, e2 = _udp(world)
    p2 = None

    def on_punt(batch):
        got.append(batch)
        for pkt in batch:
            if pkt.direction == "to_device":
                p2.inject(pkt.data, "device", queue=pkt.queue)
            else:
                p2.inject(pkt.data, "endpoint", queue=pkt.queue, peer=pkt.peer)
                done.set()

    with Pump(world.a, e1, transform=probe.Probe(0)) as p1, \
            Pump(world.b, e2, transform=probe.Probe(4), on_punt=on_punt, punt_ring=256) as p2:
        _ping(world)
        assert done.wait(5)
    pkts = [p for b in got for p in b]
    assert all(isinstance(b, list) for b in got)
    ins = [p for p in pkts if p.direction == "to_device"]
    outs = [p for p in pkts if p.direction == "to_endpoint"]
    assert ins and outs
    for p in ins:
        assert p.queue == 0 and p.peer == 0 and p.source == ("198.18.10.1", 6000)
        assert p.data[0] >> 4 in (4, 6)   # n1's device's own IPv6 chatter (MLD, RS) may come too
    assert any(p.data[0] >> 4 == 4 and p.data[9] == 1 for p in ins)   # the inner ICMP packet, as received
    for p in outs:
        assert p.queue == 0 and p.peer == 0 and p.source is None
        assert p.data[0] >> 4 in (4, 6)   # the device's own IPv6 chatter comes too
    assert any(p.data[0] >> 4 == 4 and p.data[9] == 1 for p in outs)   # the echo reply
    s2 = p2.stats()   # stopped: every punted packet counted (a few may not have reached Python)
    assert s2.to_device.punted >= len(ins) and s2.to_endpoint.punted >= len(outs)
    assert s2.to_device.packets_out == 0 and s2.to_endpoint.packets_out == 0
    assert_stats_add_up(s2)


def test_inject_to_an_address_and_counted(world):
    """A handshake reply goes to the source of a punted datagram, which need
    not be a configured peer; every injected packet is counted."""
    e1, _ = _udp(world)
    code = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('198.18.10.2', 7001)); s.settimeout(5); print(s.recvfrom(100)[0].decode())")
    listener = world.ns.python(world.n2, "-c", code)
    with Pump(world.a, e1, transform=transforms.Null()) as p:
        for _ in range(50):   # until the listener is bound (UDP: sent datagrams before are lost)
            p.inject(b"hello", "endpoint", address=("198.18.10.2", 7001))
            if listener.poll() is not None:
                break
            import time
            time.sleep(0.1)
        out, err = listener.communicate(timeout=10)
        assert out.strip() == "hello", err
        n = p.stats().to_endpoint.injected
        assert n >= 1
        with pytest.raises(ValueError, match="address=.*IPv4"):
            p.inject(b"x", "endpoint", address=("fd00:10::2", 7001))
        with pytest.raises(ValueError, match="address="):
            p.inject(b"x", "endpoint", address=("nonsense", 7001))
        with pytest.raises(ValueError, match="address=.*only for to='endpoint'"):
            p.inject(b"x", "device", address=("198.18.10.2", 7001))
        from helpers.packets import udp_packet
        p.inject(udp_packet("198.18.11.2", "198.18.11.1", 5000, 9, b"injected"), "device")
        assert p.stats().to_device.injected == 1
        assert p.stats().to_endpoint.injected == n


def test_transform_chooses_the_peer(world, probe):
    """Cryptokey routing: the transform sets pkt->peer on the way out; a peer
    the endpoint lacks drops the packet as no_peer."""
    code = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('198.18.10.2', 7002)); s.settimeout(8); print('ready', flush=True); "
            "print(s.recvfrom(2000)[0].hex())")
    listener = world.ns.python(world.n2, "-c", code)
    assert listener.stdout.readline().strip() == "ready"
    two = UDPEndpoint(("198.18.10.1", 6000), [("198.18.10.2", 6000), ("198.18.10.2", 7002)], netns=world.n1)
    with Pump(world.a, two, transform=probe.Probe(8)) as p:
        world.ns.ping(world.n1, "198.18.11.2", count=1, timeout=1)   # nobody answers: only its sending counts
        out, err = listener.communicate(timeout=15)
        pkt = bytes.fromhex(out.strip())
        assert pkt[0] >> 4 in (4, 6), err
        p.transform_control(b"\x07")     # peer 5: not there
        assert wait_until(lambda: (world.ns.ping(world.n1, "198.18.11.2", count=1, timeout=1),
                                   p.stats().to_endpoint.drops["no_peer"])[1] > 0)
    assert_stats_add_up(p.stats())


@pytest.mark.parametrize("gather", [False, True], ids=["copied", "gathered"])
@pytest.mark.parametrize("segments", [True, False], ids=["needs-segments", "whole"])
def test_relay_through_a_transform(ns, probe, segments, gather):
    """TUN-to-TUN relay with vnet_hdr on both: with NEEDS_SEGMENTS
    super-packets are cut before the stage; without it they pass it whole
    (pkt->gso) and go on as super-packets. Traffic arrives intact, also
    when a -> b packets are handed where they lie and left as given
    (TUNPUMP_GATHER_TO_ENDPOINT: a segment in two pieces, a super-packet
    in one)."""
    from helpers.world import World
    w = World(ns, mtu=None, vnet=(True, True), underlay=False)
    probe.reset_gathered()
    with Pump(w.a, w.b, transform=probe.Probe(0, segments=segments, gather=gather)) as pump:
        check_traffic(w, 16 * MiB, inner=(4, 6))
    g = probe.gathered()
    if gather:
        assert g["bad"] == 0 and g["one"] > 0 and (g["two"] > 0) == segments, g
    else:
        assert g == {"one": 0, "two": 0, "bad": 0}, g
    s = pump.stats()
    if segments:
        assert s.to_endpoint.gso_split > 0 and s.to_endpoint.gso_passed == 0
    else:
        assert s.to_endpoint.gso_passed > 0 and s.to_endpoint.gso_split == 0
    assert_stats_add_up(s)


def test_empty_inject_through_the_transform(world, probe):
    """An empty packet (a keepalive) goes through the transform, which says
    what it becomes: here probe mode 5's 32-byte header alone."""
    import socket
    from tunpump import netns
    e1, _ = _udp(world, port=6200)
    with netns.entered(world.n2):
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with peer, Pump(world.a, e1, transform=probe.Probe(5)) as p1:
        peer.bind(("198.18.10.2", 6200))
        peer.settimeout(5)
        p1.inject(b"", "endpoint", through_transform=True)
        while (got := peer.recv(2048)) != b"tunpump-probe-header-32-bytes!!!":
            assert len(got) > 32, got   # the device's own packets, behind the header
        with pytest.raises(ValueError, match="packet: empty.*through_transform=True"):
            p1.inject(b"", "endpoint")
    s = p1.stats()   # stopped: nothing is half-way through a batch
    assert s.to_endpoint.injected == 1
    assert_stats_add_up(s)


def test_empty_packet_never_framed_on_a_tcp_stream(world):
    """Regression: a packet the transform leaves empty (Null passing an
    empty inject) went out as a 0-length frame, which the far end reads as
    a broken stream; it is dropped as malformed and the stream goes on."""
    e1 = TCPEndpoint.listen(("198.18.10.1", 6510), netns=world.n1)
    e2 = TCPEndpoint.connect(("198.18.10.1", 6510), netns=world.n2)
    with Pump(world.a, e1, transform=transforms.Null()) as p1, \
            Pump(world.b, e2, transform=transforms.Null()) as p2:
        _ping(world)
        p1.inject(b"", "endpoint", through_transform=True)
        assert wait_until(lambda: p1.stats().to_endpoint.drops["malformed"] == 1, timeout=5), p1.stats()
        _ping(world)
    for p in (p1, p2):
        assert_stats_add_up(p.stats())
    assert p2.stats().to_device.drops["malformed"] == 0


def test_inject_through_the_transform(world):
    """Python's own packet leaves through the transform (here Null on n1),
    as the device's would: it reaches n2's device and its stack answers."""
    from helpers.packets import udp_packet
    e1, e2 = _udp(world)
    code = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('198.18.11.2', 9009)); s.settimeout(8); print('ready', flush=True); "
            "print(s.recvfrom(100)[0].decode())")
    listener = world.ns.python(world.n2, "-c", code)
    assert listener.stdout.readline().strip() == "ready"
    with Pump(world.a, e1, transform=transforms.Null()) as p1, Pump(world.b, e2, transform=transforms.Null()):
        p1.inject(udp_packet("198.18.11.1", "198.18.11.2", 5000, 9009, b"through"), "endpoint",
                  through_transform=True)
        out, err = listener.communicate(timeout=15)
        assert out.strip() == "through", err
        with pytest.raises(ValueError, match="through_transform=True: only to='endpoint'"):
            p1.inject(b"x", "device", through_transform=True)
    s = p1.stats()
    assert s.to_endpoint.injected == 1 and s.to_endpoint.packets_out >= 1
    assert_stats_add_up(s)
    with Pump(world.a, e1) as p:
        with pytest.raises(ValueError, match="no transform"):
            p.inject(b"x", "endpoint", through_transform=True)


# ---- TUNPUMP_GATHER_TO_ENDPOINT: device -> endpoint packets in their pieces ---------

SOL_UDP, UDP_SEGMENT = 17, 103


def _inner_socket(world, n, port):
    """A UDP socket in namespace n bound to its inner address (198.18.11.x:port)."""
    with netns.entered(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.11.1" if n == world.n1 else "198.18.11.2", port))
    s.settimeout(5)
    return s


def _send_inner(world, payload, seg=0, port=9100):
    """One datagram from n1 to 198.18.11.2:port through device a; with seg,
    sent with UDP_SEGMENT so that a vnet_hdr device hands it over as one USO
    super-packet, which the pump splits (NEEDS_SEGMENTS) into segments in two
    pieces: new headers, and their share of the payload where it lies."""
    with _inner_socket(world, world.n1, 0) as s:
        if seg:
            s.setsockopt(SOL_UDP, UDP_SEGMENT, seg)
        s.sendto(payload, ("198.18.11.2", port))


def _udp_payload(pkt):
    """(source port, destination port, payload) of an IPv4 UDP packet whose
    lengths agree with its size."""
    assert pkt[0] >> 4 == 4 and pkt[9] == 17, pkt[:40].hex()
    ihl = (pkt[0] & 15) * 4
    assert struct.unpack("!H", pkt[2:4])[0] == len(pkt), pkt[:40].hex()
    sport, dport, ulen = struct.unpack("!HHH", pkt[ihl:ihl + 6])
    assert ulen == len(pkt) - ihl
    return sport, dport, pkt[ihl + 8:]


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_gather_passes_pieces_untouched(world, probe):
    """Probe(0, gather=True) looks and passes: every device -> endpoint packet
    comes as its own pieces (a split TCP segment in two: its new headers and
    its payload where it lies) and leaves as it came; the transfer arrives
    intact, offloads on. (That nothing was copied is fuzz_xform's to check:
    a copy would look the same from here.)"""
    probe.reset_gathered()
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(0, gather=True)) as p1, \
            Pump(world.b, e2, transform=probe.Probe(0, gather=True)) as p2:
        check_traffic(world, 32 * MiB, inner=(4, 6))
    g = probe.gathered()
    assert g["two"] > 1000 and g["one"] > 0 and g["bad"] == 0, g
    s1, s2 = p1.stats(), p2.stats()
    assert s1.to_endpoint.gso_split > 0 and s1.to_endpoint.packets_out > 2 * s1.to_endpoint.write_calls
    assert s2.to_device.gro_built > 0
    _add_up_without((s1, s2), "transform", "transform_overflow", "too_big")


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_gather_copy_into_out_end_to_end(world, probe):
    """Probe mode 16 on n1 writes each packet's pieces into out behind a
    32-byte header (as a sealing transform would); mode 5 on n2 strips it
    (and adds it on the way back, which mode 16 strips). On the underlay every
    datagram carries the header, with the whole inner packet behind it; the
    transfer inside arrives intact."""
    probe.reset_gathered()
    cap = world.ns.python(world.n1, "-c", CAPTURE_UDP_6000, "30", "400")
    assert cap.stdout.readline().strip() == "ready"
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(16, gather=True, in_place=True)) as p1, \
            Pump(world.b, e2, transform=probe.Probe(5)) as p2:
        check_traffic(world, 32 * MiB, inner=(4, 6))
    out, err = cap.communicate(timeout=60)
    lines = [ln.split() for ln in out.splitlines() if ln.strip()]
    assert len(lines) >= 50, err
    sent_by_n1 = 0
    for mine, hexdata in lines:
        p = bytes.fromhex(hexdata)
        # UDP_SEGMENT: the capture sees a super-datagram whole; its first segment starts here
        assert p[:32] == probe.HEADER, p[:48].hex()
        assert p[32] >> 4 in (4, 6), p[:48].hex()
        if mine == "1" and p[32] >> 4 == 4:
            sent_by_n1 += p[32 + 12:32 + 20] == bytes([198, 18, 11, 1, 198, 18, 11, 2])
    assert sent_by_n1 > 0
    g = probe.gathered()
    assert g["two"] > 1000 and g["bad"] == 0, g
    s1, s2 = p1.stats(), p2.stats()
    assert s1.to_endpoint.gso_split > 0 and s1.to_endpoint.packets_out > 2 * s1.to_endpoint.write_calls
    # every packet left with the 32-byte header (none dropped: checked below), and
    # split segments with headers of their own on top
    assert s1.to_endpoint.bytes_out >= s1.to_endpoint.bytes_in + 32 * s1.to_endpoint.packets_out
    _add_up_without((s1, s2), "transform", "transform_overflow", "probe_alpha")


def test_gather_copy_needs_the_flag(world, probe):
    """Without TUNPUMP_GATHER_TO_ENDPOINT the packet comes copied with room and
    no out: probe mode 16's check drops every one as probe_alpha."""
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=probe.Probe(16)) as p1, Pump(world.b, e2, transform=probe.Probe(5)):
        _ping(world, ok=False)
        s = p1.stats().to_endpoint
        assert s.packets_out == 0 and s.drops["probe_alpha"] > 0, s.drops
    assert_stats_add_up(p1.stats())


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_gather_head_left_behind_is_overflow(world, probe):
    """Probe mode 17 writes each packet into out but leaves head_len as given:
    a packet that came in one piece (head_len 0) leaves from out, each segment
    of a split one (two pieces) is transform_overflow and never leaves."""
    probe.reset_gathered()
    e1, e2 = _udp(world)
    with _inner_socket(world, world.n2, 9101) as rx, \
            Pump(world.a, e1, transform=probe.Probe(17, gather=True)) as p1, \
            Pump(world.b, e2, transform=probe.Probe(0)) as p2:
        _send_inner(world, b"one piece", port=9101)
        assert rx.recv(2048) == b"one piece"
        _send_inner(world, bytes(range(200)) * 6, seg=400, port=9101)   # 3 segments of 400
        assert wait_until(lambda: p1.stats().to_endpoint.drops["transform_overflow"] >= 3)
        _send_inner(world, b"after", port=9101)
        assert rx.recv(2048) == b"after"   # nothing of the segments came before it
        s = p1.stats().to_endpoint
    assert s.drops["transform_overflow"] == 3 and s.gso_split >= 1, s
    assert probe.gathered()["two"] == 3 and probe.gathered()["bad"] == 0, probe.gathered()
    assert p2.stats().to_device.drops["transform_overflow"] == 0
    for p in (p1, p2):
        assert_stats_add_up(p.stats())


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_gather_punt_gives_python_whole_packets(world, probe):
    """Probe mode 4 with the flag punts packets it never copied: Python gets
    each one whole, its pieces joined (head, then data): a datagram in one
    piece, and the three segments of a USO super-datagram (each new headers
    + its share of the payload), with lengths and checksums right."""
    probe.reset_gathered()
    got = []
    e1, _ = _udp(world)
    plain = bytes(range(256)) + b"plain"
    chunks = [bytes([k]) * 7 + bytes(range(k, k + 200)) * 2 + bytes([k]) * 93 for k in range(3)]   # 500 each
    with Pump(world.a, e1, transform=probe.Probe(4, gather=True), on_punt=got.extend, punt_ring=256) as p1:
        _send_inner(world, plain, port=9102)
        _send_inner(world, b"".join(chunks), seg=500, port=9102)

        def ours():
            return [p for p in got if p.direction == "to_endpoint" and p.data[0] >> 4 == 4 and p.data[9] == 17
                    and p.data[22:24] == struct.pack("!H", 9102)]
        assert wait_until(lambda: len(ours()) >= 4), [p.data[:40].hex() for p in got]
        pkts = [p.data for p in ours()]
    assert len(pkts) == 4
    assert [_udp_payload(p)[2] for p in pkts] == [plain] + chunks
    for p in pkts:
        assert p[12:20] == bytes([198, 18, 11, 1, 198, 18, 11, 2]) and verify_l4_checksum(p), p[:40].hex()
    g = probe.gathered()
    assert g["two"] == 3 and g["one"] >= 1 and g["bad"] == 0, g
    s = p1.stats()
    assert s.to_endpoint.punted >= 4 and s.to_endpoint.packets_out == 0
    assert_stats_add_up(s)
