"""C unit-test programs (tests/c/, reporting through check.h) built with
ASan + UBSan and -Werror, run, and their "ok N checks" line read."""
import os
import re
import shutil
import subprocess

import pytest

from helpers.nettest import CI

FLAGS = ["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-Werror",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
SAN_ENV = dict(ASAN_OPTIONS="abort_on_error=1:detect_leaks=1", UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")


def sanitizer_gcc() -> str:
    """gcc with its sanitizer runtime; skip without it (fail under CI)."""
    gcc = shutil.which("gcc")
    probe = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                           text=True).stdout.strip() if gcc else ""
    if not (os.path.isabs(probe) and os.path.exists(probe)):
        if CI:
            pytest.fail("gcc with libasan is missing (install gcc's sanitizer runtime)")
        pytest.skip("no gcc with libasan here")
    return gcc


def build_and_run(gcc: str, exe, args) -> int:
    """Compile `args` (sources, -I, libraries) into exe with FLAGS, run it,
    and return the number of checks it passed; any failure fails the test."""
    build = subprocess.run([gcc, *FLAGS, *args, "-o", str(exe)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    env = dict(os.environ, **SAN_ENV)
    env.pop("LD_PRELOAD", None)
    res = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "FAIL" not in out and "runtime error" not in out and "Sanitizer" not in out, out[-4000:]
    last = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"ok \d+ checks", last), out[-4000:]
    return int(last.split()[1])
