"""The built-in AEAD transform (tunpump.transforms.AEAD, csrc/transform/
tp_aead_xf.c) through running pumps: tunnels with offloads on, every bad
datagram counted under its reason, a wrong key delivering nothing, rekeying
under load without loss, and the side rule that keeps the two ends' nonces
apart. The core's own tests are tests/c/test_aead.c (test_aead_c.py)."""
import socket
import threading
import time

import pytest

from helpers.nettest import wait_until
from helpers.packets import icmp_echo
from helpers.world import assert_stats_add_up, check_traffic
from tunpump import Pump, TCPEndpoint, UDPEndpoint, netns, transforms
from tunpump.bench import _tools

MiB = 1 << 20
KEY = bytes(range(32))
KEY2 = bytes(range(100, 132))
AEAD_REASONS = ("truncated", "garbage", "bad_sender", "unknown_key", "auth_failed", "replay", "too_old",
                "same_side", "no_key", "too_big", "counters_exhausted", "seal_failed")

pytestmark = pytest.mark.skipif(not _tools.aead_available(), reason="built without OpenSSL 3 libcrypto")


def _udp(world, port=6100):
    e1 = UDPEndpoint(("198.18.10.1", port), ("198.18.10.2", port), netns=world.n1)
    e2 = UDPEndpoint(("198.18.10.2", port), ("198.18.10.1", port), netns=world.n2)
    return e1, e2


def _aead_drops(stats, direction="to_device"):
    return {k: v for k, v in stats.direction(direction).drops.items() if k.startswith("aead_") and v}


def _ping(world, ok=True, dst="198.18.11.2"):
    r = world.ns.ping(world.n1, dst, timeout=10 if ok else 2)   # an expected failure needs no long deadline
    assert (r.returncode == 0) == ok, r.stdout + r.stderr


@pytest.mark.parametrize("cipher", ["chacha20-poly1305", "aes-256-gcm"])
@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_aead_udp_tunnel_with_offloads(world, cipher):
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=transforms.AEAD(KEY, cipher)) as p1, \
            Pump(world.b, e2, transform=transforms.AEAD(KEY, cipher)) as p2:
        check_traffic(world, 16 * MiB, inner=(4, 6))
    s1, s2 = p1.stats(), p2.stats()
    assert s1.to_endpoint.gso_split > 0                      # split, seal, UDP_SEGMENT
    assert s1.to_endpoint.packets_out > 2 * s1.to_endpoint.write_calls
    assert s2.to_device.gro_built > 0                        # UDP_GRO, open, coalesce
    # every datagram grew by the header and tag
    assert s1.to_endpoint.bytes_out >= s1.to_endpoint.bytes_in + \
        transforms.AEAD.OVERHEAD * s1.to_endpoint.packets_out
    for s in (s1, s2):
        assert_stats_add_up(s)
        assert set(f"aead_{r}" for r in AEAD_REASONS) <= set(s.to_device.drops)
        assert not _aead_drops(s) and not _aead_drops(s, "to_endpoint"), s


@pytest.mark.parametrize("world", [{"vnet": True, "queues": 2}], ids=["2q"], indirect=True)
def test_aead_tcp_tunnel_two_queues(world):
    # TCP: the server is side 1 and the client side 0; each worker pairs with its namesake
    e1 = TCPEndpoint.listen(("198.18.10.1", 6600), netns=world.n1)
    e2 = TCPEndpoint.connect(("198.18.10.1", 6600), netns=world.n2)
    with Pump(world.a, e1, transform=transforms.AEAD(KEY)) as p1, \
            Pump(world.b, e2, transform=transforms.AEAD(KEY)) as p2:
        check_traffic(world, 8 * MiB, inner=(4,))
    for p in (p1, p2):
        assert_stats_add_up(p.stats())
        assert not _aead_drops(p.stats())


def _forger(key=KEY, key_id=0, sender=(1 << 16), counter_start=None):
    """Seals datagrams as p2's worker 0 would (side 1, queue 0) toward p1's worker 0."""
    a = _tools.Aead("chacha20-poly1305", sender, 0, counter_start)
    a.set_key(key_id, key)
    return a


def _flip(datagram):
    return datagram[:-1] + bytes([datagram[-1] ^ 1])   # a tag that does not verify


