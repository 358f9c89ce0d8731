"""Regression tests for defects found in the review of the issue 9 rework
(each failed before its fix). Fake devices and pipes: no root."""
import errno
import os
import socket
import struct
import subprocess
import sys

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


def test_table_size_over_the_c_limit_is_named_not_malloc():
    """tp_flow_table_init refuses more than TP_FLOW_TABLE_MAX flows with
    -EINVAL, but the config check let it through and tp__ctl_alloc turned it
    into "malloc: Cannot allocate memory"."""
    ctl = {"enabled": 1, "table_size": _core.MAX_FLOW_TABLE + 1}
    exc = _start_error(_core.KIND_TUN, ctl=ctl)
    assert exc.errno == 22 and exc.step == "table_size", (exc.errno, exc.step)


def test_flow_table_limit_comes_from_c():
    from tunpump import Pump
    a, b = FakeDevice("fa"), FakeDevice("fb")
    try:
        with pytest.raises(ValueError, match=f"1 to {_core.MAX_FLOW_TABLE} flows"):
            Pump(a, b, on_flow=lambda f: None, flow_table_size=_core.MAX_FLOW_TABLE + 1)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("field", ["local_port", "remote_port"])
def test_port_plus_queue_past_65535_is_refused(field):
    """Worker i uses port + i: with 65535 and two queues worker 1 would get
    port 0 (htons of 65536), an ephemeral port, silently. The address is
    198.18.0.1, not assigned here: before the check, start() got as far as
    bind() and failed there (EADDRNOTAVAIL), with no socket left bound."""
    addr = socket.inet_aton("198.18.0.1")
    sock = {"family": socket.AF_INET, "local_addr": addr, "local_port": 65535 if field == "local_port" else 4000,
            "remotes": [(socket.inet_aton("198.18.0.2"), 65535 if field == "remote_port" else 4000)]}
    exc = _start_error(_core.KIND_UDP, nworkers=2, sock=sock)
    assert exc.errno == 22 and exc.step == field, (exc.errno, exc.step)


NOFILE_SCRIPT = """
import os, resource
from tunpump import _core
r, w = os.pipe()
free = [os.dup(0) for _ in range(4)]
for fd in free:
    os.close(fd)
# the pump's three eventfds fit, worker 0's control eventfd does not
resource.setrlimit(resource.RLIMIT_NOFILE, (max(free), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
core = _core.CorePump()
try:
    core.start(_core.KIND_TUN, 1, [r], (0, 0, 0, 0), [r], (0, 0, 0, 0), ctl={"enabled": 1, "table_size": 64})
    print("started")
except OSError as e:
    print(e.errno, e.step)
"""


def test_control_eventfd_failure_is_named_eventfd():
    """Worker 0's control eventfd failing (EMFILE) was reported as
    'malloc: Too many open files'."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    r = subprocess.run([sys.executable, "-c", NOFILE_SCRIPT], cwd=root, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(errno.EMFILE), "eventfd"], r.stdout + r.stderr
