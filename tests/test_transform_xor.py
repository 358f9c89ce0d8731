"""The acceptance test of the transform ABI (issue 10 item 6):
examples/transform_xor, a third-party transform with its own setup.py, is
built in a temporary directory with this Python against
tunpump.get_include() only, and a UDP tunnel with offloads runs through it.
The underlay is captured in the namespace: every datagram carries the XOR
header and no plaintext inner header, while the transfer inside arrives
intact (SHA-256)."""
import os
import time

import pytest

from helpers.capture import CAPTURE_UDP_6000, payloads
from helpers.extbuild import built_extension
from helpers.world import assert_stats_add_up, check_traffic
from tunpump import Pump, UDPEndpoint

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "transform_xor")
KEY = b"tunpump-xor-demo-key"
# The inner IPv4 addresses 198.18.11.1 -> 198.18.11.2, as every plaintext
# inner header from a to b carries them.
INNER_ADDRS = bytes([198, 18, 11, 1, 198, 18, 11, 2])



@pytest.fixture(scope="module")
def tpxor(tmp_path_factory):
    files = [f for f in os.listdir(EXAMPLE) if f.endswith((".c", ".py", ".toml"))]
    with built_extension(EXAMPLE, files, tmp_path_factory.mktemp("transform_xor"), "tpxor") as mod:
        yield mod


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


def _tunnel(world, tpxor, key=KEY, key_id=1):
    e1 = UDPEndpoint(("198.18.10.1", 6000), ("198.18.10.2", 6000), netns=world.n1)
    e2 = UDPEndpoint(("198.18.10.2", 6000), ("198.18.10.1", 6000), netns=world.n2)
    return (Pump(world.a, e1, transform=tpxor.XOR(key, key_id=key_id)),
            Pump(world.b, e2, transform=tpxor.XOR(key, key_id=key_id)))


def test_example_builds_against_public_header_only(tpxor):
    src = open(os.path.join(EXAMPLE, "tpxor.c")).read()
    includes = [ln.split()[1] for ln in src.splitlines() if ln.startswith("#include")]
    assert '"tunpump.h"' in includes and not [i for i in includes if i.startswith('"tp_')]
    assert tpxor.HEADER == 8


@pytest.mark.parametrize("world", [{"vnet": True}], ids=["vnet"], indirect=True)
def test_xor_tunnel_transforms_the_wire_and_delivers_intact(world, tpxor):
    cap = world.ns.python(world.n1, "-c", CAPTURE_UDP_6000, "30", "400")
    assert cap.stdout.readline().strip() == "ready"
    p1, p2 = _tunnel(world, tpxor)
    with p1, p2:
        check_traffic(world, 32 << 20, inner=(4, 6))
    out, err = cap.communicate(timeout=60)
    sent = payloads(out)
    assert len(sent) >= 50, err
    to_b = 0
    for p in sent:
        # every datagram on the wire has the header, and its first segment decodes
        assert p[:4] == b"TPX1" and p[4:6] == b"\x00\x01", p[:16].hex()
        inner = xor(p[8:8 + 40], KEY)
        assert inner[0] >> 4 in (4, 6), inner.hex()
        assert INNER_ADDRS not in p   # no plaintext inner IPv4 header anywhere
        to_b += inner[0] >> 4 == 4 and inner[12:20] == INNER_ADDRS
    assert to_b > 0, [xor(p[8:48], KEY).hex() for p in sent[:5]]
    s1, s2 = p1.stats(), p2.stats()
    assert s1.to_endpoint.gso_split > 0 and s2.to_device.gro_built > 0   # offloads stayed on
    for s in (s1, s2):
        assert_stats_add_up(s)
        assert s.to_device.drops["transform"] == 0


def test_xor_wrong_key_id_gets_nothing_through(world, tpxor):
    e1 = UDPEndpoint(("198.18.10.1", 6000), ("198.18.10.2", 6000), netns=world.n1)
    e2 = UDPEndpoint(("198.18.10.2", 6000), ("198.18.10.1", 6000), netns=world.n2)
    with Pump(world.a, e1, transform=tpxor.XOR(KEY, key_id=1)), \
            Pump(world.b, e2, transform=tpxor.XOR(KEY, key_id=2)) as p2:
        r = world.ns.ping(world.n1, "198.18.11.2", timeout=1)   # probes out in 0.4 s, no reply
        assert r.returncode != 0
        assert p2.stats().to_device.drops["transform"] > 0
        assert p2.stats().to_device.packets_out == 0


def test_xor_rekey_while_running(world, tpxor):
    """Both ends switch to key id 2 through transform_control; traffic flows
    before and after."""
    p1, p2 = _tunnel(world, tpxor)
    with p1, p2:
        check_traffic(world, 4 << 20, inner=(4,))
        for p in (p1, p2):
            p.transform_control(tpxor.rekey(b"another key", key_id=2))
        time.sleep(0.2)   # applied between batches; in-flight datagrams of key 1 are dropped
        check_traffic(world, 4 << 20, inner=(4,))
    with pytest.raises(ValueError, match="key: 1 to 64 bytes"):
        tpxor.rekey(b"", key_id=2)