def test_bad_datagrams_counted_by_reason(world):
    # The peer here is a plain socket at p2's address sending what we forge
    # with the same core (tunpump.bench._tools.Aead) as p2's worker 0 would.
    e1, _ = _udp(world)
    echo = icmp_echo("198.18.11.2", "198.18.11.1", 77)
    with netns.entered(world.n2):
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with peer, Pump(world.a, e1, transform=transforms.AEAD(KEY)) as p1:
        peer.bind(("198.18.10.2", 6100))
        good = _forger()
        first = good.seal(echo)
        sends = {
            "garbage": [b"\x45" + bytes(63)],
            "truncated": [first[:31], b"\xa1"],
            "replay": [first, first],                       # the first is delivered, the second a replay
            "unknown_key": [_forger(key_id=9).seal(echo)],
            "auth_failed": [_flip(good.seal(echo)), _forger(key=KEY2).seal(echo)],
            "same_side": [_forger(sender=0).seal(echo)],        # sealed with our key on our side
            "bad_sender": [_forger(sender=(1 << 16) | 5).seal(echo), _forger(sender=0, key=KEY2).seal(echo)],
            "too_old": [_forger(counter_start=1).seal(echo)],
        }
        for datagrams in sends.values():
            for d in datagrams:
                peer.sendto(d, ("198.18.10.1", 6100))
        want = {f"aead_{k}": len(v) - (k == "replay") for k, v in sends.items()}
        assert wait_until(lambda: _aead_drops(p1.stats()) == want, timeout=5), (_aead_drops(p1.stats()), want)
        assert p1.stats().to_device.packets_out == 1      # only the valid echo
        peer.sendto(good.seal(echo), ("198.18.10.1", 6100))    # the worker goes on as before
        assert wait_until(lambda: p1.stats().to_device.packets_out == 2, timeout=5)
        # the kernel's echo replies came back sealed for the peer
        peer.settimeout(5)
        back = _tools.Aead("chacha20-poly1305", 1 << 16, 0)   # p1's worker 0 is side 0, queue 0
        back.set_key(0, KEY)
        replies = 0
        while replies < 2:      # the device's own IPv6 chatter (RS, MLD) may be sealed and sent too
            reason, plain = back.open(peer.recv(2048))
            assert reason == "ok", (reason, plain)
            assert plain[0] >> 4 in (4, 6), plain
            replies += plain[0] >> 4 == 4 and plain[20] == 0   # an IPv4 echo reply
    assert_stats_add_up(p1.stats())


def test_wrong_key_delivers_nothing(world):
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=transforms.AEAD(KEY)) as p1, \
            Pump(world.b, e2, transform=transforms.AEAD(KEY2)) as p2:
        _ping(world, ok=False)
        sent = p1.stats().to_endpoint.packets_out
        assert sent > 0
        assert p2.stats().to_device.packets_out == 0
        assert wait_until(lambda: _aead_drops(p2.stats()) == {"aead_auth_failed": sent}), _aead_drops(p2.stats())
    assert_stats_add_up(p2.stats())


def test_two_ends_on_the_same_side_are_told(world):
    e1, e2 = _udp(world)
    with Pump(world.a, e1, transform=transforms.AEAD(KEY, side=0)), \
            Pump(world.b, e2, transform=transforms.AEAD(KEY, side=0)) as p2:
        _ping(world, ok=False)
        assert set(_aead_drops(p2.stats())) == {"aead_same_side"}


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_rekey_under_load_loses_nothing(world):
    e1, e2 = _udp(world)
    a1, a2 = transforms.AEAD(KEY, grace=1.0), transforms.AEAD(KEY, grace=1.0)
    with Pump(world.a, e1, transform=a1) as p1, Pump(world.b, e2, transform=a2) as p2:
        done = threading.Event()
        err = []

        def load():
            try:
                check_traffic(world, 96 * MiB, inner=(4,))
            except BaseException as exc:   # reported below
                err.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=load)
        t.start()
        assert wait_until(lambda: p1.stats().to_endpoint.packets_out > 2000, timeout=30)
        a1.rekey(p1, KEY2, 1)        # the two ends a little apart, as two operators would
        t0 = time.monotonic()
        time.sleep(0.3)
        a2.rekey(p2, KEY2, 1)
        t.join(timeout=120)
        assert done.is_set() and not err, err
        with pytest.raises(ValueError, match="key_id=1: that is the key in use"):
            a1.rekey(p1, KEY, 1)
        # nothing was refused while the keys changed, in either direction
        for p in (p1, p2):
            assert not _aead_drops(p.stats()) and not _aead_drops(p.stats(), "to_endpoint"), p.stats()
        # past the switch deadline both ends send with key 1 (a worker switches at its
        # next batch: the ping's), and once the grace is over key 0 is refused
        time.sleep(max(0.0, t0 + 1.1 - time.monotonic()))
        _ping(world)
        time.sleep(1.3)
        p2.inject(_forger(key=KEY).seal(icmp_echo("198.18.11.2", "198.18.11.1", 5)), "endpoint", peer=0)
        assert wait_until(lambda: _aead_drops(p1.stats()) == {"aead_unknown_key": 1}, timeout=5), \
            _aead_drops(p1.stats())
        _ping(world)
    assert_stats_add_up(p1.stats())


