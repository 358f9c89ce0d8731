"""vnet_hdr devices: the header comes with every read and goes with every
write, and a small Python relay on the API carries TCP with offloads on."""
import select
import struct
import threading

from tunpump import Device


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


def test_vnet_header_written_with_packet(ns):
    """A write must start with the header: a zero header and a plain ICMP echo
    request are accepted, and the kernel answers it."""
    from packets import ipv4_header, csum
    n = ns.make()
    with Device("tpvw", vnet_hdr=True, netns=n) as dev:
        dev.link.up().add_address("198.18.2.1/32", peer="198.18.2.2")
        body = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + b"tunpump"
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        pkt = ipv4_header("198.18.2.2", "198.18.2.1", 1, len(body)) + body
        dev.write(bytes(12) + pkt)
        for _ in range(20):
            frame = dev.read(timeout=2)
            ip = frame[12:]
            if ip[0] >> 4 == 4 and ip[9] == 1 and ip[20] == 0:  # echo reply
                assert ip[16:20] == bytes([198, 18, 2, 2])
                assert ip[-7:] == b"tunpump"
                break
        else:
            raise AssertionError("no echo reply from the kernel")
