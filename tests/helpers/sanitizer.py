"""The sanitizer run of tests/test_sanitizers.py: a copy of the tree built
with ASan + UBSan, and the C-level tests run against it in a child pytest
with the sanitizer runtime preloaded (Python itself is not built with it).

It takes minutes, mostly waiting on the network tests, so it runs in the
background while the rest of the session runs: conftest.py starts it once
collection is done (when the test is selected) and moves the test to the end
of the run, where it waits for the result. It runs at nice 19, so the main
run's timing-sensitive tests are not starved of CPU.

The parent holds only a Popen (no thread, no pipe): tests that count the
session's threads and fds see nothing change. Ending the session early
(Ctrl-C, -x) stops it: SIGINT to its process group (the child pytest tears
its fixtures down, deleting their namespaces), SIGKILL after a grace period,
then any namespace of the child still there is deleted and the copy removed.

The two runs cannot collide: each namespace and veth a test makes is named
after its process id (nettest.unique), and devices live in those namespaces."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from .nettest import delete_netns, namespace_prefix

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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

BUILD_TIMEOUT = 600
TESTS_TIMEOUT = 1200
STOP_GRACE = 20      # seconds the child pytest has to tear down after SIGINT
BUILD_ENV = dict(TUNPUMP_SANITIZE="1", TUNPUMP_WERROR="1", TUNPUMP_OPT="-O1")
RUN_ENV = dict(ASAN_OPTIONS="detect_leaks=0:abort_on_error=1", UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")


def libasan() -> Optional[str]:
    out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else None


def run_env(src: str, lib: str) -> dict:
    """The child's environment: the copy first on the path, the runtime preloaded."""
    return dict(os.environ, PYTHONPATH=src, LD_PRELOAD=lib, **RUN_ENV)


class SanitizerRun:
    """The build and the child pytest, started at once in the background."""

    def __init__(self, lib: str, tests: List[str] = C_LEVEL_TESTS) -> None:
        self.lib = lib
        self.dir = tempfile.mkdtemp(prefix="tunpump-asan-")
        self.src = os.path.join(self.dir, "src")
        self.proc: Optional[subprocess.Popen] = None
        try:
            shutil.copytree(ROOT, self.src, ignore=shutil.ignore_patterns(
                "build", "*.so", "*.egg-info", ".git", "__pycache__", ".pytest_cache", ".hypothesis",
                "_core.c", "_tools.c"))
            self.tests = [t for t in tests if os.path.exists(os.path.join(self.src, t.split("::")[0]))]
            self.renamed = len(self.tests) != len(tests)
            self.proc = self._start()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.deadline = time.monotonic() + BUILD_TIMEOUT + TESTS_TIMEOUT

    def _start(self) -> subprocess.Popen:
        build = [sys.executable, "setup.py", "-q", "build_ext", "--inplace"]
        # -s: a sanitizer report from a worker thread ends the process at once; with
        # pytest's fd capture it would vanish with the capture file.
        tests = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-x", *self.tests]
        q = shlex.join
        build_env = q(["env", *(f"{k}={v}" for k, v in BUILD_ENV.items())])
        tests_env = q(["env", *(f"{k}={v}" for k, v in run_env(self.src, self.lib).items()
                                if os.environ.get(k) != v)])
        # One shell, exec'd into the child pytest: its pid is the Popen's, so its
        # namespaces (tpt<pid>x...) are known. A renamed test file: build only.
        script = (f"{build_env} {q(build)} >../build.out 2>../build.err; echo $? >../build.rc; "
                  f"[ \"$(cat ../build.rc)\" = 0 ] && [ {int(self.renamed)} = 0 ] || exit 0; "
                  f"exec {tests_env} {q(tests)} >../tests.out 2>../tests.err")
        return subprocess.Popen(["nice", "-n", "19", "sh", "-c", script], cwd=self.src, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait(self) -> None:
        """Until the child pytest ends; past the time limit it is stopped and
        TimeoutExpired raised, as subprocess.run(timeout=...) would."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._end()
            raise

    def _read(self, name: str) -> str:
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def build(self) -> subprocess.CompletedProcess:
        rc = self._read("build.rc").strip()
        return subprocess.CompletedProcess("build", int(rc) if rc else None,
                                           self._read("build.out"), self._read("build.err"))

    def result(self) -> subprocess.CompletedProcess:
        assert self.proc is not None
        return subprocess.CompletedProcess("tests", self.proc.returncode,
                                           self._read("tests.out"), self._read("tests.err"))

    def _end(self) -> None:
        """Stop a child still running: SIGINT to its group, so the child
        pytest's fixtures delete their namespaces; SIGKILL for whatever is
        left after the grace period; then its namespaces still there. The
        leader is reaped last: until then its pid (the group id, and the
        tpt<pid>x prefix) cannot belong to anybody else."""
        p = self.proc
        if p is None or p.returncode is not None:
            return      # not started, or ended and reaped by wait(): its own teardown ran
        if not _exited(p.pid):
            _signal_group(p.pid, signal.SIGINT)
            deadline = time.monotonic() + STOP_GRACE
            while not _exited(p.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        _signal_group(p.pid, signal.SIGKILL)   # stragglers of the group, if any
        if os.path.isdir("/run/netns"):
            for name in os.listdir("/run/netns"):
                if name.startswith(namespace_prefix(p.pid)):
                    delete_netns(name)
        p.wait()

    def stop(self) -> None:
        """End whatever still runs and leave nothing behind."""
        try:
            self._end()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _exited(pid: int) -> bool:
    """Has child `pid` ended? Without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
