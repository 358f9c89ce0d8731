"""A fake TUN/TAP device, and a rig that runs one test body on fake devices
or on real ones in namespaces.

FakeDevice is a Device whose queue fds are one end of an AF_UNIX
SOCK_SEQPACKET socketpair: the pump reads and writes that end exactly as a
TUN queue (one packet per read, writev of one packet, non-blocking, poll),
and the test stands on the other end (`wire`) where the kernel's stack would
be. No root, no namespace, no /dev/net/tun.

Stop the pumps before closing a FakeDevice: a real queue never reads 0
bytes, but a socket whose peer closed does, and the pump spins on it, counting
each as malformed, until stopped (see test_fake_device_at_eof_does_not_hang_stop)."""
from __future__ import annotations

import contextlib
import socket
import struct
from typing import Iterator, List, Optional, Tuple

from tunpump import Device, UDPEndpoint
from tunpump.netns import entered

from helpers.packets import udp_packet

from .nettest import Namespaces, privilege_problem
from .world import World

INNER = ("198.18.11.1", "198.18.11.2")   # the stacks behind device a and device b
PI_SIZE = 4


class FakeDevice(Device):
    """Looks like a Device to Pump: `fds`, `mode`, `pi`, `vnet_hdr_size`,
    offloads. `send()` is a packet the stack hands the device (the pump reads
    it); `recv()` is what the pump wrote into the device."""

    def __init__(self, name: str = "fake0", mode: str = "tun", *, queues: int = 1, pi: bool = False,
                 vnet_hdr_size: int = 0, offload_bits: int = 0) -> None:
        self._fds: List[int] = []
        self.wire: List[socket.socket] = []
        for _ in range(queues):
            inner, outer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            inner.setblocking(False)          # as tunpump opens TUN queues: O_NONBLOCK
            self._fds.append(inner.detach())
            self.wire.append(outer)
        self.name = name
        self.ifindex = 0
        self.mode = mode
        self.pi = pi
        self.multi_queue = queues > 1
        self.vnet_hdr = bool(vnet_hdr_size)
        self.vnet_hdr_size = vnet_hdr_size
        self.netns = None
        self.tun_path = "(fake)"
        self._offload_bits = offload_bits
        self._users = {}   # pumps running on it (Device.close stops them)

    def prefix(self, packet: bytes) -> bytes:
        """The PI / vnet_hdr prefix this device puts before a packet (no offload)."""
        out = b""
        if self.pi:
            proto = b"\x86\xdd" if packet[0] >> 4 == 6 else b"\x08\x00"
            out += b"\0\0" + proto
        return out + bytes(self.vnet_hdr_size)

    def send(self, packet: bytes, queue: int = 0) -> None:
        self.wire[queue].send(self.prefix(packet) + packet)

    def recv(self, queue: int = 0, timeout: float = 5.0) -> bytes:
        """The next packet the pump wrote into this device, prefix stripped."""
        self.wire[queue].settimeout(timeout)
        data = self.wire[queue].recv(1 << 17)
        return data[(PI_SIZE if self.pi else 0) + self.vnet_hdr_size:]

    def close(self) -> None:
        super().close()
        for s in getattr(self, "wire", []):
            s.close()
        self.wire = []


def fmt(dev: Device) -> Tuple[int, int, int, int]:
    """The device format tuple CorePump.start takes."""
    return int(dev.pi), dev.vnet_hdr_size, int(dev.mode == "tap"), dev._offload_bits


