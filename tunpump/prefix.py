"""The prefix before each packet on a TUN/TAP queue: the 4-byte packet
information (PI: flags and EtherType, without IFF_NO_PI) and the virtio-net
header (IFF_VNET_HDR). Strip it off a frame a device handed over, or build a
plain one for a bare packet. Pure functions over bytes: no syscalls."""
from __future__ import annotations

import errno
import struct

from .errors import SuperPacketError, TunpumpError

PI_SIZE = 4
READ_SIZE = 65536 + 64  # the largest packet plus room for the PI and vnet headers
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
VNET_HDR_F_NEEDS_CSUM = 1
VNET_HDR_GSO_ECN = 0x80
# flags, gso_type, hdr_len, gso_size, csum_start, csum_offset: native order, as tun uses by default
_VNET = struct.Struct("=BBHHHH")


def size(pi: bool, vnet_hdr_size: int) -> int:
    return (PI_SIZE if pi else 0) + vnet_hdr_size


def strip(frame: bytes, *, pi: bool, vnet_hdr_size: int) -> bytes:
    """The bare packet inside `frame` (as read from a device with these
    flags). A packet whose checksum the kernel left partial
    (VIRTIO_NET_HDR_F_NEEDS_CSUM) gets it completed, as the kernel would
    before handing it to a device without checksum offload. A GSO
    super-packet raises SuperPacketError (its ``frame`` holds it whole): a
    bare super-packet would look like one oversized packet with wrong
    lengths and checksums."""
    start = size(pi, vnet_hdr_size)
    if not start:
        return frame
    if len(frame) < start:
        raise TunpumpError(errno.EBADMSG, f"a {len(frame)}-byte frame is shorter than its {start}-byte prefix")
    if not vnet_hdr_size:
        return frame[start:]
    flags, gso_type, _, gso_size, csum_start, csum_offset = _VNET.unpack_from(frame, start - vnet_hdr_size)
    if gso_type & ~VNET_HDR_GSO_ECN:
        exc = SuperPacketError(
            errno.EMSGSIZE, f"a GSO super-packet (gso_type {gso_type}, gso_size {gso_size}, "
                            f"{len(frame) - start} bytes) cannot be stripped to one bare packet: "
                            f"read it with prefix=True, or turn the device's tso/uso offloads off")
        exc.frame = bytes(frame)
        raise exc
    packet = frame[start:]
    if flags & VNET_HDR_F_NEEDS_CSUM:
        packet = complete_checksum(packet, csum_start, csum_offset)
    return packet


def complete_checksum(packet: bytes, csum_start: int, csum_offset: int) -> bytes:
    """Fold the one's complement sum of packet[csum_start:] into the 16-bit
    field at csum_start + csum_offset, which holds the pseudo-header sum
    (CHECKSUM_PARTIAL); 0 goes out as 0xffff, as the kernel's
    skb_checksum_help does."""
    at = csum_start + csum_offset
    if at + 2 > len(packet):
        raise TunpumpError(errno.EBADMSG, f"checksum field at {at} is beyond the {len(packet)}-byte packet")
    data = bytes(packet[csum_start:])
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF   # the one's complement sum, as 2**16 = 1 (mod 0xffff)
    value = (~total & 0xFFFF) or 0xFFFF
    return bytes(packet[:at]) + value.to_bytes(2, "big") + bytes(packet[at + 2:])


def build(packet: bytes, *, mode: str, pi: bool, vnet_hdr_size: int) -> bytes:
    """A plain prefix for a bare packet (`mode` 'tun': IPv4/IPv6, 'tap':
    Ethernet): PI flags 0 with the packet's EtherType, and a virtio-net
    header that says nothing (no GSO, checksum complete)."""
    out = b""
    if pi:
        if mode == "tun":
            version = packet[0] >> 4 if len(packet) else None
            if version not in (4, 6):
                raise ValueError(f"packet: a TUN device takes IPv4 or IPv6 packets; this one starts with "
                                 f"{bytes(packet[:1]).hex() or 'nothing'} (IP version {version})")
            proto = ETH_P_IP if version == 4 else ETH_P_IPV6
        else:
            if len(packet) < 14:
                raise ValueError(f"packet: a TAP device takes Ethernet frames (14 bytes or more); got {len(packet)}")
            proto = int.from_bytes(packet[12:14], "big")
        out += b"\0\0" + proto.to_bytes(2, "big")
    return out + bytes(vnet_hdr_size)


def check_flag(prefix: object) -> bool:
    if not isinstance(prefix, bool):
        raise ValueError(f"prefix={prefix!r}: expected True (the frame with the device's PI / vnet_hdr "
                         f"prefix) or False (the bare packet)")
    return prefix
