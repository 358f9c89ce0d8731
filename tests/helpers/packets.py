"""Hand-built packets and an independent Internet checksum, for the tests."""
from __future__ import annotations

import ipaddress
import struct

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
FAKE_MAC = bytes.fromhex("02005e000002")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_header(src: str, dst: str, proto: int, payload_len: int, ident: int = 1, ttl: int = 64,
                options: bytes = b"", frag: int = 0, tos: int = 0) -> bytes:
    """An IPv4 header with a correct checksum; frag is the flags/offset word."""
    assert len(options) % 4 == 0
    hl = 20 + len(options)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | hl // 4, tos, hl + payload_len, ident, frag, ttl, proto, 0,
                    ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options
    return h[:10] + struct.pack("!H", csum(h)) + h[12:]


def pseudo6(src: bytes, dst: bytes, length: int, nh: int) -> bytes:
    return src + dst + struct.pack("!IxxxB", length, nh)


def echo_reply_v4(pkt: bytes) -> bytes | None:
    """The reply to an IPv4 ICMP echo request, or None for anything else."""
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 1:
        return None
    ihl = (pkt[0] & 0xF) * 4
    icmp = pkt[ihl:]
    if icmp[0] != 8:
        return None
    body = b"\x00\x00\x00\x00" + icmp[4:]
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    src, dst = pkt[12:16], pkt[16:20]
    return ipv4_header(str(ipaddress.IPv4Address(dst)), str(ipaddress.IPv4Address(src)), 1, len(body)) + body


def echo_reply_v6(pkt: bytes) -> bytes | None:
    if len(pkt) < 48 or pkt[0] >> 4 != 6 or pkt[6] != 58 or pkt[40] != 128:
        return None
    src, dst = pkt[8:24], pkt[24:40]
    body = bytes([129, 0, 0, 0]) + pkt[44:40 + struct.unpack("!H", pkt[4:6])[0]]
    c = csum(pseudo6(dst, src, len(body), 58) + body)
    body = body[:2] + struct.pack("!H", c) + body[4:]
    return struct.pack("!IHBB", 6 << 28, len(body), 58, 64) + dst + src + body


