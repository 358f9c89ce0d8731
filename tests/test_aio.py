"""asyncio: Device.packets() / recv() / send() (tunpump.aio), netlink calls
inside a running loop, and the prefix= argument of read() / write()."""
import asyncio
import errno
import os
import socket
import struct

import pytest

from helpers.fakedev import FakeDevice
from helpers.packets import (csum, echo_reply_v4, icmp_echo, parse_vnet, udp_packet, verify_l4_checksum,
                             vnet_hdr)
from tunpump import Device, Link, SuperPacketError
from tunpump import prefix as tp_prefix
from tunpump.device import list_devices, remove
from tunpump.netns import entered


def pkt(i: int, size: int = 60) -> bytes:
    """A distinct IPv4-looking packet numbered i."""
    return bytes([0x45]) + bytes(size - 5) + struct.pack("!I", i)


def number(p: bytes) -> int:
    return struct.unpack("!I", p[-4:])[0]


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def registered(fd, kind="reader") -> bool:
    """Whether the running loop has a reader (writer) on fd; removes it."""
    loop = asyncio.get_running_loop()
    return (loop.remove_reader if kind == "reader" else loop.remove_writer)(fd)


# -- packets() / recv() on fake devices (no root) ------------------------------------

def test_packets_in_order_and_reader_removed_on_exit():
    dev = FakeDevice()

    async def main():
        for i in range(10):
            dev.send(pkt(i))
        got = []
        async with dev.packets() as stream:
            async for p in stream:
                got.append(number(p))
                if len(got) == 10:
                    break
        assert got == list(range(10))
        assert not registered(dev.fileno())
    try:
        run(main())
    finally:
        dev.close()


def test_leaving_async_for_removes_the_reader():
    dev = FakeDevice()

    async def main():
        dev.send(pkt(1))
        async for p in Device.packets(dev):
            assert number(p) == 1
            break
        assert not registered(dev.fileno())
    try:
        run(main())
    finally:
        dev.close()


def test_read_ahead_is_bounded_then_resumes():
    """The loop stops reading at `buffer` packets ahead of the consumer; the
    rest stay in the queue until the consumer catches up."""
    dev = FakeDevice()

    async def main():
        for i in range(40):
            dev.send(pkt(i))
        stream = dev.packets(buffer=4)
        first = await stream.__anext__()
        assert number(first) == 0
        await asyncio.sleep(0.05)          # give the reader every chance to run
        # what the loop has not read is still in the socket: at most 1 + 4 taken
        left = 0
        while True:
            try:
                os.read(dev.fileno(), 1 << 17)
                left += 1
            except BlockingIOError:
                break
        assert left >= 40 - 1 - 4, left
        buffered = 40 - 1 - left
        for i in range(10):                # reading resumes as the consumer takes packets
            dev.send(pkt(100 + i))
        rest = [number(await stream.__anext__()) for _ in range(buffered + 10)]
        assert rest == list(range(1, 1 + buffered)) + list(range(100, 110))
        await stream.aclose()
        assert not registered(dev.fileno())
    try:
        run(main())
    finally:
        dev.close()


def test_cancelled_recv_loses_no_packet():
    dev = FakeDevice()

    async def main():
        t = asyncio.ensure_future(Device.recv(dev))
        await asyncio.sleep(0.02)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert not registered(dev.fileno())     # nobody waits: no reader
        dev.send(pkt(7))
        assert number(await Device.recv(dev)) == 7
    try:
        run(main())
    finally:
        dev.close()


def test_two_consumers_share_a_queue_each_packet_once():
    dev = FakeDevice()

    async def consume(stream, out):
        async for p in stream:
            out.append(number(p))

    async def main():
        a, b = [], []
        ta = asyncio.ensure_future(consume(dev.packets(), a))
        tb = asyncio.ensure_future(consume(dev.packets(), b))
        for i in range(50):
            dev.send(pkt(i))
        for _ in range(100):
            if len(a) + len(b) == 50:
                break
            await asyncio.sleep(0.01)
        dev.close()                           # ends both iterations cleanly
        await asyncio.gather(ta, tb)
        assert sorted(a + b) == list(range(50))
    run(main())


def test_closing_the_device_ends_the_iteration_and_fails_waiting_senders():
    dev = FakeDevice()

    async def main():
        got = []

        async def consume():
            async for p in dev.packets():
                got.append(p)
            return "ended"
        t = asyncio.ensure_future(consume())
        fill(dev)
        s = asyncio.ensure_future(Device.send(dev, pkt(1)))
        await asyncio.sleep(0.05)
        assert not t.done() and not s.done()
        fd = dev.fileno()
        dev.close()
        assert await t == "ended"
        with pytest.raises(ValueError, match="closed device"):
            await s
        assert not registered(fd) and not registered(fd, "writer")
        with pytest.raises(ValueError, match="closed"):
            dev.packets()
    run(main())


