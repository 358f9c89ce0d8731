"""Throughput of two wgtun ends against two wireguard-go ends and against
tunpump's plain offload UDP tunnel (the bench's udp-vnet scenario, no
encryption), side by side in one run (issue 11's speed check; run it on a
quiet machine):

    sudo python examples/wireguard/bench.py [--seconds 10] [--rounds 3]

Each pair lives in two fresh namespaces joined by veth (198.18.50.1 <->
.2; inside 198.18.51.1 <-> .2), carries one TCP stream for --seconds
(tunpump.bench.traffic), and is torn down; processes are ended by PID and
the namespaces deleted even on failure. udp-vnet runs as
`python -m tunpump bench` runs it, in its own namespaces. Prints one line
per round and the medians with wgtun's ratios to wireguard-go and udp-vnet."""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = 51820


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=30)


def keypair() -> tuple:
    k = X25519PrivateKey.generate()
    raw = k.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return (base64.b64encode(raw).decode(),
            base64.b64encode(k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode())


class Pair:
    """Two namespaces over veth and one tunnel end in each."""

    def __init__(self, kind: str, tmp: str) -> None:
        tag = f"wgb{os.getpid() % 10000}{kind[:2]}"
        self.ns = [f"{tag}a", f"{tag}b"]
        self.procs: List[subprocess.Popen] = []
        self.files: List[str] = []
        for n in self.ns:
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns[0], "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
           "netns", self.ns[1])
        for i, n in enumerate(self.ns):
            sh("ip", "-n", n, "addr", "add", f"198.18.50.{i + 1}/24", "dev", f"veth{i}")
            sh("ip", "-n", n, "link", "set", f"veth{i}", "up")
        keys = [keypair(), keypair()]
        for i, n in enumerate(self.ns):
            peer = dict(pub=keys[1 - i][1], ep=f"198.18.50.{2 - i}:{PORT}", ips=f"198.18.51.{2 - i}/32")
            (self._wgtun if kind == "wgtun" else self._wggo)(i, n, keys[i][0], peer, tmp)

    def _wgtun(self, i: int, n: str, priv: str, peer: dict, tmp: str) -> None:
        conf = os.path.join(tmp, f"{n}.conf")
        with open(os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(f"[Interface]\nPrivateKey = {priv}\nListenPort = {PORT}\nAddress = 198.18.51.{i + 1}/24\n"
                    f"[Peer]\nPublicKey = {peer['pub']}\nEndpoint = {peer['ep']}\nAllowedIPs = {peer['ips']}\n")
        dev = f"{n}t"   # unique: wgtun's show socket is /run/wgtun/DEV.sock, outside the namespace
        self._spawn(n, [sys.executable, os.path.join(HERE, "wgtun.py"), conf, "--dev", dev])
        self.files.append(f"/run/wgtun/{dev}.sock")
        deadline = time.monotonic() + 20
        while not os.path.exists(self.files[-1]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"wgtun in {n} did not come up")
            time.sleep(0.1)

    def _wggo(self, i: int, n: str, priv: str, peer: dict, tmp: str) -> None:
        name = f"{n}g"
        self.files.append(f"/var/run/wireguard/{name}.sock")
        self._spawn(n, ["wireguard-go", "-f", name], env=dict(os.environ, WG_PROCESS_FOREGROUND="1"))
        deadline = time.monotonic() + 10
        while not os.path.exists(self.files[-1]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"wireguard-go in {n} did not come up")
            time.sleep(0.05)
        key = os.path.join(tmp, f"{name}.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(priv + "\n")
        sh("ip", "netns", "exec", n, "wg", "set", name, "private-key", key, "listen-port", str(PORT),
           "peer", peer["pub"], "endpoint", peer["ep"], "allowed-ips", peer["ips"])
        sh("ip", "-n", n, "link", "set", name, "mtu", "1420", "up")
        sh("ip", "-n", n, "addr", "add", f"198.18.51.{i + 1}/24", "dev", name)

    def _spawn(self, n: str, cmd: list, env=None) -> None:
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", n, *cmd], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, env=env))

    def stream(self, seconds: float) -> float:
        """Gbit/s of one TCP stream from the first namespace to the second."""
        tool = [sys.executable, "-m", "tunpump.bench.traffic"]
        sink = subprocess.Popen(["ip", "netns", "exec", self.ns[1], *tool, "sink", "--port", "5301", "--no-hash",
                                 "--timeout", str(seconds + 30)], stdout=subprocess.PIPE, text=True)
        self.procs.append(sink)
        time.sleep(0.5)
        subprocess.run(["ip", "netns", "exec", self.ns[0], *tool, "source", "--host", "198.18.51.2", "--port",
                        "5301", "--bytes", str(1 << 50), "--seconds", str(seconds), "--no-hash",
                        "--timeout", str(seconds + 30)], check=True, capture_output=True, timeout=seconds + 60)
        return json.loads(sink.communicate(timeout=30)[0])["gbps"]

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)   # by PID: processes this script started
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for f in self.files:
            if os.path.exists(f):
                os.unlink(f)
        for n in self.ns:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("wireguard-go") or not shutil.which("wg"):
        print("bench: wireguard-go and wg are needed (apt-get install wireguard-go wireguard-tools)", file=sys.stderr)
        return 1
    from tunpump.bench import BY_NAME, run_scenario   # the bench's own udp-vnet, for the plain figure
    results: dict = {"wgtun": [], "wireguard-go": [], "udp-vnet": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind in results:   # interleaved, so drift hits all alike
                if kind == "udp-vnet":
                    results[kind].append(run_scenario(BY_NAME["udp-vnet"], args.seconds, lambda *a: None)["gbps"])
                    print(f"round {r + 1} {kind:13s} {results[kind][-1]:7.3f} Gbit/s", flush=True)
                    continue
                pair = Pair(kind, tmp)
                try:
                    subprocess.run(["ip", "netns", "exec", pair.ns[0], "ping", "-c", "2", "-W", "2",
                                    "198.18.51.2"], capture_output=True, timeout=30)   # the handshake
                    results[kind].append(pair.stream(args.seconds))
                finally:
                    pair.close()
                print(f"round {r + 1} {kind:13s} {results[kind][-1]:7.3f} Gbit/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"median: wgtun {med['wgtun']:.3f} Gbit/s, wireguard-go {med['wireguard-go']:.3f} Gbit/s, "
          f"udp-vnet {med['udp-vnet']:.3f} Gbit/s; wgtun/wireguard-go {med['wgtun'] / med['wireguard-go']:.2f}x, "
          f"wgtun/udp-vnet {med['wgtun'] / med['udp-vnet']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