def arp_reply(frame: bytes, mac: bytes = FAKE_MAC) -> bytes | None:
    """An Ethernet ARP reply claiming the asked-for address, or None."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    arp = frame[14:42]
    if struct.unpack("!H", arp[6:8])[0] != 1:
        return None
    sha, spa, tpa = arp[8:14], arp[14:18], arp[24:28]
    reply = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 2) + mac + tpa + sha + spa
    return sha + mac + struct.pack("!H", ETH_P_ARP) + reply


def neighbour_advert(frame: bytes, mac: bytes = FAKE_MAC) -> bytes | None:
    """An Ethernet IPv6 neighbour advertisement answering a solicitation."""
    if len(frame) < 14 + 40 + 24 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IPV6:
        return None
    ip6 = frame[14:]
    if ip6[6] != 58 or ip6[40] != 135:
        return None
    src, target = ip6[8:24], ip6[48:64]
    # flags: solicited + override; option 2 = target link-layer address
    body = bytes([136, 0, 0, 0]) + struct.pack("!I", 0x60000000) + target + bytes([2, 1]) + mac
    c = csum(pseudo6(target, src, len(body), 58) + body)
    body = body[:2] + struct.pack("!H", c) + body[4:]
    ip = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + target + src
    return frame[6:12] + mac + struct.pack("!H", ETH_P_IPV6) + ip + body


def tap_echo_reply(frame: bytes, mac: bytes = FAKE_MAC) -> bytes | None:
    """Answer what a pinging kernel sends through a TAP device: ARP, neighbour
    solicitation, and ICMP / ICMPv6 echo requests."""
    r = arp_reply(frame, mac) or neighbour_advert(frame, mac)
    if r:
        return r
    if len(frame) < 14:
        return None
    etype = struct.unpack("!H", frame[12:14])[0]
    inner = frame[14:]
    reply = echo_reply_v4(inner) if etype == ETH_P_IP else echo_reply_v6(inner) if etype == ETH_P_IPV6 else None
    if reply is None:
        return None
    return frame[6:12] + mac + frame[12:14] + reply


def verify_l4_checksum(pkt: bytes) -> bool:
    """True when the TCP/UDP/ICMP checksum of an IPv4 or IPv6 packet verifies."""
    if pkt[0] >> 4 == 4:
        ihl = (pkt[0] & 0xF) * 4
        total = struct.unpack("!H", pkt[2:4])[0]
        proto = pkt[9]
        l4 = pkt[ihl:total]
        if proto == 1:
            return csum(l4) == 0
        ph = pkt[12:20] + struct.pack("!BBH", 0, proto, len(l4))
        return csum(ph + l4) == 0
    plen = struct.unpack("!H", pkt[4:6])[0]
    nh = pkt[6]
    l4 = pkt[40:40 + plen]
    return csum(pseudo6(pkt[8:24], pkt[24:40], len(l4), nh) + l4) == 0


def ipv6_header(src: str, dst: str, nh: int, payload_len: int, hop: int = 64, tc: int = 0,
                flow: int = 0) -> bytes:
    return (struct.pack("!IHBB", (6 << 28) | (tc << 20) | flow, payload_len, nh, hop)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed)


def ipv6_with_ext(l4: bytes, l4_proto: int, exts: list, src: str, dst: str) -> bytes:
    """An IPv6 packet carrying l4 behind extension headers of the given types
    (8 bytes each; AH 16 bytes, as its length counts in 4-byte units)."""
    chain = b""
    for i, t in enumerate(exts):
        nh = exts[i + 1] if i + 1 < len(exts) else l4_proto
        chain += bytes([nh, 2]) + bytes(14) if t == 51 else bytes([nh, 0]) + bytes(6)
    return ipv6_header(src, dst, exts[0] if exts else l4_proto, len(chain) + len(l4)) + chain + l4


def ipv4_fragment(src: str, dst: str, proto: int, data: bytes, offset: int = 0, mf: bool = False) -> bytes:
    """An IPv4 fragment; offset in 8-byte units."""
    return ipv4_header(src, dst, proto, len(data), frag=(0x2000 if mf else 0) | offset) + data


def ipv6_fragment(src: str, dst: str, nh: int, data: bytes, offset: int = 0, mf: bool = False) -> bytes:
    frag = bytes([nh, 0]) + struct.pack("!HI", (offset << 3) | int(mf), 7)
    return ipv6_header(src, dst, 44, len(frag) + len(data)) + frag + data


ETH_HDR = bytes(6) + bytes([2, 0, 0, 0, 0, 1])   # destination, source


def eth(payload: bytes, ethertype: int) -> bytes:
    return ETH_HDR + struct.pack("!H", ethertype) + payload


def vlan_eth(payload: bytes, ethertype: int, vid: int, outer: int | None = None) -> bytes:
    """An 802.1Q-tagged frame; with outer, an 802.1ad tag in front (QinQ)."""
    tags = struct.pack("!HH", 0x88A8, outer) if outer is not None else b""
    return ETH_HDR + tags + struct.pack("!HHH", 0x8100, vid, ethertype) + payload


def icmp_echo(src: str, dst: str, ident: int) -> bytes:
    """An ICMP (IPv4) or ICMPv6 echo request with a correct checksum."""
    v6 = ":" in src
    body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1) + b"x"
    if v6:
        s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
        c = csum(pseudo6(s, d, len(body), 58) + body)
        body = body[:2] + struct.pack("!H", c) + body[4:]
        return ipv6_header(src, dst, 58, len(body)) + body
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    return ipv4_header(src, dst, 1, len(body)) + body


def _l4_with_csum(src: str, dst: str, proto: int, l4: bytes, at: int) -> bytes:
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if len(s) == 4:
        ph = s + d + struct.pack("!BBH", 0, proto, len(l4))
    else:
        ph = pseudo6(s, d, len(l4), proto)
    c = csum(ph + l4)
    if proto == 17 and c == 0:
        c = 0xFFFF
    return l4[:at] + struct.pack("!H", c) + l4[at + 2:]


def tcp_packet(src: str, dst: str, sport: int, dport: int, seq: int, payload: bytes, *, ack: int = 1,
               flags: int = 0x10, options: bytes = b"", window: int = 65000, ident: int = 1,
               tos: int = 0) -> bytes:
    """An IPv4 or IPv6 TCP packet with correct checksums."""
    assert len(options) % 4 == 0
    doff = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, doff << 4, flags, window, 0, 0)
    l4 = _l4_with_csum(src, dst, 6, tcp + options + payload, 16)
    if ":" in src:
        return ipv6_header(src, dst, 6, len(l4), tc=tos) + l4
    ip = bytearray(ipv4_header(src, dst, 6, len(l4), ident=ident))
    ip[1] = tos
    ip[6] |= 0x40  # DF, as TCP stacks send
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    return bytes(ip) + l4


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes, ident: int = 1) -> bytes:
    l4 = _l4_with_csum(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, 6)
    if ":" in src:
        return ipv6_header(src, dst, 17, len(l4)) + l4
    return ipv4_header(src, dst, 17, len(l4), ident=ident) + l4


def udp_zero_csum_payload(src: str, dst: str, sport: int, dport: int, prefix: bytes = b"", size: int = 100) -> bytes:
    """A UDP payload (prefix, filler) whose datagram's checksum computes to 0,
    which a sender must put on the wire as 0xffff (RFC 768)."""
    assert size % 2 == 0 and len(prefix) <= size - 2
    body = bytearray(prefix + b"." * (size - len(prefix)))
    body[-2:] = b"\0\0"
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    l4 = struct.pack("!HHHH", sport, dport, 8 + size, 0) + bytes(body)
    ph = s + d + struct.pack("!BBH", 0, 17, len(l4)) if len(s) == 4 else pseudo6(s, d, len(l4), 17)
    folded = (~csum(ph + l4)) & 0xFFFF          # the one's complement sum so far
    body[-2:] = struct.pack("!H", 0xFFFF - folded if folded != 0xFFFF else 0xFFFF)
    return bytes(body)


def vnet_hdr(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def parse_vnet(h: bytes) -> dict:
    f = struct.unpack("<BBHHHH", h[:10])
    return dict(zip(("flags", "gso_type", "hdr_len", "gso_size", "csum_start", "csum_offset"), f))


def complete_partial(pkt: bytes, csum_start: int, csum_offset: int) -> bytes:
    """What the kernel does with CHECKSUM_PARTIAL: fold the rest into the field."""
    c = csum(pkt[csum_start:])
    at = csum_start + csum_offset
    return pkt[:at] + struct.pack("!H", c) + pkt[at + 2:]
