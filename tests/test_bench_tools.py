"""The bench's C tools (tunpump.bench._tools), apart from the library: the
kernel loops the micro-benchmarks time, and what the library must not load."""
import subprocess
import sys

import pytest

from helpers.packets import tcp_packet, vnet_hdr
from tunpump import _core
from tunpump.bench import _tools

V4 = ("198.18.0.1", "198.18.0.2")
V6 = ("fd00::1", "fd00::2")
NEEDS_CSUM, TCPV4 = 1, 1


def _segments(addrs, n, mss=1000):
    return [tcp_packet(*addrs, 40000, 5201, 5000 + i * mss, bytes([i]) * mss, flags=0x10, ident=i + 1)
            for i in range(n)]


def test_kernel_loop_runs_each_kernel():
    """The micro-benchmarks' loop (benchmarks/test_kernels.py) does real work."""
    data = bytes(range(256)) * 4
    folded = ((~_tools.checksum(data)) & 0xFFFF).to_bytes(2, "big")  # the sum, network order
    assert _tools.kernel_loop("checksum", data, 3) == 3 * int.from_bytes(folded, sys.byteorder)
    sp = tcp_packet(*V4, 40000, 5201, 1000, b"k" * 5000, flags=0x18)
    hdr = vnet_hdr(NEEDS_CSUM, TCPV4, 40, 1000, 20, 16)
    assert _tools.kernel_loop("split", sp, 2, hdr) == 5
    assert _tools.kernel_loop("coalesce", _segments(V4, 4) + _segments(V6, 3), 5) == 2
    flows = [tcp_packet(*V4, 10000 + i, 5201, 1, b"x") for i in range(50)]
    assert _tools.kernel_loop("flow", flows, 3) == 150
    assert _tools.kernel_loop("ring", 1000, 4) == 4000


@pytest.mark.parametrize("args, match", [
    (("nope", b"", 1), "kind='nope'"),
    (("checksum", b"", 0), "iterations=0"),
    (("checksum", b"", 1), "arg: empty"),
    (("coalesce", [], 1), "arg: no packets"),
    (("ring", 0, 1), "records=0"),
])
def test_kernel_loop_refuses_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        _tools.kernel_loop(*args)


@pytest.mark.parametrize("hdr", [None, b"", b"\x01\x01\x28\x00"], ids=["none", "empty", "short"])
def test_kernel_loop_split_checks_the_vnet_header_length(hdr):
    # Regression (issue 12, bug 11): "split" read 10 bytes of whatever it was given.
    sp = tcp_packet(*V4, 40000, 5201, 1000, b"k" * 3000, flags=0x18)
    with pytest.raises(ValueError, match=f"vnet_hdr: .* at least {_core.VNET_HDR_LEN} bytes"):
        _tools.kernel_loop("split", sp, 1, hdr)


def test_core_carries_no_bench_or_test_tools():
    for name in ("kernel_loop", "_flow_loop", "_ring_loop", "udp_source", "udp_sink",
                 "checksum", "vnet_split", "gro_coalesce"):
        assert not hasattr(_core, name), name
        assert hasattr(_tools, name), name


def test_import_tunpump_loads_no_cli_bench_or_traffic_module():
    code = ("import sys, tunpump\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('tunpump.cli', 'tunpump.bench', "
            "'tunpump.__main__')))\n"
            "print(','.join(bad))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"import tunpump loaded {r.stdout.strip()}"
