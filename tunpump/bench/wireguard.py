"""The bench's wireguard-go baseline: two wireguard-go ends in the bench's
own namespaces, over its veth underlay, so encrypted tunpump figures have a
ratio to an independent WireGuard implementation measured in the same run.

Each end's wireguard-go is started inside its namespace in the foreground
(-f, WG_PROCESS_FOREGROUND=1) as a child of the bench, configured with `wg`,
and ended by its PID when the scenario closes. Keys come from `wg genkey`;
inner addresses are the bench's (198.18.0.0/15)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import List, Optional

UAPI_DIR = "/var/run/wireguard"   # wireguard-go's control sockets: one file system for all namespaces
PORT = 7000


def unavailable() -> Optional[str]:
    """Why the baseline cannot run here, or None."""
    missing = [t for t in ("wireguard-go", "wg") if not shutil.which(t)]
    if not missing:
        return None
    return (f"{' and '.join(missing)} not installed "
            f"(apt-get install --no-install-recommends wireguard-go wireguard-tools)")


def _run(*args: str, input: Optional[str] = None) -> str:
    r = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])}: {(r.stderr or r.stdout).strip()[-300:]}")
    return r.stdout.strip()


def _keypair() -> tuple:
    private = _run("wg", "genkey")
    return private, _run("wg", "pubkey", input=private + "\n")


def _wait_link(ns: str, name: str, proc: subprocess.Popen, log: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log) as f:
                raise RuntimeError(f"wireguard-go {name} exited ({proc.returncode}): {f.read().strip()[-300:]}")
        if subprocess.run(["ip", "-n", ns, "link", "show", name], capture_output=True).returncode == 0 and \
                os.path.exists(os.path.join(UAPI_DIR, f"{name}.sock")):
            return
        time.sleep(0.05)
    raise RuntimeError(f"wireguard-go {name} did not create its interface within {timeout:g} s")


def _unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def start(world, ends, mtu: int) -> List[subprocess.Popen]:
    """Start and configure one wireguard-go per (namespace, device name,
    underlay address, inner address) in ends (two of them, peers of each
    other). Every process and file is registered with world for close()."""
    tmp = tempfile.mkdtemp(prefix="tpbwg")
    world.closers.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    keys = [_keypair() for _ in ends]
    procs = []
    for i, (ns, name, under, inner) in enumerate(ends):
        sock = os.path.join(UAPI_DIR, f"{name}.sock")
        # wireguard-go removes its socket on a clean exit; a kill would leave it
        world.closers.append(lambda s=sock: _unlink_if_there(s))
        log = os.path.join(tmp, f"{name}.log")
        with open(log, "w") as out:
            p = subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", name], stdout=out,
                                 stderr=subprocess.STDOUT, env=dict(os.environ, WG_PROCESS_FOREGROUND="1"))
        world.procs.append(p)   # ended by PID in world.close()
        procs.append(p)
        _wait_link(ns, name, p, log)
    for i, (ns, name, under, inner) in enumerate(ends):
        peer_ns, peer_name, peer_under, peer_inner = ends[1 - i]
        keyfile = os.path.join(tmp, f"{name}.key")
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(keys[i][0] + "\n")
        _run("ip", "netns", "exec", ns, "wg", "set", name, "private-key", keyfile, "listen-port", str(PORT),
             "peer", keys[1 - i][1], "endpoint", f"{peer_under}:{PORT}", "allowed-ips", f"{peer_inner}/32")
        _run("ip", "-n", ns, "link", "set", name, "mtu", str(mtu), "up")
        _run("ip", "-n", ns, "addr", "add", f"{inner}/32", "peer", f"{peer_inner}/32", "dev", name)
    return procs
