"""C unit-test programs (tests/c/, reporting through check.h) built with
ASan + UBSan and -Werror, run, and their "ok N checks" line read."""
import os
import re
import shutil
import subprocess

import pytest

from helpers.nettest import CI
from helpers.sanitizer import libasan

FLAGS = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-Werror",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
SAN_ENV = dict(ASAN_OPTIONS="abort_on_error=1:detect_leaks=1", UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")


def sanitizer_gcc() -> str:
    """gcc with its sanitizer runtime; skip without it (fail under CI)."""
    gcc = shutil.which("gcc")
    if not gcc or libasan() is None:
        if CI:
            pytest.fail("gcc with libasan is missing (install gcc's sanitizer runtime)")
        pytest.skip("no gcc with libasan here")
    return gcc


def build(gcc: str, exe, args) -> str:
    """Compile `args` (sources, -I, libraries) into exe with FLAGS; a
    compiler error fails the test."""
    res = subprocess.run([gcc, *FLAGS, *args, "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    return str(exe)


def run(argv) -> str:
    """Run a sanitized program; any failure or sanitizer report fails the
    test. Returns its standard output."""
    env = dict(os.environ, **SAN_ENV)
    env.pop("LD_PRELOAD", None)
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "Sanitizer" not in out and "runtime error" not in out, out[-4000:]
    return res.stdout


def build_and_run(gcc: str, exe, args) -> int:
    """build() and run() a tests/c program, and return the number of checks
    it passed (its last line, "ok N checks")."""
    out = run([build(gcc, exe, args)])
    assert "FAIL" not in out, out[-4000:]
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"ok \d+ checks", last), out[-4000:]
    return int(last.split()[1])
