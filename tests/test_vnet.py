"""vnet_hdr devices: the header comes with every read and goes with every
write (a table of frames and what the kernel does with each), and a small
Python relay on the API carries TCP with offloads on."""
import json
import re
import select
import struct
import threading
import time

from helpers.packets import csum, pseudo6, udp_packet, udp_zero_csum_payload, vnet_hdr
from tunpump import Device
from tunpump.bench import _tools


def relay(a, b, stop, seen):
    pairs = {a.fileno(): (a, b), b.fileno(): (b, a)}
    poller = select.poll()
    for fd in pairs:
        poller.register(fd, select.POLLIN)
    while not stop.is_set():
        for fd, _ in poller.poll(100):
            src, dst = pairs[fd]
            while True:
                try:
                    frame = src.read(timeout=0)
                except TimeoutError:
                    break
                flags, gso_type, hdr_len, gso_size = struct.unpack_from("<BBHH", frame)
                seen["frames"] += 1
                seen["max"] = max(seen["max"], len(frame))
                if gso_type:
                    seen["gso"] += 1
                if flags & 1:
                    seen["needs_csum"] += 1
                dst.write(frame)  # header and super-packet pass through unchanged


def test_vnet_relay_tcp_with_offloads(ns):
    n1, n2 = ns.make(), ns.make()
    with Device("tpva", vnet_hdr=True, netns=n1) as a, Device("tpvb", vnet_hdr=True, netns=n2) as b:
        assert {"csum", "tso4", "tso6"} <= a.offloads
        assert a.prefix_size == 12
        a.link.up().add_address("198.18.1.1/32", peer="198.18.1.2")
        b.link.up().add_address("198.18.1.2/32", peer="198.18.1.1")
        stop = threading.Event()
        seen = {"frames": 0, "gso": 0, "needs_csum": 0, "max": 0}
        t = threading.Thread(target=relay, args=(a, b, stop, seen), daemon=True)
        t.start()
        try:
            res = ns.transfer(n1, n2, "198.18.1.2", 16 << 20, timeout=60)
        finally:
            stop.set()
            t.join(5)
        assert res["sent"]["sha256"] == res["received"]["sha256"]
        assert res["received"]["bytes"] == 16 << 20
        # Offloads on: the kernel hands over TSO super-packets with partial checksums.
        assert seen["gso"] > 0, seen
        assert seen["needs_csum"] > 0, seen
        assert seen["max"] > 1500 + 12, seen


RECEIVER = r"""
import json, re, select, socket, sys, time
socks = []
for fam, addr in ((socket.AF_INET, "198.18.2.1"), (socket.AF_INET6, "fd00:2::1")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, 9000))
    socks.append(s)
print("ready", flush=True)
got, deadline = [], time.time() + 20
while time.time() < deadline:
    for s in select.select(socks, [], [], 0.2)[0]:
        data = s.recv(65535)
        if data == b"END":
            print(json.dumps(got), flush=True)
            sys.exit(0)
        got += [m.decode() for m in re.findall(rb"T[0-9]+", data)]
print(json.dumps(got), flush=True)
"""

A4 = ("198.18.2.2", "198.18.2.1")
A6 = ("fd00:2::2", "fd00:2::1")


def _udp(addrs, payload, ident=1):
    return udp_packet(*addrs, 40000, 9000, payload, ident=ident)


def _tagged(tag, size=600):
    return tag.encode().ljust(size, b".")


def _partial(pkt):
    o = 20 if pkt[0] >> 4 == 4 else 40
    ph = (pkt[12:20] + struct.pack("!BBH", 0, 17, len(pkt) - o) if o == 20
          else pseudo6(pkt[8:24], pkt[24:40], len(pkt) - o, 17))
    return pkt[:o + 6] + struct.pack("!H", (~csum(ph)) & 0xFFFF) + pkt[o + 8:], o


def _gso(addrs, tags, mss=600):
    pkt = _udp(addrs, b"".join(_tagged(t, mss) for t in tags))
    raw, o = _partial(pkt)
    return vnet_hdr(1, 5, o + 8, mss, o, 6) + raw


