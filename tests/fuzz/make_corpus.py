"""Write the committed seed corpus (tests/fuzz/corpus/<target>/) from the
table tests' packets: every split, coalesce and flow-key row becomes a seed in
the input format of its fuzz target. Run from the repository root:
    python tests/fuzz/make_corpus.py
"""
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # tests/: helpers.packets and the table test modules

import test_flow_keys as fk          # noqa: E402
import test_offload_kernels as ok    # noqa: E402


def _name(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def _write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, _name(name)), "wb") as f:
        f.write(data)


def gro_input(pkts, l2=False, tcp=True, udp=True, fix=False, trusted=False):
    ctl = (1 if l2 else 0) | (2 if tcp else 0) | (4 if udp else 0) | (8 if fix else 0) | (16 if trusted else 0)
    return bytes([ctl]) + b"".join(struct.pack("!H", len(p)) + p for p in pkts)


def aead_record(op, data):
    return bytes([op]) + struct.pack("!H", len(data)) + data


def aead_datagram(chacha, key_id, counter, plain, sender=3, key=bytes(range(32))):
    """A datagram sealed by the `cryptography` package as docs/design.md
    describes the format (fuzz_aead_open.c's receiver expects sender 3)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
    h = struct.pack("!BBHIQ", 0xA1, key_id, 0, sender, counter)
    return h + (ChaCha20Poly1305 if chacha else AESGCM)(key).encrypt(h[4:], plain, h)


def aead_seeds():
    for chacha in (0, 1):
        c = "chacha" if chacha else "gcm"
        d = lambda *a, **k: aead_record(0, aead_datagram(chacha, *a, **k))   # noqa: E731
        _write("aead_open", f"{c} sealed here", bytes([chacha]) + b"".join(
            aead_record(1, bytes([i]) * n) for i, n in enumerate([0, 1, 64, 1400])))
        _write("aead_open", f"{c} forged copies", bytes([chacha]) + b"".join(
            aead_record(2 | (i << 2), bytes([i * 7, i]) + b"f" * 60) for i in range(8)))
        _write("aead_open", f"{c} outside datagrams", bytes([chacha]) + d(1, 5, b"five") + d(1, 4, b"four") +
               d(1, 5, b"five again") + d(1, 10000, b"jump") + d(1, 4, b"too old") + d(9, 10001, b"unknown key") +
               d(1, 10002, b"wrong sender", sender=0x10003) + d(1, 10003, b"wrong key", key=bytes(32)))
        _write("aead_open", f"{c} rekey and grace", bytes([chacha]) + aead_record(1, b"under key 1") +
               aead_record(3, b"\x01") + aead_record(1, b"under key 3") + d(1, 20, b"old key in grace") +
               aead_record(3 + 4, b"\x05") + d(1, 21, b"old key after grace") + aead_record(1, b"key 7"))
        _write("aead_open", f"{c} truncated and garbage", bytes([chacha]) + b"".join(
            aead_record(0, aead_datagram(chacha, 1, 30 + n, b"x" * 8)[:n]) for n in range(0, 41, 4)) +
            aead_record(0, bytes([0x45]) + bytes(59)) + aead_record(0, b"\xa1\x01\x00\x01" + bytes(40)))


def main():
    # Seeds named regress-* are inputs the fuzzers found: they stay.
    for target in ("split", "gro", "parse", "csum", "aead_open"):
        d = os.path.join(HERE, "corpus", target)
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if not f.startswith("regress-"):
                os.remove(os.path.join(d, f))
    big = 0
    for name, hdr, pkt, l2, _ in ok.SPLIT_CASES:
        if len(pkt) > 10000:
            if big >= 2:
                continue
            big += 1
        _write("split", name, hdr + bytes([(1 if l2 else 0) | (31 << 1)]) + pkt)
    for name, pkt, l2 in ok.NEEDS_CSUM_CASES:
        raw, start, off = ok.partial(pkt, l2)
        _write("split", "needs-csum " + name, ok.vnet_hdr(1, 0, 0, 0, start, off) + bytes([l2]) + raw)
    for name, pkts, opts, _ in ok.COALESCE_CASES:
        l2 = bool(opts.get("l2"))
        _write("gro", name, gro_input(pkts, l2, opts.get("tcp", True), opts.get("udp", True)))
        if sum(map(len, pkts)) < 20000:
            _write("gro", name + " fixed", gro_input(pkts, l2, fix=True))
        if "checksum" in name:   # authenticated packets: their checksums are not verified
            _write("gro", name + " trusted", gro_input(pkts, l2, opts.get("tcp", True), opts.get("udp", True),
                                                       trusted=True))
    for name, pkt, tap, _ in fk.CASES:
        _write("parse", name, bytes([int(tap)]) + pkt)
    for name, data in ok.CSUM_CASES:
        _write("csum", name, b"\x00\x10" + data)
    _write("csum", "packet", b"\x01\x03" + ok.super_tcp(ok.V4, b"c" * 1500))
    stream_seeds()
    aead_seeds()
    xform_seeds()


def _frames(*bodies):
    return b"".join(struct.pack("!H", len(b)) + b for b in bodies)


def stream_seeds():
    """The TCP framing decoder (frame) and the UDP receive cut (dgram)."""
    for target in ("frame", "dgram"):
        d = os.path.join(HERE, "corpus", target)
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if not f.startswith("regress-"):
                os.remove(os.path.join(d, f))
    # frame: max_frame (2), slack (1), chunking seed (4), stream
    pkt = ok.super_tcp(ok.V4, b"f" * 1400)[:1400]
    for name, max_frame, slack, stream in [
        ("empty", 65535, 0, b""),
        ("two frames", 65535, 7, _frames(b"abc", b"z")),
        ("packets", 65535, 0, _frames(pkt, pkt[:60], pkt)),
        ("partial", 65535, 3, _frames(pkt)[:-5]),
        ("zero length then more", 65535, 1, _frames(b"q") + b"\0\0" + _frames(b"after")),
        ("above max_frame", 1000, 0, _frames(b"ok", pkt)),
        ("exactly max_frame", 1400, 0, _frames(pkt, pkt)),
        ("max_frame 1", 1, 0, _frames(b"a", b"b", b"c") + _frames(b"cd")),
        ("largest frame", 65535, 0, _frames(b"L" * 65535, b"s")),
        ("many small", 65535, 255, _frames(*[bytes([i]) * (1 + i % 5) for i in range(200)])),
    ]:
        _write("frame", name, struct.pack("!HBI", max_frame - 1, slack, 0x9e3779b9) + stream)
    # dgram: capacity (2), start (2), records (length, UDP_GRO size)
    for name, cap, start, recs in [
        ("one datagram", 1088, 0, [(1400, 0)]),
        ("gro 64 segments", 1088, 0, [(64000, 1000)]),
        ("gro 100 at batch 1", 1088, 1000, [(6000, 60)]),
        ("gro 128 segments", 1088, 0, [(7680, 60), (7680, 60)]),
        ("gro size above length", 64, 0, [(1000, 1400), (1000, 1000)]),
        ("short last segment", 64, 60, [(6001, 60)]),
        ("empty and negative size", 8, 0, [(0, 0), (0, 60), (100, -1), (100, -2147483648)]),
        ("huge count", 1088, 0, [(65535, 1), (4294967295, 1), (4294967295, 0)]),
        ("full array", 4, 3, [(600, 100), (600, 100), (601, 100)]),
        ("batch of 256", 1088, 0, [(1500 * (1 + i % 3), 1500) for i in range(256)]),
    ]:
        _write("dgram", name, struct.pack("!HH", cap - 1, start)
               + b"".join(struct.pack("!Ii", ln, g) for ln, g in recs))


def xform_rec(ln, outcome=0, mode=2, off=0, newlen=0, peer=0, hdrlen=0, route=0, src=0xFF, content=0x45):
    """One packet of fuzz_xform.c: as read, and what the fake transform leaves."""
    return struct.pack("<HBBBBBBiIh", ln, hdrlen, route, src, content, outcome, mode, off, newlen, peer)


def xform_seeds():
    """The transform stage (fuzz_xform.c): flags, npeers, batch, records."""
    d = os.path.join(HERE, "corpus", "xform")
    for f in os.listdir(d) if os.path.isdir(d) else []:
        if not f.startswith(("regress-", "found-")):   # a fuzzer's: kept
            os.remove(os.path.join(d, f))
    R = xform_rec
    for name, flags, npeers, batch, recs in [
        ("pass unchanged", 0, 0, 7, [R(60), R(1400), R(0), R(1)]),
        ("grow and shrink in room", 0, 0, 7, [R(100, mode=4, off=-64, newlen=100 + 64 + 64 + 12),
                                            R(100, mode=4, off=32, newlen=20), R(100, mode=5 | 16, off=0, newlen=0)]),
        ("udp peers", 2, 4, 7, [R(80, peer=p, route=r) for p, r in [(0, 0), (3, 1), (4, 2), (-1, 3), (32767, 0)]]),
        ("to device from udp", 1 | 2 | 4, 2, 7, [R(60, src=s, mode=m) for s, m in [(0, 2), (5, 4 | 8), (255, 4), (3, 2)]]
         + [R(19, mode=2), R(20, content=0x60, mode=2), R(40, content=0x60, mode=4 | 8 | 2)]),
        ("to tap device", 1 | 4 | 8, 0, 7, [R(13), R(14), R(60, newlen=13, mode=0)]),
        ("outside room", 0, 0, 7, [R(100, off=o, newlen=n, mode=m) for o, n, m in [
            (-65, 100, 0), (-64, 100, 0), (0, 100 + 64 + 12, 0), (0, 100 + 64 + 13, 0), (0, 65536, 0),
            (1 << 30, 1, 1), (-(1 << 31), 0, 1), (2147483647, 4294967295, 0), (0, 4294967295, 0)]]),
        ("outcomes", 2, 1, 7, [R(90, outcome=o, off=of, newlen=90, mode=0) for o, of in [
            (0, 0), (1, 0), (2, 0), (2, -1000), (3, 0), (4, 0), (255, 0), (2, 0)]]),
        ("longer than max packet", 0, 0, 7, [R(65535, mode=1, newlen=65536), R(65535, mode=1, newlen=65535),
                                             R(65535, hdrlen=128, mode=2)]),
        ("arena full", 0, 0, 0, [R(65535, mode=2) for _ in range(8)] + [R(10)]),
        ("split headers and gso", 1 | 2 | 16 | 32, 0x83, 7, [R(1400, hdrlen=h, src=h % 7, content=c, mode=6)
                                                           for h, c in [(0, 1), (54, 0x45), (128, 3), (0, 0x60)]]),
        ("in place to device", 1 | 2 | 4 | 64, 2, 7, [R(60, src=0, mode=m, off=o, newlen=n) for o, n, m in [
            (0, 60, 2), (16, 28, 4 | 8), (-1, 61, 4), (0, 61, 0), (0, 60, 16 | 4 | 8), (60, 0, 0)]]
         + [R(60, hdrlen=40, mode=2), R(0, mode=2)]),
        ("in place flag on the way out", 2 | 64, 1, 7, [R(80, mode=4, off=-16, newlen=112), R(80, mode=2)]),
        ("many small", 2, 16, 7, [R(i % 90, route=i % 16, peer=i % 19, outcome=i % 4, mode=i % 32, off=i - 80,
                                   newlen=i % 200) for i in range(300)]),
        # TUNPUMP_GATHER_TO_ENDPOINT (flag 128): pieces read-only, out the room;
        # mode 32 leaves a packet as given, 64 leaves head_len (or moves head)
        ("gather as given", 2 | 128, 1, 7, [R(60, mode=32), R(1400, hdrlen=54, mode=32), R(0, mode=32),
                                            R(1, hdrlen=128, mode=32), R(80, hdrlen=40, mode=32 | 16)]),
        ("gather into out", 2 | 128, 1, 7, [
            R(100, hdrlen=40, mode=1 | 4, off=64 - 32, newlen=32 + 140 + 16),   # sealed in out
            R(100, mode=1 | 2 | 4 | 8, off=64), R(100, hdrlen=40, mode=1, off=0, newlen=272),
            R(100, hdrlen=40, mode=1, off=0, newlen=273), R(100, hdrlen=40, mode=1, off=272, newlen=0),
            R(100, hdrlen=40, mode=1 | 16, off=-1, newlen=10), R(100, mode=4, off=0, newlen=100)]),
        ("gather head len left", 2 | 128, 1, 7, [
            R(100, hdrlen=40, mode=1 | 4 | 64, off=64, newlen=140), R(100, mode=1 | 4 | 64, off=64, newlen=100),
            R(100, hdrlen=40, mode=2 | 64), R(100, hdrlen=40, mode=2), R(100, mode=2), R(100, mode=64 | 2)]),
        ("gather head moved", 2 | 128, 1, 7, [R(100, hdrlen=40, mode=32 | 64, off=o) for o in (1, -40, 0)]
         + [R(100, mode=32 | 64, off=12345), R(100, hdrlen=1, mode=32 | 64, off=-(1 << 31))]),
        ("gather punts", 2 | 128, 1, 7, [
            R(1400, hdrlen=54, outcome=2, mode=32), R(100, outcome=2, mode=1 | 4, off=64, newlen=100),
            R(100, hdrlen=40, outcome=2, mode=1 | 4 | 64, off=64, newlen=100), R(100, hdrlen=40, outcome=2, mode=2),
            R(65535, hdrlen=128, outcome=2, mode=32), R(70, hdrlen=20, outcome=1, mode=32),
            R(70, hdrlen=20, outcome=9, mode=32), R(70, hdrlen=20, peer=3, mode=32)]),
        ("gather arena full", 128, 0, 0, [R(65535, hdrlen=128, mode=32) for _ in range(8)] + [R(10, mode=32)]),
        ("gather flag on the way in", 1 | 2 | 4 | 128, 2, 7, [R(60, src=0, mode=m, off=o, newlen=n) for o, n, m in [
            (0, 60, 2), (0, 0, 32), (0, 60, 2 | 64), (0, 60, 32 | 64), (-64, 60, 4 | 8)]]
         + [R(60, hdrlen=40, mode=2)]),
        ("gather and in place", 2 | 64 | 128, 1, 7, [R(80, mode=32), R(80, hdrlen=40, mode=1 | 4, off=64, newlen=120),
                                                    R(80, hdrlen=40, mode=2)]),
        ("gather and in place to device", 1 | 2 | 4 | 64 | 128, 2, 7, [
            R(60, src=0, mode=m, off=o, newlen=n) for o, n, m in [(0, 60, 2), (0, 60, 32 | 2), (16, 28, 4 | 8 | 64)]]),
        ("gather split headers and gso", 2 | 16 | 32 | 128, 0x83, 7, [
            R(1400, hdrlen=h, src=h % 7, content=c, mode=m, off=64, newlen=h + 1400)
            for h, c, m in [(0, 1, 32), (54, 0x45, 32), (128, 3, 1 | 4), (0, 0x60, 1 | 4), (54, 7, 1 | 4 | 64)]]),
        ("gather many small", 2 | 128, 16, 7, [R(i % 90, hdrlen=(i * 7) % 60, route=i % 16, peer=i % 19,
                                                 outcome=i % 4, mode=i % 128, off=i - 80 + 64 * (i % 3),
                                                 newlen=i % 200) for i in range(300)]),
    ]:
        _write("xform", name, bytes([flags, npeers, batch]) + b"".join(recs))


if __name__ == "__main__":
    main()
