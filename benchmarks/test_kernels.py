"""Micro-benchmarks of the C kernels (pytest-benchmark):

    python -m pytest benchmarks/test_kernels.py --benchmark-only

Each benchmarked call runs the kernel LOOPS times inside C
(`tunpump.bench._tools.kernel_loop`), so the binding's overhead is spread thin:
divide the reported time by LOOPS for the cost of one operation."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from helpers.packets import tcp_packet, vnet_hdr  # noqa: E402

from tunpump import _core  # noqa: E402
from tunpump.bench import _tools  # noqa: E402

LOOPS = 1000
V4 = ("198.18.0.1", "198.18.0.2")
PAYLOAD = bytes((i * 7) & 0xFF for i in range(64000))
SUPER = tcp_packet(*V4, 40000, 5201, 1000, PAYLOAD, flags=0x18)
SUPER_HDR = vnet_hdr(1, 1, 40, 1400, 20, 16)
SEGMENTS = _tools.vnet_split(SUPER_HDR, SUPER)


@pytest.mark.parametrize("size", [64, 1500, 65536])
def test_checksum(benchmark, size):
    benchmark.extra_info["loops"] = LOOPS
    benchmark(_tools.kernel_loop, "checksum", bytes(size), LOOPS)


def test_gso_split_64k_into_46(benchmark):
    benchmark.extra_info["loops"] = LOOPS
    assert benchmark(_tools.kernel_loop, "split", SUPER, LOOPS, SUPER_HDR) == 46


def test_gro_coalesce_46_segments(benchmark):
    benchmark.extra_info["loops"] = LOOPS
    assert benchmark(_tools.kernel_loop, "coalesce", SEGMENTS, LOOPS) == 1


def test_gro_coalesce_two_interleaved_flows(benchmark):
    other = [tcp_packet(*V4, 40001, 5201, 1000 + i * 1400, PAYLOAD[:1400]) for i in range(46)]
    mixed = [p for pair in zip(SEGMENTS, other) for p in pair]
    benchmark.extra_info["loops"] = LOOPS
    assert benchmark(_tools.kernel_loop, "coalesce", mixed, LOOPS) == 2


def test_flow_lookup_1000_flows(benchmark):
    flows = [tcp_packet(*V4, 10000 + i, 5201, 1, b"x" * 100) for i in range(1000)]
    benchmark.extra_info["loops"] = LOOPS
    benchmark.extra_info["packets_per_loop"] = 1000
    assert benchmark(_tools.kernel_loop, "flow", flows, 10) == 10 * 1000


def test_ring_push_pop_1024(benchmark):
    benchmark.extra_info["records_per_loop"] = 1024
    assert benchmark(_tools.kernel_loop, "ring", 1024, 100) == 100 * 1024
