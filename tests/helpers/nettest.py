"""Helpers for tests that need real devices: namespaces the test makes itself,
processes run inside them (ended by PID), and bounded traffic.

All addresses used by the tests are in 198.18.0.0/15 and fd00::/8, and all
traffic stays inside namespaces made here."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, List, Optional

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_counter = itertools.count()


def privilege_problem() -> Optional[str]:
    """Why privileged tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) to create TUN/TAP devices and namespaces"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun (modprobe tun)"
    if not shutil.which("ip"):
        return "needs iproute2's ip command to make namespaces"
    return None


def unique(prefix: str = "tpt") -> str:
    """A name no other process makes: the pid is in it (a sanitizer child
    pytest runs the same tests beside this session), and it fits IFNAMSIZ."""
    return f"{namespace_prefix(os.getpid(), prefix)}{next(_counter)}"


def namespace_prefix(pid: int, prefix: str = "tpt") -> str:
    """What the names process `pid` makes with unique() start with."""
    return f"{prefix}{pid % 100000}x"


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


class Namespaces:
    """Makes namespaces and processes; `cleanup()` removes every one of them."""

    def __init__(self) -> None:
        self.names: List[str] = []
        self.procs: List[subprocess.Popen] = []
        self.closers: List[Callable[[], None]] = []

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        """Call fn (close devices, ...) first in cleanup()."""
        self.closers.append(fn)

    def make(self) -> str:
        name = unique()
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, ns_a: str, ns_b: str, addr_a: str, addr_b: str, mtu: int = 1500) -> tuple:
        """A veth pair with one end in each namespace, addressed and up."""
        a, b = unique("tpv"), unique("tpv")
        # Made inside ns_a, so nothing ever appears in the root namespace.
        sh("ip", "-n", ns_a, "link", "add", a, "mtu", str(mtu), "type", "veth", "peer", "name", b,
           "netns", ns_b, "mtu", str(mtu))
        for ns, dev, addr in ((ns_a, a, addr_a), (ns_b, b, addr_b)):
            extra = ["nodad"] if ":" in addr else []
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev, *extra)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        return a, b

    def run(self, ns: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                              text=True, timeout=timeout)

    def spawn(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, **kw)
        self.procs.append(p)
        return p

    def python(self, ns: str, *args: str, **kw) -> subprocess.Popen:
        return self.spawn(ns, sys.executable, *args, **kw)

    def ping(self, ns: str, addr: str, count: int = 3, timeout: float = 10) -> subprocess.CompletedProcess:
        return self.run(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", "-w", str(int(timeout)), addr,
                        timeout=timeout + 5)

    def transfer(self, ns_src: str, ns_dst: str, dst_addr: str, nbytes: int, port: int = 5201,
                 timeout: float = 120) -> dict:
        """Send nbytes over one TCP connection from ns_src to dst_addr in
        ns_dst; return both sides' reports."""
        r, w = os.pipe()
        sink = self.python(ns_dst, "-m", "tunpump.bench.traffic", "sink", "--port", str(port),
                           "--timeout", str(timeout), "--ready-fd", str(w), pass_fds=(w,))
        os.close(w)
        os.read(r, 1)  # the sink listens
        os.close(r)
        src = self.python(ns_src, "-m", "tunpump.bench.traffic", "source", "--host", dst_addr,
                          "--port", str(port), "--bytes", str(nbytes), "--timeout", str(timeout))
        s_out, s_err = src.communicate(timeout=timeout + 10)
        k_out, k_err = sink.communicate(timeout=timeout + 10)
        assert src.returncode == 0, s_err
        assert sink.returncode == 0, k_err
        return {"sent": json.loads(s_out), "received": json.loads(k_out)}

    def cleanup(self) -> None:
        for fn in reversed(self.closers):
            try:
                fn()
            except Exception as exc:   # the namespaces must still go
                print(f"cleanup: {fn!r} raised {exc!r}")
        self.closers.clear()
        for p in self.procs:
            if p.poll() is None:
                p.kill()  # by PID: only processes this helper started
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for name in self.names:
            delete_netns(name)
        self.names.clear()


def delete_netns(name: str) -> bool:
    """Delete a namespace this run made; retry once (a mount still held by an
    exiting `ip netns exec` child can make the first unlink fail)."""
    for attempt in range(2):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if not os.path.exists(f"/run/netns/{name}"):
            return True
        time.sleep(0.2)
    return False


def wait_until(pred, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def ip_link_json(ns: str, dev: str) -> dict:
    out = sh("ip", "-n", ns, "-d", "-j", "link", "show", dev).stdout
    return json.loads(out)[0]