def _coalesced(addrs, tags):
    [(hdr, pkt)] = _tools.gro_coalesce([_udp(addrs, _tagged(t), i + 1) for i, t in enumerate(tags)])
    return hdr + pkt


def _split(addrs, tags):
    pkt = _udp(addrs, b"".join(_tagged(t) for t in tags))
    raw, o = _partial(pkt)
    return [bytes(10) + s for s in _tools.vnet_split(vnet_hdr(1, 5, o + 8, 600, o, 6), raw)]


def _bad(pkt):
    b = bytearray(pkt)
    b[-1] ^= 0x20
    return bytes(b)


def _with_zero_csum(addrs, tag, zero):
    """A datagram whose checksum computes to 0: sent as 0xffff, or (wrongly) as 0x0000."""
    pkt = _udp(addrs, udp_zero_csum_payload(*addrs, 40000, 9000, prefix=tag.encode(), size=200))
    o = 20 if pkt[0] >> 4 == 4 else 40
    assert pkt[o + 6:o + 8] == b"\xff\xff"
    return pkt[:o + 6] + (b"\0\0" if zero else b"\xff\xff") + pkt[o + 8:]


# (name, frames written: vnet header + packet, tags the kernel must deliver to the socket)
WRITE_CASES = [
    ("udp4, zero header", [bytes(10) + _udp(A4, _tagged("T1"))], ["T1"]),
    ("udp4 bad checksum, zero header: dropped", [bytes(10) + _bad(_udp(A4, _tagged("T2")))], []),
    ("udp4 NEEDS_CSUM with the pseudo-header sum", [vnet_hdr(1, 0, 0, 0, 20, 6) + _partial(_udp(A4, _tagged("T3")))[0]],
     ["T3"]),
    ("udp4 GSO UDP_L4", [_gso(A4, ["T40", "T41", "T42"])], ["T40", "T41", "T42"]),
    ("udp6 GSO UDP_L4", [_gso(A6, ["T50", "T51"])], ["T50", "T51"]),
    ("udp6, zero header", [bytes(10) + _udp(A6, _tagged("T6"))], ["T6"]),
    ("udp6 computed checksum 0 sent as 0xffff", [bytes(10) + _with_zero_csum(A6, "T7", zero=False)], ["T7"]),
    ("udp6 computed checksum 0 sent as 0x0000: dropped", [bytes(10) + _with_zero_csum(A6, "T8", zero=True)], []),
    ("udp4 super-packet from tp_gro_coalesce", [_coalesced(A4, ["T90", "T91", "T92"])], ["T90", "T91", "T92"]),
    ("udp6 segments from tp_vnet_split", _split(A6, ["T100", "T101"]), ["T100", "T101"]),
]


def test_kernel_takes_what_we_write(ns):
    """Frames written to a vnet_hdr TUN, as a table: which datagrams the
    kernel delivers to a socket. The rows built by the packet code (coalesced
    super-packets, split segments) must be taken like hand-built ones."""
    n = ns.make()
    with Device("tpvw", vnet_hdr=True, netns=n) as dev:
        assert dev.prefix_size == 12
        dev.link.up().add_address("198.18.2.1/32", peer="198.18.2.2").add_address("fd00:2::1/64", nodad=True)
        rx = ns.python(n, "-c", RECEIVER)
        assert rx.stdout.readline().strip() == "ready"
        want = []
        for name, frames, tags in WRITE_CASES:
            for f in frames:
                dev.write(f[:10] + b"\0\0" + f[10:])
            want += tags
        time.sleep(0.5)
        dev.write(bytes(12) + _udp(A4, b"END"))
        out, _ = rx.communicate(timeout=30)
    got = json.loads(out.strip().splitlines()[-1])
    wrong = [f"{name}: want {tags}, got {[t for t in got if t in _row_tags(frames)]}"
             for name, frames, tags in WRITE_CASES
             if sorted(t for t in got if t in _row_tags(frames)) != sorted(tags)]
    assert not wrong, "\n".join(wrong)
    assert sorted(got) == sorted(want)


def _row_tags(frames):
    return {m.decode() for f in frames for m in re.findall(rb"T[0-9]+", f)}