def udp_payload(packet: bytes, port: int) -> Optional[bytes]:
    """The payload of an IPv4 UDP packet to `port`, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if struct.unpack("!H", packet[ihl + 2:ihl + 4])[0] != port:
        return None
    return packet[ihl + 8:]


class Rig:
    """Devices a and b, the stacks behind them (side 0 and side 1) and a UDP
    underlay for tunnels, on fake devices ("fake") or real ones ("real")."""

    def __init__(self, kind: str, ns: Optional[Namespaces]) -> None:
        self.kind = kind
        self.ns = ns
        self.world: Optional[World] = None
        self.a: Device
        self.b: Device
        if kind == "real":
            assert ns is not None
            self.world = World(ns)
            assert self.world.a is not None and self.world.b is not None
            self.a, self.b = self.world.a, self.world.b
            self.stacks = (self.world.n1, self.world.n2)
        else:
            self.a, self.b = FakeDevice("fakea"), FakeDevice("fakeb")
            self.stacks = (None, None)

    @property
    def exact(self) -> bool:
        """Fake devices carry only the test's packets (a real stack adds its own)."""
        return self.kind == "fake"

    def underlay(self, port: int) -> Tuple[UDPEndpoint, UDPEndpoint]:
        """UDP endpoints for a tunnel between a and b. Real: over the veth.
        Fake: over the loopback of a namespace made here, or, without the
        privilege to make one, over 127.0.0.1 with ports bound by this test."""
        if self.world is not None:
            w = self.world
            return (UDPEndpoint(("198.18.10.1", port), ("198.18.10.2", port), netns=w.n1),
                    UDPEndpoint(("198.18.10.2", port), ("198.18.10.1", port), netns=w.n2))
        if self.ns is not None:
            n = self.ns.make()
            for addr in ("198.18.20.1/32", "198.18.20.2/32"):
                self.ns.run(n, "ip", "addr", "add", addr, "dev", "lo")
            return (UDPEndpoint(("198.18.20.1", port), ("198.18.20.2", port), netns=n),
                    UDPEndpoint(("198.18.20.2", port), ("198.18.20.1", port), netns=n))
        p1, p2 = _free_udp_port(), _free_udp_port()
        return (UDPEndpoint(("127.0.0.1", p1), ("127.0.0.1", p2)),
                UDPEndpoint(("127.0.0.1", p2), ("127.0.0.1", p1)))

    @contextlib.contextmanager
    def receiver(self, side: int, port: int) -> Iterator["Receiver"]:
        r = Receiver(self, side, port)
        try:
            yield r
        finally:
            r.close()

    def send(self, side: int, payloads: List[bytes], port: int, sport: int = 40000) -> None:
        """Datagrams from the stack behind device `side` to the other side's address."""
        src, dst = INNER if side == 0 else INNER[::-1]
        dev = self.a if side == 0 else self.b
        if isinstance(dev, FakeDevice):
            for i, p in enumerate(payloads):
                dev.send(udp_packet(src, dst, sport, port, p, ident=i + 1))
            return
        with entered(self.stacks[side]):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.bind((src, sport))
            for p in payloads:
                s.sendto(p, (dst, port))

    def close(self) -> None:
        self.a.close()
        self.b.close()


class Receiver:
    """Datagrams to `port` arriving at the stack behind device `side`."""

    def __init__(self, rig: Rig, side: int, port: int) -> None:
        self.dev = rig.a if side == 0 else rig.b
        self.port = port
        self.sock: Optional[socket.socket] = None
        if not isinstance(self.dev, FakeDevice):
            with entered(rig.stacks[side]):
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((INNER[side], port))

    def collect(self, n: int, timeout: float = 5.0) -> List[bytes]:
        """Up to n payloads, waiting at most `timeout` seconds for each."""
        out: List[bytes] = []
        try:
            while len(out) < n:
                if self.sock is not None:
                    self.sock.settimeout(timeout)
                    out.append(self.sock.recv(1 << 16))
                    continue
                assert isinstance(self.dev, FakeDevice)
                payload = udp_payload(self.dev.recv(timeout=timeout), self.port)
                if payload is not None:
                    out.append(payload)
        except (socket.timeout, TimeoutError):
            pass
        return out

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_make_namespaces() -> bool:
    return privilege_problem() is None
