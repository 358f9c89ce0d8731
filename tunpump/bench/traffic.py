"""Kernel-socket traffic for tests and the bench: a TCP source that sends a
bounded number of random bytes and a sink that hashes what it receives, and
a UDP source and sink in C (sendmmsg / recvmmsg) for small-packet rates.

Run inside a namespace: `python -m tunpump.bench.traffic sink --port P` prints one JSON
line when the sender closes; `python -m tunpump.bench.traffic source --host H --port P
--bytes N` prints the same fields for what it sent, so the two SHA-256 can be
compared. Both stop by themselves (byte count, and --timeout seconds).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time

from . import _tools

CHUNK = 1 << 20


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def sink(port: int, host: str = "::", timeout: float = 60.0, ready_fd: int = -1,
         hash_data: bool = True) -> dict:
    srv = socket.socket(_family(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if srv.family == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind((host, port))
    srv.listen(1)
    srv.settimeout(timeout)
    if ready_fd >= 0:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    conn, _ = srv.accept()
    conn.settimeout(timeout)
    h = hashlib.sha256()
    total = 0
    start = None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = conn.recv_into(view)
        if not n:
            break
        if start is None:
            start = time.monotonic()
        if hash_data:
            h.update(view[:n])
        total += n
    secs = time.monotonic() - (start or time.monotonic())
    conn.close()
    srv.close()
    return {"bytes": total, "sha256": h.hexdigest() if hash_data else None, "seconds": secs,
            "gbps": total * 8 / secs / 1e9 if secs > 0 else 0.0}


def source(host: str, port: int, nbytes: int, timeout: float = 60.0, seed: int = 1,
           seconds: float = 0.0, hash_data: bool = True) -> dict:
    """Send nbytes, or for `seconds` when that is set (whichever ends first).
    Without hash_data the same buffer is sent again and again: a load
    generator that costs the CPU next to nothing."""
    import random
    rnd = random.Random(seed)
    deadline = time.monotonic() + timeout
    while True:  # the sink may still be starting
        try:
            conn = socket.create_connection((host, port), timeout=min(5.0, timeout))
            break
        except (ConnectionRefusedError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    conn.settimeout(timeout)
    h = hashlib.sha256()
    blocks = [rnd.randbytes(CHUNK) for _ in range(4)]
    sent = 0
    start = time.monotonic()
    stop_at = start + seconds if seconds > 0 else deadline
    i = 0
    while sent < nbytes:
        block = blocks[i % 4][: nbytes - sent]
        if hash_data:
            # Vary the first bytes so no two chunks are equal: reordering shows in the hash.
            block = i.to_bytes(8, "big") + block[8:] if len(block) > 8 else block
            h.update(block)
        conn.sendall(block)
        sent += len(block)
        i += 1
        if time.monotonic() > min(deadline, stop_at):
            break
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)  # wait for the sink to close: the bytes arrived
    secs = time.monotonic() - start
    conn.close()
    return {"bytes": sent, "sha256": h.hexdigest() if hash_data else None, "seconds": secs,
            "gbps": sent * 8 / secs / 1e9 if secs > 0 else 0.0}


def udp_source(host: str, port: int, size: int, count: int, seconds: float, ports: int = 1) -> dict:
    import ipaddress
    ip = ipaddress.ip_address(host)
    fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return _tools.udp_source(fam, ip.packed, port, size, count, seconds, ports)


def udp_sink(port: int, seconds: float, idle: float = 1.0, ready_fd: int = -1, v6: bool = False) -> dict:
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("::" if v6 else "0.0.0.0", port))
    if ready_fd >= 0:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    try:
        return _tools.udp_sink(s.fileno(), seconds, idle)
    finally:
        s.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tunpump.bench.traffic")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", default="::")
    s.add_argument("--timeout", type=float, default=60.0)
    s.add_argument("--ready-fd", type=int, default=-1)
    s.add_argument("--no-hash", action="store_true", help="count bytes only (load generation)")
    c = sub.add_parser("source")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--bytes", type=int, required=True)
    c.add_argument("--timeout", type=float, default=60.0)
    c.add_argument("--seconds", type=float, default=0.0, help="stop after this long")
    c.add_argument("--no-hash", action="store_true", help="send one buffer repeatedly, no hashing")
    us = sub.add_parser("udp-sink")
    us.add_argument("--port", type=int, required=True)
    us.add_argument("--seconds", type=float, default=10.0)
    us.add_argument("--idle", type=float, default=1.0)
    us.add_argument("--ready-fd", type=int, default=-1)
    us.add_argument("--v6", action="store_true")
    uc = sub.add_parser("udp-source")
    uc.add_argument("--host", required=True)
    uc.add_argument("--port", type=int, required=True)
    uc.add_argument("--size", type=int, default=64, help="UDP payload bytes")
    uc.add_argument("--count", type=int, default=10_000_000)
    uc.add_argument("--seconds", type=float, default=3.0)
    uc.add_argument("--ports", type=int, default=1, help="spread over this many ports: as many flows")
    a = p.parse_args(argv)
    if a.cmd == "udp-sink":
        out = udp_sink(a.port, a.seconds, a.idle, a.ready_fd, a.v6)
    elif a.cmd == "udp-source":
        out = udp_source(a.host, a.port, a.size, a.count, a.seconds, a.ports)
    elif a.cmd == "sink":
        out = sink(a.port, a.host, a.timeout, a.ready_fd, hash_data=not a.no_hash)
    else:
        out = source(a.host, a.port, a.bytes, a.timeout, seconds=a.seconds, hash_data=not a.no_hash)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