def test_close_from_another_thread_ends_the_iteration():
    dev = FakeDevice()

    async def main():
        stream = dev.packets()
        t = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.02)
        fd = dev.fileno()
        await asyncio.get_running_loop().run_in_executor(None, dev.close)
        with pytest.raises(StopAsyncIteration):
            await t
        assert not registered(fd)
    run(main())


def test_end_of_file_ends_the_iteration():
    """A socket standing in for a queue reads 0 bytes once its peer closed."""
    dev = FakeDevice()

    async def main():
        dev.send(pkt(3))
        dev.wire[0].close()
        got = [number(p) async for p in dev.packets()]
        assert got == [3]
    try:
        run(main())
    finally:
        dev.close()


def test_queues_apart_and_recv_failing_on_close():
    dev = FakeDevice(queues=2)

    async def main():
        dev.send(pkt(0), queue=0)
        dev.send(pkt(1), queue=1)
        assert number(await Device.recv(dev, queue=1)) == 1
        assert number(await Device.recv(dev, queue=0)) == 0
        waiting = asyncio.ensure_future(Device.recv(dev, queue=1))
        await asyncio.sleep(0.02)
        dev.close()
        with pytest.raises(ValueError, match="closed device"):
            await waiting
    run(main())


def test_one_device_across_event_loops():
    """A queue used by one asyncio.run() and then another: the first loop's
    state goes with it."""
    dev = FakeDevice()
    try:
        for i in range(3):
            dev.send(pkt(i))

            async def main():
                async for p in dev.packets(buffer=1):
                    return number(p)
            assert run(main()) == i
    finally:
        dev.close()


def fill(dev) -> int:
    """Write into the fake queue until it says EAGAIN; returns the count."""
    n = 0
    while True:
        try:
            os.write(dev.fileno(), pkt(n, 1000))
        except BlockingIOError:
            return n
        n += 1


def test_send_waits_for_writability_in_call_order():
    dev = FakeDevice()

    async def main():
        filled = fill(dev)
        sends = [asyncio.ensure_future(Device.send(dev, pkt(10_000 + i))) for i in range(5)]
        await asyncio.sleep(0.05)
        assert not any(s.done() for s in sends)        # backpressure: they wait
        dev.wire[0].setblocking(False)
        seen = []
        while len(seen) < filled + 5:
            try:
                seen.append(number(dev.wire[0].recv(1 << 17)))
            except BlockingIOError:
                await asyncio.sleep(0.005)
        assert [await s for s in sends] == [len(pkt(0))] * 5
        assert seen[filled:] == [10_000 + i for i in range(5)]   # in call order
        assert not registered(dev.fileno(), "writer")
    try:
        run(main())
    finally:
        dev.close()


def test_cancelled_send_writes_nothing_and_the_next_goes():
    dev = FakeDevice()

    async def main():
        filled = fill(dev)
        first = asyncio.ensure_future(Device.send(dev, pkt(500)))
        second = asyncio.ensure_future(Device.send(dev, pkt(501)))
        await asyncio.sleep(0.02)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        dev.wire[0].setblocking(False)
        seen = []
        while not second.done() or len(seen) < filled + 1:
            try:
                seen.append(number(dev.wire[0].recv(1 << 17)))
            except BlockingIOError:
                await asyncio.sleep(0.005)
        await second
        assert seen[filled:] == [501]
    try:
        run(main())
    finally:
        dev.close()


def test_prefix_on_the_async_api_pi_and_vnet_hdr():
    dev = FakeDevice(pi=True, vnet_hdr_size=12)

    async def main():
        bare = icmp_echo("198.18.0.2", "198.18.0.1", 7)
        dev.send(bare)
        dev.send(bare)
        assert await Device.recv(dev, prefix=False) == bare
        framed = await Device.recv(dev)
        assert framed[:4] == b"\0\0\x08\0" and framed[4:16] == bytes(12) and framed[16:] == bare
        assert await Device.send(dev, bare, prefix=False) == len(bare)
        assert dev.wire[0].recv(1 << 17) == b"\0\0\x08\0" + bytes(12) + bare
        dev.send(bare)
        async for p in dev.packets(prefix=False):
            assert p == bare
            break
    try:
        run(main())
    finally:
        dev.close()


def test_async_api_bad_arguments():
    dev = FakeDevice()

    async def main():
        with pytest.raises(ValueError, match=r"queue=3"):
            dev.packets(queue=3)
        with pytest.raises(ValueError, match=r"buffer=0"):
            dev.packets(buffer=0)
        with pytest.raises(ValueError, match=r"prefix='no'"):
            dev.packets(prefix="no")
        with pytest.raises(ValueError, match=r"queue=-1"):
            await Device.recv(dev, queue=-1)
        with pytest.raises(TypeError, match="packet: expected bytes"):
            await Device.send(dev, "text")
        with pytest.raises(ValueError, match=r"packet: a TUN device takes IPv4 or IPv6"):
            await Device.send(FakeDevice(pi=True), b"\x12\x34", prefix=False)
    try:
        run(main())
    finally:
        dev.close()


# -- the prefix module (pure) ------------------------------------------------------------

def test_strip_and_build_table():
    v4 = icmp_echo("198.18.0.2", "198.18.0.1", 1)
    v6 = bytes([0x60]) + bytes(47)
    eth = bytes(12) + b"\x86\xdd" + v6
    cases = [   # (mode, pi, vnet, packet, prefix)
        ("tun", False, 0, v4, b""),
        ("tun", True, 0, v4, b"\0\0\x08\x00"),
        ("tun", True, 0, v6, b"\0\0\x86\xdd"),
        ("tun", False, 10, v4, bytes(10)),
        ("tun", True, 12, v6, b"\0\0\x86\xdd" + bytes(12)),
        ("tap", True, 0, eth, b"\0\0\x86\xdd"),
        ("tap", True, 12, eth, b"\0\0\x86\xdd" + bytes(12)),
    ]
    for mode, pi, vnet, packet, want in cases:
        assert tp_prefix.build(packet, mode=mode, pi=pi, vnet_hdr_size=vnet) == want
        assert tp_prefix.strip(want + packet, pi=pi, vnet_hdr_size=vnet) == packet


def test_strip_refuses_a_super_packet_and_keeps_it():
    udp = udp_packet("198.18.0.1", "198.18.0.2", 1, 2, bytes(3000))
    frame = vnet_hdr(flags=1, gso_type=3, hdr_len=28, gso_size=1000, csum_start=20, csum_offset=6) + bytes(2) + udp
    with pytest.raises(SuperPacketError, match="GSO super-packet") as info:
        tp_prefix.strip(frame, pi=False, vnet_hdr_size=12)
    assert info.value.frame == frame and info.value.errno == errno.EMSGSIZE
    # TCP ECN bit alone is no GSO
    plain = vnet_hdr(gso_type=0x80) + bytes(2) + udp
    assert tp_prefix.strip(plain, pi=False, vnet_hdr_size=12) == udp


def test_strip_completes_a_partial_checksum():
    udp = bytearray(udp_packet("198.18.0.1", "198.18.0.2", 1000, 2000, b"hello world!!"))
    good = bytes(udp)
    # what the kernel hands over: the pseudo-header sum in the checksum field, not inverted
    ph = udp[12:20] + struct.pack("!BBH", 0, 17, len(udp) - 20)
    udp[26:28] = struct.pack("!H", ~csum(bytes(ph)) & 0xFFFF)
    frame = vnet_hdr(flags=1, csum_start=20, csum_offset=6) + bytes(2) + bytes(udp)
    assert tp_prefix.strip(frame, pi=False, vnet_hdr_size=12) == good
    assert verify_l4_checksum(good)


def test_strip_short_frame_and_bad_prefix_flag():
    with pytest.raises(OSError, match="shorter than its 16-byte prefix"):
        tp_prefix.strip(b"\0" * 10, pi=True, vnet_hdr_size=12)
    with pytest.raises(ValueError, match=r"prefix=1: expected True"):
        tp_prefix.check_flag(1)


def test_sync_read_and_write_prefix_on_fake_device():
    dev = FakeDevice(pi=True, vnet_hdr_size=10)
    try:
        bare = icmp_echo("198.18.0.2", "198.18.0.1", 9)
        dev.send(bare)
        dev.send(bare)
        assert dev.read(timeout=1) == b"\0\0\x08\0" + bytes(10) + bare   # the default keeps the prefix
        assert dev.read(timeout=1, prefix=False) == bare
        assert dev.write(bare, prefix=False) == len(bare)
        assert dev.wire[0].recv(1 << 17) == b"\0\0\x08\0" + bytes(10) + bare
        with pytest.raises(ValueError, match="prefix=None"):
            dev.read(timeout=0, prefix=None)
    finally:
        dev.close()


# -- real devices: netlink in a running loop, prefixes the kernel makes ------------------