def test_rekey_again_after_a_restart(world):
    # a restarted pump starts from the AEAD's own key: the same rekey is valid again
    e1, e2 = _udp(world)
    a1, a2 = transforms.AEAD(KEY, grace=1), transforms.AEAD(KEY, grace=1)
    p1, p2 = Pump(world.a, e1, transform=a1), Pump(world.b, e2, transform=a2)
    for _ in range(2):
        with p1, p2:
            a1.rekey(p1, KEY2, 1)
            a2.rekey(p2, KEY2, 1)
            _ping(world)
            with pytest.raises(ValueError, match="that is the key in use"):
                a1.rekey(p1, KEY2, 1)
    for p in (p1, p2):
        assert not _aead_drops(p.stats()), p.stats()


def test_side_decided_or_refused(world):
    e1, e2 = _udp(world)
    assert transforms.aead_side(e1) == 0 and transforms.aead_side(e2) == 1
    assert transforms.aead_side(TCPEndpoint.listen(("198.18.10.1", 6600))) == 1
    assert transforms.aead_side(TCPEndpoint.connect(("198.18.10.1", 6600))) == 0
    learner = UDPEndpoint(("198.18.10.1", 6100), netns=world.n1)
    with pytest.raises(ValueError, match="learns its peer.*side=0.*side=1"):
        Pump(world.a, learner, transform=transforms.AEAD(KEY))
    wildcard = UDPEndpoint(("0.0.0.0", 6100), ("198.18.10.2", 6100), netns=world.n1)
    with pytest.raises(ValueError, match="cannot tell the two ends apart"):
        Pump(world.a, wildcard, transform=transforms.AEAD(KEY))
    two = UDPEndpoint(("198.18.10.1", 6100), [("198.18.10.2", 6100), ("198.18.10.3", 6100)], netns=world.n1)
    with pytest.raises(ValueError, match="2 peers; a pre-shared key is for two ends"):
        Pump(world.a, two, transform=transforms.AEAD(KEY, side=0))
    # given explicitly, a learning server works
    Pump(world.a, learner, transform=transforms.AEAD(KEY, side=1))
    with pytest.raises(ValueError, match=r"side=None.*hand the AEAD itself to Pump"):
        transforms.as_capsule(transforms.AEAD(KEY))


@pytest.mark.parametrize("kw,match", [
    ({"key": b"short"}, "key: 5 bytes, expected 32"),
    ({"key": KEY, "cipher": "aes-128-gcm"}, "cipher='aes-128-gcm': expected one of 'chacha20-poly1305', 'aes-256-gcm'"),
    ({"key": KEY, "key_id": 256}, "key_id=256: expected 0..255"),
    ({"key": KEY, "grace": -1}, "grace=-1: expected seconds from 0 to 86400"),
    ({"key": KEY, "side": 2}, "side=2: expected 0 or 1"),
], ids=["key", "cipher", "key_id", "grace", "side"])
def test_arguments_named(kw, match):
    with pytest.raises(ValueError, match=match):
        transforms.AEAD(**kw)
    with pytest.raises(TypeError, match="key: expected 32 bytes, got str"):
        transforms.AEAD("00" * 32)


def test_drop_reasons_and_info():
    assert transforms.drop_reasons(transforms.AEAD(KEY, side=0)) == AEAD_REASONS
    # NEEDS_SEGMENTS | AUTHENTICATED | IN_PLACE_TO_DEVICE | GATHER_TO_ENDPOINT (seals from its pieces into out)
    assert transforms.info(transforms.AEAD(KEY, side=0)) == ("aead", 0x1 | 0x4 | 0x8 | 0x10, True)
    assert _tools.AEAD_DROP_REASONS == AEAD_REASONS[:7]   # the core's receive reasons keep their numbers
    assert KEY.hex() not in repr(transforms.AEAD(KEY, side=0)) and str(list(KEY)) not in repr(transforms.AEAD(KEY, side=0))
