"""The WireGuard example's test rig: examples/wireguard built out of tree
(its own setup.py, against tunpump.get_include()), wgtun and wireguard-go
started inside a test's namespaces (ended by PID, their sockets removed),
an underlay capture, and raw datagrams sent from a chosen source."""
from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import List, Optional

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption

from .nettest import CI, unique, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "wireguard")
UAPI_DIR = "/var/run/wireguard"
PORT = 51820


def wireguard_go_problem() -> Optional[str]:
    missing = [t for t in ("wireguard-go", "wg") if not shutil.which(t)]
    return f"{' and '.join(missing)} not installed (apt-get install wireguard-go wireguard-tools)" if missing else None


def require_wireguard_go() -> None:
    import pytest
    problem = wireguard_go_problem()
    if problem:
        if CI:
            pytest.fail(f"CI requires the interop tests to run: {problem}")
        pytest.skip(problem)


def build(tmpdir: str) -> str:
    """Copy the example into tmpdir and build wgdata there; return tmpdir."""
    for f in os.listdir(EXAMPLE):
        if f.endswith((".py", ".c", ".toml")):
            shutil.copy(os.path.join(EXAMPLE, f), tmpdir)
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tmpdir,
                       env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return str(tmpdir)


def keypair() -> tuple:
    k = X25519PrivateKey.generate()
    raw = k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(pub).decode()


def config(private: str, port: Optional[int], addresses: List[str], peers: List[dict]) -> str:
    """wg-quick text; port None leaves ListenPort out (the kernel picks one)."""
    out = ["[Interface]", f"PrivateKey = {private}", f"Address = {', '.join(addresses)}"]
    if port is not None:
        out.append(f"ListenPort = {port}")
    for p in peers:
        out += ["", "[Peer]"] + [f"{k} = {v}" for k, v in p.items()]
    return "\n".join(out) + "\n"


