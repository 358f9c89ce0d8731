"""The TCP framing decoder is pure code over a buffer: a small C program
drives it with a table of streams (tests/c/test_tp_frame.c), under ASan and
UBSan when the compiler has them."""
import os
import shutil
import subprocess

import pytest

from helpers.nettest import CI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build(tmp_path, sanitize):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        if CI:
            pytest.fail("no C compiler (install gcc)")
        pytest.skip("no C compiler")
    exe = tmp_path / ("frame_san" if sanitize else "frame")
    flags = ["-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror"]
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    r = subprocess.run([cc, *flags, "-I", os.path.join(ROOT, "csrc/packet"),
                        os.path.join(ROOT, "tests/c/test_tp_frame.c"), os.path.join(ROOT, "csrc/packet/tp_frame.c"),
                        "-o", str(exe)], capture_output=True, text=True, timeout=120)
    return exe, r


def test_frame_decoder_table(tmp_path):
    exe, r = _build(tmp_path, sanitize=False)
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr


def test_frame_decoder_table_sanitized(tmp_path):
    exe, r = _build(tmp_path, sanitize=True)
    if r.returncode != 0 and "asan" in r.stderr.lower():
        if CI:
            pytest.fail("the compiler has no ASan runtime (install gcc's libasan)")
        pytest.skip("the compiler has no ASan runtime")
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr
