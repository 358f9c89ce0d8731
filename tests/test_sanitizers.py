"""Build a second copy of the extension with ASan + UBSan and run the C-level
tests against it (the device ioctls, the pump, the packet parsers).

The copy lives in a temporary directory; the sanitizer runtime is preloaded
into a child pytest, since Python itself is not built with it."""
import os
import shutil
import subprocess
import sys

import pytest

from helpers.nettest import CI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests that drive C code: keep in step with new C modules.
C_LEVEL_TESTS = ["tests/test_offload_kernels.py", "tests/test_flow_keys.py", "tests/test_core_pump.py",
                 "tests/test_pump_rig.py", "tests/test_bench_tools.py", "tests/test_control.py",
                 "tests/test_device.py", "tests/test_pump_relay.py",
                 "tests/test_pump_tunnel.py", "tests/test_offload_e2e.py", "tests/test_pump_bugs.py",
                 "tests/test_endpoint_bugs.py", "tests/test_pump_review.py",
                 "tests/test_bench.py::test_udp_generator_counts_exactly",
                 "tests/test_transform.py", "tests/test_transform_xor.py", "tests/test_aead.py",
                 "tests/test_peers.py",
                 "tests/test_aead_transform.py"]


def _libasan():
    out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else None


def test_c_level_tests_under_asan_ubsan(tmp_path, privileged):
    lib = _libasan()
    if lib is None:
        if CI:
            pytest.fail("libasan is missing (install gcc's sanitizer runtime)")
        pytest.skip("gcc has no libasan here")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        "build", "*.so", "*.egg-info", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "_core.c", "_tools.c"))
    env = dict(os.environ, TUNPUMP_SANITIZE="1", TUNPUMP_WERROR="1", TUNPUMP_OPT="-O1")
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=src,
                           env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    tests = [t for t in C_LEVEL_TESTS if os.path.exists(src / t.split("::")[0])]
    assert len(tests) == len(C_LEVEL_TESTS), "a C-level test file was renamed: update C_LEVEL_TESTS"
    run_env = dict(os.environ, PYTHONPATH=str(src), LD_PRELOAD=lib,
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
                   UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
    # -s: a sanitizer report from a worker thread ends the process at once; with
    # pytest's fd capture it would vanish with the capture file.
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-x", *tests],
                         cwd=src, env=run_env, capture_output=True, text=True, timeout=1200)
    tail = res.stdout[-4000:] + res.stderr[-4000:]
    assert res.returncode == 0, tail
    assert "ERROR: AddressSanitizer" not in tail and "runtime error:" not in tail, tail
    # It really was the sanitized build that ran.
    check = subprocess.run([sys.executable, "-c", "import tunpump._core as c, tunpump.bench._tools as t; "
                            "print(c.__file__); print(t.__file__)"],
                           cwd=src, env=run_env, capture_output=True, text=True)
    files = check.stdout.split()
    assert len(files) == 2 and all(f.startswith(str(src)) for f in files), check.stdout + check.stderr