def test_netlink_calls_inside_a_running_loop(ns):
    """Regression: pyroute2's sync API raised "This event loop is already
    running" inside a coroutine."""
    n = ns.make()

    async def main():
        with Device("tpaio", netns=n) as dev:
            dev.link.up().set_mtu(1400)
            dev.link.add_address("198.18.0.1/32", peer="198.18.0.2")
            assert "198.18.0.1/32" in dev.link.addresses()
            assert dev.link.info()["mtu"] == 1400
            assert [d["name"] for d in list_devices(n)] == ["tpaio"]
            # a loop in a thread inside the namespace: the worker thread inherits it
            with entered(n):
                assert Link("tpaio").info()["up"]
    run(main())


def test_attach_inside_a_running_loop(ns):
    """Device() looks an existing name up over netlink."""
    n = ns.make()

    async def main():
        with Device("tpaio", netns=n, persist=True) as dev:
            ifindex = dev.ifindex
        try:
            with Device("tpaio", netns=n) as again:      # attaches: the name exists
                assert again.ifindex == ifindex
        finally:
            remove("tpaio", n)
        assert list_devices(n) == []
    run(main())


def kernel_udp(n: str, sock_opts=(), payload: bytes = b"x" * 100, dst=("198.18.0.2", 9)) -> None:
    with entered(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for level, opt, val in sock_opts:
            s.setsockopt(level, opt, val)
        s.sendto(payload, dst)
    finally:
        s.close()


def read_udp(dev, prefix, timeout=3):
    """The next UDP packet the device hands over (skipping IPv6 noise)."""
    while True:
        frame = dev.read(timeout=timeout, prefix=prefix)
        p = frame if not prefix else frame[dev.prefix_size:]
        if p[0] >> 4 == 4 and p[9] == 17:
            return frame


def test_read_prefix_false_on_real_pi_vnet_device(ns):
    """The kernel's partial checksums are completed; a USO super-packet is
    refused with the whole frame kept."""
    n = ns.make()
    with Device("tpaio", pi=True, vnet_hdr=True, netns=n) as dev:
        dev.link.up().add_address("198.18.0.1/32", peer="198.18.0.2")
        assert "csum" in dev.offloads
        kernel_udp(n)
        frame = read_udp(dev, prefix=True)
        assert frame[:4] == b"\0\0\x08\0"
        kernel_udp(n)
        bare = read_udp(dev, prefix=False)
        assert bare[9] == 17 and verify_l4_checksum(bare) and bare.endswith(b"x" * 100)
        if "uso4" not in dev.offloads:
            pytest.skip("this kernel refuses USO: no UDP super-packets to refuse")
        kernel_udp(n, [(socket.SOL_UDP, 103, 500)], payload=b"y" * 1500)   # UDP_SEGMENT
        with pytest.raises(SuperPacketError) as info:
            read_udp(dev, prefix=False)
        frame = info.value.frame
        assert parse_vnet(frame[4:14])["gso_size"] == 500 and len(frame) == 4 + 12 + 20 + 8 + 1500


def test_write_prefix_false_on_real_pi_vnet_device(ns):
    """A bare packet written with prefix=False reaches a socket in the namespace."""
    n = ns.make()
    with Device("tpaio", pi=True, vnet_hdr=True, netns=n) as dev:
        dev.link.up().add_address("198.18.0.1/32", peer="198.18.0.2")
        with entered(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("198.18.0.1", 7777))
            s.settimeout(3)
            p = udp_packet("198.18.0.2", "198.18.0.1", 5555, 7777, b"bare packet")
            assert dev.write(p, prefix=False) == len(p)
            assert s.recvfrom(100) == (b"bare packet", ("198.18.0.2", 5555))

            async def main():
                assert await dev.send(p, prefix=False) == len(p)
            run(main())
            assert s.recvfrom(100) == (b"bare packet", ("198.18.0.2", 5555))
        finally:
            s.close()


def test_async_echo_on_real_device_and_device_deleted(ns):
    """packets()/send() against the kernel; deleting the device under the
    iterator raises its OSError once and ends it."""
    n = ns.make()
    with Device("tpaio", netns=n) as dev:
        dev.link.up().add_address("198.18.0.1/32", peer="198.18.0.2")

        async def main():
            stream = dev.packets()
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", n, "ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.2",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            answered = 0
            while answered < 2:
                reply = echo_reply_v4(await stream.__anext__())
                if reply:
                    await dev.send(reply)
                    answered += 1
            out, _ = await proc.communicate()
            assert proc.returncode == 0 and b" 0% packet loss" in out, out
            Link("tpaio", n).delete()
            with pytest.raises(OSError) as info:
                while True:
                    await stream.__anext__()
            assert info.value.errno == errno.EBADFD
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()
        run(main())

