"""Write the committed seed corpus (tests/fuzz/corpus/<target>/) from the
table tests' packets: every split, coalesce and flow-key row becomes a seed in
the input format of its fuzz target. Run from the repository root:
    python tests/fuzz/make_corpus.py
"""
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # tests/: helpers.packets and the table test modules

import test_flow_keys as fk          # noqa: E402
import test_offload_kernels as ok    # noqa: E402


def _name(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def _write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, _name(name)), "wb") as f:
        f.write(data)


def gro_input(pkts, l2=False, tcp=True, udp=True, fix=False):
    ctl = (1 if l2 else 0) | (2 if tcp else 0) | (4 if udp else 0) | (8 if fix else 0)
    return bytes([ctl]) + b"".join(struct.pack("!H", len(p)) + p for p in pkts)


def main():
    # Seeds named regress-* are inputs the fuzzers found: they stay.
    for target in ("split", "gro", "parse", "csum"):
        d = os.path.join(HERE, "corpus", target)
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if not f.startswith("regress-"):
                os.remove(os.path.join(d, f))
    big = 0
    for name, hdr, pkt, l2, _ in ok.SPLIT_CASES:
        if len(pkt) > 10000:
            if big >= 2:
                continue
            big += 1
        _write("split", name, hdr + bytes([(1 if l2 else 0) | (31 << 1)]) + pkt)
    for name, pkt, l2 in ok.NEEDS_CSUM_CASES:
        raw, start, off = ok.partial(pkt, l2)
        _write("split", "needs-csum " + name, ok.vnet_hdr(1, 0, 0, 0, start, off) + bytes([l2]) + raw)
    for name, pkts, opts, _ in ok.COALESCE_CASES:
        l2 = bool(opts.get("l2"))
        _write("gro", name, gro_input(pkts, l2, opts.get("tcp", True), opts.get("udp", True)))
        if sum(map(len, pkts)) < 20000:
            _write("gro", name + " fixed", gro_input(pkts, l2, fix=True))
    for name, pkt, tap, _ in fk.CASES:
        _write("parse", name, bytes([int(tap)]) + pkt)
    for name, data in ok.CSUM_CASES:
        _write("csum", name, b"\x00\x10" + data)
    _write("csum", "packet", b"\x01\x03" + ok.super_tcp(ok.V4, b"c" * 1500))


if __name__ == "__main__":
    main()
