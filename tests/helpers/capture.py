"""A capture of the underlay for tests that check what goes on the wire: a
script run in a namespace (`world.ns.python(ns, "-c", CAPTURE_UDP_6000,
SECONDS, COUNT)`) that prints "ready", then, once SECONDS have passed or
COUNT packets were seen, one line per IPv4 UDP datagram to or from port
6000 on any interface (AF_PACKET, so outgoing ones too): "1 HEX" when it
was sent from port 6000, "0 HEX" otherwise, HEX being the UDP payload."""

CAPTURE_UDP_6000 = r"""
import select, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))   # ETH_P_ALL: outgoing too
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
print("ready", flush=True)
end, out = time.monotonic() + float(sys.argv[1]), []
while time.monotonic() < end and len(out) < int(sys.argv[2]):
    if not select.select([s], [], [], 0.2)[0]:
        continue
    pkt = s.recv(1 << 17)
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
        continue
    ihl = (pkt[0] & 15) * 4
    sport, dport = int.from_bytes(pkt[ihl:ihl+2], "big"), int.from_bytes(pkt[ihl+2:ihl+4], "big")
    if 6000 in (sport, dport):
        out.append("%d %s" % (sport == 6000, pkt[ihl + 8:].hex()))
print("\n".join(out))
"""


def payloads(out: str) -> list:
    """The payloads (bytes) of a capture's output, in order."""
    return [bytes.fromhex(line.split()[1]) for line in out.splitlines() if line.strip()]
