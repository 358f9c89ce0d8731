"""The pure packet code (csrc/packet) on its own: the layout rule that it
includes no system I/O header, and the C unit tests of tests/c/test_packet.c
built with ASan + UBSan and -Werror from csrc/packet alone."""
import glob
import os
import re

from helpers.csan import build_and_run, sanitizer_gcc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKET = os.path.join(ROOT, "csrc", "packet")
# Pure functions over buffers: the C library's memory, string and integer
# headers only. Nothing that reaches the OS (sockets, files, ioctls, threads,
# time, the TUN driver's headers).
ALLOWED_SYSTEM = {"errno.h", "limits.h", "stdbool.h", "stddef.h", "stdint.h", "stdlib.h", "string.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def includes(path):
    with open(path) as f:
        return INCLUDE.findall(f.read())


def test_packet_code_includes_no_system_io_header():
    files = sorted(glob.glob(os.path.join(PACKET, "*.[ch]")))
    assert len(files) >= 8, files
    local = {os.path.basename(f) for f in files}
    bad = []
    for path in files:
        for kind, name in includes(path):
            if kind == "<" and name not in ALLOWED_SYSTEM:
                bad.append(f"{os.path.basename(path)}: <{name}> is not a pure-C header")
            if kind == '"' and name not in local:
                bad.append(f'{os.path.basename(path)}: "{name}" is outside csrc/packet')
    assert not bad, "\n".join(bad)


def test_include_rule_catches_a_violation(tmp_path):
    """The rule's reader sees both kinds of include it forbids."""
    f = tmp_path / "x.c"
    f.write_text('#include <sys/socket.h>\n  # include "tp_compat.h"\n#include <string.h>\n')
    assert includes(str(f)) == [("<", "sys/socket.h"), ('"', "tp_compat.h"), ("<", "string.h")]


def test_packet_unit_tests_under_asan_ubsan(tmp_path):
    gcc = sanitizer_gcc()
    args = ["-I", PACKET, os.path.join(ROOT, "tests", "c", "test_packet.c"), *sorted(glob.glob(os.path.join(PACKET, "*.c")))]
    assert build_and_run(gcc, tmp_path / "test_packet", args) > 1000
