"""The pure-Python baseline the bench compares against: an os.read/os.write
loop over the same kind of devices (what python-pytun style code does).

    python -m tunpump.bench.pyforward relay A NS_A B NS_B [--vnet-hdr] [--seconds S]
    python -m tunpump.bench.pyforward udp DEV NS LOCAL_ADDR:PORT REMOTE_ADDR:PORT [--seconds S]
    python -m tunpump.bench.pyforward pytun-relay A B NS_B [--seconds S]

`pytun-relay` is the same loop on python-pytun's device objects (when that
package is installed): it makes both devices in its own namespace and moves B
to NS_B, since pytun has no namespace option.

It makes its devices itself (single-queue devices take one reader), prints
"ready", forwards until --seconds pass or SIGTERM, then prints its counters
as one JSON line."""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import sys
import time

from ..device import Device
from ..endpoint import parse_address
from ..netns import entered


def _relay(a, b, until: float, count: dict, drain: int = 64) -> None:
    """Forward between two objects with fileno(), read(n) and write(data),
    reading up to `drain` packets per wakeup (1 for blocking devices)."""
    fa, fb = a.fileno(), b.fileno()
    ends = {fa: (a, b), fb: (b, a)}
    poller = select.poll()
    poller.register(fa, select.POLLIN)
    poller.register(fb, select.POLLIN)
    while time.monotonic() < until:
        for fd, _ in poller.poll(200):
            src, dst = ends[fd]
            for _ in range(drain):
                try:
                    pkt = src.read(65600)
                except (BlockingIOError, TimeoutError):
                    break
                count["reads"] += 1
                try:
                    dst.write(pkt)
                    count["writes"] += 1
                    count["bytes"] += len(pkt)
                except OSError:
                    count["drops"] += 1


class _Fd:
    """A non-blocking fd as a device: os.read / os.write, as plain loops do."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def read(self, n: int) -> bytes:
        return os.read(self.fd, n)

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)


def _udp(dev: Device, sock: socket.socket, remote, until: float, count: dict) -> None:
    fd, sfd = dev.fileno(), sock.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(sfd, select.POLLIN)
    while time.monotonic() < until:
        for f, _ in poller.poll(200):
            for _ in range(64):
                try:
                    if f == fd:
                        pkt = os.read(fd, 65600)
                        count["reads"] += 1
                        sock.sendto(pkt, remote)
                    else:
                        pkt, src = sock.recvfrom(65600)
                        count["reads"] += 1
                        if src[:2] != remote:
                            count["drops"] += 1
                            continue
                        os.write(fd, pkt)
                    count["writes"] += 1
                    count["bytes"] += len(pkt)
                except BlockingIOError:
                    break
                except OSError:
                    count["drops"] += 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tunpump.bench.pyforward")
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("relay")
    r.add_argument("a")
    r.add_argument("ns_a")
    r.add_argument("b")
    r.add_argument("ns_b")
    r.add_argument("--vnet-hdr", action="store_true")
    pt = sub.add_parser("pytun-relay")
    pt.add_argument("a")
    pt.add_argument("b")
    pt.add_argument("ns_b")
    u = sub.add_parser("udp")
    u.add_argument("dev")
    u.add_argument("ns")
    u.add_argument("local")
    u.add_argument("remote")
    for x in (r, u, pt):
        x.add_argument("--seconds", type=float, default=60.0)
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    count = {"reads": 0, "writes": 0, "bytes": 0, "drops": 0}
    until = time.monotonic() + a.seconds
    try:
        if a.mode == "pytun-relay":
            try:
                import pytun
            except ImportError:
                print("python-pytun is not installed", file=sys.stderr)
                return 2
            from ..link import Link
            flags = pytun.IFF_TUN | pytun.IFF_NO_PI
            da, db = pytun.TunTapDevice(a.a, flags), pytun.TunTapDevice(a.b, flags)
            Link(a.b).move_to_netns(a.ns_b)
            print("ready", flush=True)
            _relay(da, db, until, count, drain=1)   # pytun's devices block: one read per wakeup
        elif a.mode == "relay":
            with Device(a.a, vnet_hdr=a.vnet_hdr, netns=a.ns_a) as da, \
                    Device(a.b, vnet_hdr=a.vnet_hdr, netns=a.ns_b) as db:
                print("ready", flush=True)
                _relay(_Fd(da.fileno()), _Fd(db.fileno()), until, count)
        else:
            local, remote = parse_address(a.local, "local"), parse_address(a.remote, "remote")
            with Device(a.dev, netns=a.ns) as dev:
                with entered(a.ns):
                    fam = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
                    sock = socket.socket(fam, socket.SOCK_DGRAM)
                for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                sock.bind(local)
                sock.setblocking(False)
                print("ready", flush=True)
                _udp(dev, sock, remote, until, count)
    finally:
        print(json.dumps(count), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
