"""A minimal reference implementation of simpletun's protocol, written for the
tests: TUN/TAP via its own ioctl, one TCP connection, each packet preceded by
its length as a 2-byte big-endian integer and nothing else.

    python simpletun.py -i DEV (-s | -c ADDR) [-p PORT] [-a] [--seconds N]
"""
import argparse
import fcntl
import os
import select
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000


def tun_alloc(name, tap):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def read_n(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-i", required=True)
    p.add_argument("-s", action="store_true")
    p.add_argument("-c")
    p.add_argument("-p", type=int, default=55555)
    p.add_argument("-a", action="store_true", help="TAP")
    p.add_argument("--seconds", type=float, default=60)
    a = p.parse_args()
    tun = tun_alloc(a.i, a.a)
    if a.s:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", a.p))
        srv.listen(1)
        print("listening", flush=True)
        net, _ = srv.accept()
    else:
        deadline = time.monotonic() + 10
        while True:
            try:
                net = socket.create_connection((a.c, a.p), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        net.settimeout(None)
    print("connected", flush=True)
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        r, _, _ = select.select([tun, net], [], [], 0.2)
        if tun in r:
            pkt = os.read(tun, 2000)
            net.sendall(struct.pack("!H", len(pkt)) + pkt)
        if net in r:
            try:
                (plen,) = struct.unpack("!H", read_n(net, 2))
                pkt = read_n(net, plen)
            except EOFError:
                break
            try:
                os.write(tun, pkt)
            except OSError:
                pass  # EIO while the device is still down: drop, as the kernel would
    return 0


if __name__ == "__main__":
    sys.exit(main())
