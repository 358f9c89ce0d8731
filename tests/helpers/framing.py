"""simpletun's TCP framing, [2-byte big-endian length][packet], for tests
and the scripts they run inside namespaces."""
import struct

from helpers.packets import csum, ipv4_header


def frame(pkt: bytes) -> bytes:
    return struct.pack("!H", len(pkt)) + pkt


def read_frame(sock) -> bytes:
    def read_n(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            assert chunk, "connection closed"
            buf += chunk
        return buf
    (n,) = struct.unpack("!H", read_n(2))
    return read_n(n)


def echo_request(src: str, dst: str, ident: int = 0x4242, seq: int = 1, payload: bytes = b"simpletun-framing") -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    return ipv4_header(src, dst, 1, len(body)) + body
