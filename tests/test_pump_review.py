"""Regression tests for defects found in the review of the issue 9 rework
(each failed before its fix). Fake devices and pipes: no root."""
import os
import socket
import struct

import pytest

from helpers.fakedev import FakeDevice, fmt
from helpers.packets import udp_packet
from tunpump import _core

PLAIN = (0, 0, 0, 0)   # (pi, vnet_hdr_sz, tap, offloads)
VNET_F_DATA_VALID = 2


def _start_error(kind, nworkers=1, sock=None, ctl=None):
    """The OSError start() raises for this config (pipes stand in for queues)."""
    fds = [os.pipe() for _ in range(nworkers)]
    core = _core.CorePump()
    try:
        with pytest.raises(OSError) as info:
            core.start(kind, 1, [r for r, _ in fds], PLAIN, [r for r, _ in fds] if kind == _core.KIND_TUN else None,
                       PLAIN if kind == _core.KIND_TUN else None, sock=sock, ctl=ctl)
        return info.value
    finally:
        core.stop()
        core.close()
        for r, w in fds:
            os.close(r)
            os.close(w)


def test_data_valid_packet_reaches_a_device_without_vnet_hdr():
    """A vnet_hdr TUN marks packets the kernel already verified with
    VIRTIO_NET_HDR_F_DATA_VALID (virtio_net_hdr_from_skb, has_data_valid=true
    in tun_put_user). Such a packet is complete: relayed to a device without
    a vnet_hdr it must arrive, not be dropped as offload_mismatch."""
    a, b = FakeDevice("fa", vnet_hdr_size=10), FakeDevice("fb")
    core = _core.CorePump()
    try:
        core.start(_core.KIND_TUN, 8, a.fds, fmt(a), b.fds, fmt(b))
        pkt = udp_packet("198.18.11.1", "198.18.11.2", 40000, 7000, b"verified")
        a.wire[0].send(bytes([VNET_F_DATA_VALID]) + bytes(9) + pkt)
        try:
            got = b.recv(timeout=5.0)
        except socket.timeout:
            got = None
        core.stop()
        st = core.stats()[0]["to_endpoint"]
        assert st["drops"]["offload_mismatch"] == 0, st
        assert got == pkt
        assert st["packets_in"] == st["packets_out"] + sum(st["drops"].values()) == 1
    finally:
        core.close()
        a.close()
        b.close()