class Wgtun:
    """wgtun.py running in namespace `ns_name`, with config text `conf`."""

    def __init__(self, ns, ns_name: str, build_dir: str, conf: str, timers: Optional[dict] = None) -> None:
        self.name = unique("wgt")
        self.conf = os.path.join(build_dir, f"{self.name}.conf")
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(conf)
        self.log = os.path.join(build_dir, f"{self.name}.log")
        args = [os.path.join(build_dir, "wgtun.py"), self.conf, "--dev", self.name, "-v"]
        for k, v in (timers or {}).items():
            args += ["--timer", f"{k}={v}"]
        self.build_dir = build_dir
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns_name, sys.executable, *args], stdout=out,
                                         stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=ROOT))
        ns.procs.append(self.proc)
        ns.on_cleanup(self.stop)
        ok = wait_until(lambda: self.proc.poll() is not None or "up:" in self.text(), timeout=30)
        assert ok and self.proc.poll() is None, self.text()

    def text(self) -> str:
        with open(self.log) as f:
            return f.read()

    def handshakes(self) -> int:
        return len(re.findall(r"handshake complete", self.text()))

    def show(self) -> str:
        r = subprocess.run([sys.executable, os.path.join(self.build_dir, "wgtun.py"), "show", self.name],
                           capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
        assert r.returncode == 0, r.stderr
        return r.stdout

    def drops(self) -> dict:
        """What tunpump counted as dropped by wgdata, by reason (stats: wireguard_<reason>)."""
        return {k: int(v) for k, v in re.findall(r"\bwireguard_(\w+) (\d+)", self.show())}

    def dropped(self, reason: str) -> int:
        return self.drops().get(reason, 0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)   # by PID: the process this rig started
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        try:
            os.unlink(f"/run/wgtun/{self.name}.sock")   # left only if it was killed
        except FileNotFoundError:
            pass


class WireguardGo:
    """wireguard-go in namespace ns_name, configured with `wg set`."""

    def __init__(self, ns, ns_name: str, tmpdir: str, private: str, port: int, addresses: List[str],
                 peer_public: str, endpoint: Optional[str], allowed: str, psk: Optional[str] = None) -> None:
        self.ns_name, self.name = ns_name, unique("wgg")
        sock = os.path.join(UAPI_DIR, f"{self.name}.sock")
        ns.on_cleanup(lambda: os.path.exists(sock) and os.unlink(sock))
        self.log = os.path.join(tmpdir, f"{self.name}.log")
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns_name, "wireguard-go", "-f", self.name],
                                         stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, WG_PROCESS_FOREGROUND="1"))
        ns.procs.append(self.proc)   # ended by PID in ns.cleanup()
        assert wait_until(lambda: os.path.exists(sock) or self.proc.poll() is not None, timeout=10), self.log
        keyfile = os.path.join(tmpdir, f"{self.name}.key")
        fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private + "\n")
        args = ["private-key", keyfile, "listen-port", str(port), "peer", peer_public, "allowed-ips", allowed]
        if endpoint:
            args += ["endpoint", endpoint]
        if psk:
            pskfile = keyfile + ".psk"
            fd = os.open(pskfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(psk + "\n")
            args += ["preshared-key", pskfile]
        self.wg("set", self.name, *args)
        self.ip("link", "set", self.name, "mtu", "1420", "up")
        for a in addresses:
            self.ip("addr", "add", a, "dev", self.name, *(["nodad"] if ":" in a else []))

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.ns_name, *args], check=True, capture_output=True, timeout=30)

    def wg(self, *args: str) -> str:
        r = subprocess.run(["ip", "netns", "exec", self.ns_name, "wg", *args], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout


# Capture UDP datagrams to or from a port on every interface of a namespace
# (AF_PACKET: outgoing too) for a bounded time / count; print payloads as hex.
# It also ends when its stdin closes (Capture.payloads: the test's traffic is
# over), once it has read every frame already queued: a frame is queued as it
# crosses the interface, so nothing the test sent before is lost.
CAPTURE = r"""
import select, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(3))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
print("ready", flush=True)
port, end, out = int(sys.argv[3]), time.monotonic() + float(sys.argv[1]), []
done = False
while time.monotonic() < end and len(out) < int(sys.argv[2]):
    ready = select.select([s, sys.stdin], [], [], 0 if done else 0.2)[0]
    done = done or sys.stdin in ready
    if s not in ready:
        if done:
            break
        continue
    pkt = s.recv(1 << 17)
    v = pkt[0] >> 4 if pkt else 0
    off = (pkt[0] & 15) * 4 if v == 4 else 40 if v == 6 else 0
    proto = pkt[9] if v == 4 else pkt[6] if v == 6 else 0
    if proto == 17 and len(pkt) >= off + 8 and port in (int.from_bytes(pkt[off:off+2], "big"),
                                                      int.from_bytes(pkt[off+2:off+4], "big")):
        out.append(pkt[off + 8:].hex())
print("\n".join(out))
"""


class Capture:
    def __init__(self, ns, ns_name: str, seconds: float, count: int = 100000, port: int = PORT) -> None:
        self.p = ns.python(ns_name, "-c", CAPTURE, str(seconds), str(count), str(port), stdin=subprocess.PIPE)
        assert self.p.stdout.readline().strip() == "ready"

    def payloads(self, timeout: float = 120) -> List[bytes]:
        """What it saw until now (or its time / count ran out before)."""
        out, err = self.p.communicate(timeout=timeout)   # closes its stdin: it stops
        return [bytes.fromhex(x) for x in out.split()]


# Send datagrams (hex, one per argument) from src:sport to dst:dport with a
# raw socket: the source port may be one another process has bound.
RAW_SEND = r"""
import socket, sys
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.bind((src, 0))
for h in sys.argv[5:]:
    data = bytes.fromhex(h)
    hdr = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + (8 + len(data)).to_bytes(2, "big") + b"\0\0"
    s.sendto(hdr + data, (dst, 0))
"""


def raw_send(ns, ns_name: str, src: str, sport: int, dst: str, dport: int, datagrams: List[bytes]) -> None:
    r = ns.run(ns_name, sys.executable, "-c", RAW_SEND, src, str(sport), dst, str(dport),
               *[d.hex() for d in datagrams])
    assert r.returncode == 0, r.stderr


def wait_log(w: Wgtun, pattern: str, timeout: float = 10) -> bool:
    return wait_until(lambda: re.search(pattern, w.text()) is not None, timeout=timeout, interval=0.1)
