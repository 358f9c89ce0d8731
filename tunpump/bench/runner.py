"""`python -m tunpump bench`: builds its own namespaces, veth underlay and
devices, runs each scenario with kernel TCP traffic, and reports Gbit/s with
ratios to baselines measured in the same run (the bare veth pair and a
pure-Python os.read/os.write forwarder). Everything it makes is removed on
exit, on failure and on Ctrl-C / SIGTERM. The JSON schema is documented in
benchmarks/README.md and shipped as tunpump/bench/schema.json."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

if TYPE_CHECKING:
    from ..stats import Stats

SCHEMA = "tunpump-bench/1"
INNER_A, INNER_B = "198.18.31.1", "198.18.31.2"
UNDER_A, UNDER_B = "198.18.30.1", "198.18.30.2"


@dataclass(frozen=True)
class Scenario:
    name: str
    endpoint: str      # veth | relay | udp | tcp
    forwarder: str     # kernel | tunpump | cli (the `tunnel` command) | python | pytun | wireguard-go
    offloads: bool
    queues: int = 1
    streams: int = 1
    baseline: bool = False
    doc: str = ""
    traffic: str = "tcp"   # tcp (kernel TCP streams), udp64 / udp1400 (C generator, payload bytes),
                           # or flows (64-byte datagrams, each to a new port: new flows)
    quick: bool = True     # part of --quick
    on_flow: bool = False  # install a trivial on_flow callback (the control plane's cost)
    transform: str = ""    # "", "null" (transforms.Null) or an AEAD cipher ("aes-256-gcm", ...)


SCENARIOS = [
    Scenario("veth", "veth", "kernel", True, baseline=True, doc="bare veth pair: the ceiling"),
    Scenario("py-relay", "relay", "python", False, baseline=True, doc="Python loop, one packet per read"),
    Scenario("py-relay-vnet", "relay", "python", True, baseline=True, doc="Python loop passing super-packets"),
    Scenario("pytun-relay", "relay", "pytun", False, baseline=True, quick=False,
             doc="the same loop on python-pytun's devices (when installed)"),
    Scenario("relay-vnet", "relay", "tunpump", True, doc="tunpump relay, vnet_hdr super-packets"),
    Scenario("relay", "relay", "tunpump", False, doc="tunpump relay, per packet"),
    Scenario("relay-vnet-2q", "relay", "tunpump", True, queues=2, streams=4, quick=False,
             doc="2 queues, 4 TCP streams"),
    Scenario("py-udp", "udp", "python", False, baseline=True, doc="Python UDP tunnel loop"),
    Scenario("udp-vnet", "udp", "tunpump", True, doc="tunpump UDP tunnel: GSO split, UDP GSO/GRO, coalesce"),
    Scenario("udp", "udp", "tunpump", False, doc="tunpump UDP tunnel, offloads off"),
    Scenario("udp-null", "udp", "tunpump", True, transform="null", quick=False,
             doc="udp-vnet through the null transform: what the transform hook costs"),
    Scenario("udp-aead", "udp", "tunpump", True, transform="aes-256-gcm", quick=False,
             doc="udp-vnet through the built-in AEAD (AES-256-GCM, pre-shared key)"),
    Scenario("udp-aead-chacha", "udp", "tunpump", True, transform="chacha20-poly1305", quick=False,
             doc="udp-vnet through the built-in AEAD with ChaCha20-Poly1305 (its default cipher)"),
    Scenario("udp-cli", "udp", "cli", True, quick=False,
             doc="`python -m tunpump tunnel` with no tuning flags (its defaults) at both ends"),
    Scenario("tcp-vnet", "tcp", "tunpump", True, doc="tunpump TCP tunnel with offloads"),
    Scenario("tcp", "tcp", "tunpump", False, doc="tunpump TCP tunnel (simpletun framing), offloads off"),
    Scenario("relay-vnet-flow", "relay", "tunpump", True, on_flow=True, quick=False,
             doc="relay-vnet with a trivial on_flow installed: the flow table's cost"),
    Scenario("flows", "relay", "tunpump", False, traffic="flows", on_flow=True, quick=False,
             doc="new flows per second decided by a trivial Python on_flow"),
    Scenario("veth-u64", "veth", "kernel", True, baseline=True, traffic="udp64", quick=False,
             doc="64-byte UDP over bare veth"),
    Scenario("py-relay-u64", "relay", "python", False, baseline=True, traffic="udp64", quick=False,
             doc="64-byte UDP through the Python relay loop"),
    Scenario("relay-u64", "relay", "tunpump", True, traffic="udp64", quick=False,
             doc="64-byte UDP through the relay"),
    Scenario("udp-vnet-u64", "udp", "tunpump", True, traffic="udp64", quick=False,
             doc="64-byte UDP through the UDP tunnel"),
    Scenario("udp-aead-u64", "udp", "tunpump", True, traffic="udp64", transform="aes-256-gcm", quick=False,
             doc="64-byte UDP through the AEAD tunnel (AES-256-GCM)"),
    Scenario("udp-vnet-u1400", "udp", "tunpump", True, traffic="udp1400", quick=False,
             doc="1400-byte UDP through the UDP tunnel (USO/UDP GRO coalescing)"),
    Scenario("wireguard-go", "udp", "wireguard-go", False, baseline=True, quick=False,
             doc="two wireguard-go ends over the veth (when wireguard-go and wg are installed): "
                 "the baseline for encrypted tunnels"),
]
BY_NAME = {s.name: s for s in SCENARIOS}


class BenchError(Exception):
    pass


def _check_environment() -> None:
    if os.geteuid() != 0:
        raise BenchError("the bench needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create "
                         "namespaces and TUN devices; run it with sudo")
    if not os.path.exists("/dev/net/tun"):
        raise BenchError("/dev/net/tun is missing: load the tun module (modprobe tun)")
    if not shutil.which("ip"):
        raise BenchError("the bench needs iproute2's `ip` command to build its namespaces")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class World:
    """Namespaces, processes and pumps of one scenario; close() removes all."""

    def __init__(self) -> None:
        self.namespaces: List[str] = []
        self.procs: List[subprocess.Popen] = []
        self.closers: List = []

    def netns(self) -> str:
        name = f"tpb{os.getpid()}x{len(self.namespaces)}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def veth(self, n1: str, n2: str) -> None:
        a, b = f"tpbv{os.getpid() % 10000}a", f"tpbv{os.getpid() % 10000}b"
        _ip("-n", n1, "link", "add", a, "type", "veth", "peer", "name", b, "netns", n2)
        _ip("-n", n1, "addr", "add", f"{UNDER_A}/24", "dev", a)
        _ip("-n", n2, "addr", "add", f"{UNDER_B}/24", "dev", b)
        _ip("-n", n1, "link", "set", a, "up")
        _ip("-n", n2, "link", "set", b, "up")

    def spawn(self, ns: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for c in reversed(self.closers):
            try:
                c()
            except Exception:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.terminate()  # by PID: only what the bench started
                try:
                    p.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=3)
        for n in self.namespaces:
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        self.namespaces.clear()


def _proc_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _configure(name: str, ns: str, local: str, peer: str, mtu: int) -> None:
    from ..link import Link
    Link(name, ns).up().set_mtu(mtu).add_address(f"{local}/32", peer=peer)


def _wait_ready(p: subprocess.Popen) -> None:
    assert p.stdout is not None and p.stderr is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise BenchError(f"the Python forwarder did not start: {line}{p.stderr.read()}")


def _cli_tunnels(w: "World", n1: str, n2: str, seconds: float) -> List[subprocess.Popen]:
    """The two ends as a user starts them: `tunnel` with addresses and no
    tuning flags, so offloads, MTU and batch are the CLI's defaults."""
    ends = [(n1, "tpba", ["--listen", f"{UNDER_A}:7000", "--remote", f"{UNDER_B}:7000"], INNER_A, INNER_B),
            (n2, "tpbb", ["--connect", f"{UNDER_A}:7000", "--local", f"{UNDER_B}:7000"], INNER_B, INNER_A)]
    procs = [w.spawn(ns, "-m", "tunpump", "tunnel", "--dev", dev, "--udp", *role, "--address", f"{me}/32",
                     "--peer", peer, "--no-status", "-q")
             for ns, dev, role, me, peer in ends]
    deadline = time.monotonic() + 15
    for (ns, dev, _, me, _), p in zip(ends, procs):
        while me not in subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "dev", dev],
                                       capture_output=True, text=True).stdout:
            if p.poll() is not None or time.monotonic() > deadline:
                p.kill()
                raise BenchError(f"udp-cli: `tunpump tunnel` did not come up: {p.communicate()[1].strip()[-300:]}")
            time.sleep(0.05)
    return procs


def _iperf3(w: "World", n1: str, n2: str, target: str, seconds: float, streams: int) -> int:
    """Bytes an iperf3 client in n1 got to a one-off server in n2."""
    server = subprocess.Popen(["ip", "netns", "exec", n2, "iperf3", "-s", "-1", "-p", "5301"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w.procs.append(server)
    time.sleep(0.3)
    r = subprocess.run(["ip", "netns", "exec", n1, "iperf3", "-c", target, "-p", "5301", "-J",
                        "-t", str(max(1, round(seconds))), "-P", str(streams)],
                       capture_output=True, text=True, timeout=seconds + 30)
    if r.returncode != 0:
        raise BenchError(f"iperf3 failed: {(r.stdout + r.stderr).strip()[-300:]}")
    return int(json.loads(r.stdout)["end"]["sum_received"]["bytes"])


def run_scenario(sc: Scenario, seconds: float, progress, batch: int = 64, traffic: str = "builtin",
                 on_pumps: Optional[Callable[[list], None]] = None) -> dict:
    from ..device import Device
    from ..endpoint import TCPEndpoint, UDPEndpoint
    from ..pump import Pump

    w = World()
    pumps: List[Pump] = []
    forwarders: List[subprocess.Popen] = []
    mtu = 1500 if sc.endpoint == "relay" else 1400
    try:
        n1, n2 = w.netns(), w.netns()
        target = INNER_B
        if sc.endpoint in ("veth", "udp", "tcp"):
            w.veth(n1, n2)
        if sc.endpoint == "veth":
            target = UNDER_B
        elif sc.forwarder == "pytun":
            forwarders.append(w.spawn(n1, "-m", "tunpump.bench.pyforward", "pytun-relay", "tpba", "tpbb", n2,
                                      "--seconds", str(seconds + 30)))
            _wait_ready(forwarders[0])
            _configure("tpba", n1, INNER_A, INNER_B, mtu)
            _configure("tpbb", n2, INNER_B, INNER_A, mtu)
        elif sc.forwarder == "wireguard-go":
            from . import wireguard
            try:
                forwarders.extend(wireguard.start(w, [(n1, f"tpbw{os.getpid() % 10000}a", UNDER_A, INNER_A),
                                                      (n2, f"tpbw{os.getpid() % 10000}b", UNDER_B, INNER_B)], mtu))
            except RuntimeError as exc:
                raise BenchError(f"{sc.name}: {exc}") from None
        elif sc.forwarder == "cli":
            forwarders.extend(_cli_tunnels(w, n1, n2, seconds))
        elif sc.forwarder == "python":
            if sc.endpoint == "relay":
                args = ["-m", "tunpump.bench.pyforward", "relay", "tpba", n1, "tpbb", n2, "--seconds", str(seconds + 30)]
                forwarders.append(w.spawn(n1, *args, *(["--vnet-hdr"] if sc.offloads else [])))
            else:
                forwarders.append(w.spawn(n1, "-m", "tunpump.bench.pyforward", "udp", "tpba", n1, f"{UNDER_A}:7000",
                                          f"{UNDER_B}:7000", "--seconds", str(seconds + 30)))
                forwarders.append(w.spawn(n2, "-m", "tunpump.bench.pyforward", "udp", "tpbb", n2, f"{UNDER_B}:7000",
                                          f"{UNDER_A}:7000", "--seconds", str(seconds + 30)))
            for f in forwarders:
                _wait_ready(f)
            _configure("tpba", n1, INNER_A, INNER_B, mtu)
            _configure("tpbb", n2, INNER_B, INNER_A, mtu)
        else:
            vnet = sc.offloads
            a = Device("tpba", queues=sc.queues, vnet_hdr=vnet, netns=n1)
            w.closers.append(a.close)
            b = Device("tpbb", queues=sc.queues, vnet_hdr=vnet, netns=n2)
            w.closers.append(b.close)
            _configure("tpba", n1, INNER_A, INNER_B, mtu)
            _configure("tpbb", n2, INNER_B, INNER_A, mtu)
            ctl: Dict[str, Any] = {"on_flow": lambda f: None, "pending_limit": 4096} if sc.on_flow else {}
            if sc.traffic == "flows":
                # a table smaller than the ports cycled: every datagram is a new flow
                ctl["flow_table_size"] = 4096
            if sc.endpoint == "relay":
                pumps.append(Pump(a, b, batch=batch, **ctl))
            elif sc.endpoint == "udp":
                xf = _transform_maker(sc)
                pumps.append(Pump(a, UDPEndpoint((UNDER_A, 7000), (UNDER_B, 7000), netns=n1), batch=batch,
                                  transform=xf()))
                pumps.append(Pump(b, UDPEndpoint((UNDER_B, 7000), (UNDER_A, 7000), netns=n2), batch=batch,
                                  transform=xf()))
            else:
                pumps.append(Pump(a, TCPEndpoint.listen((UNDER_A, 7000), netns=n1), batch=batch))
                pumps.append(Pump(b, TCPEndpoint.connect((UNDER_A, 7000), netns=n2), batch=batch))
            for p in pumps:
                p.start()
                w.closers.append(p.stop)
            if on_pumps is not None:
                on_pumps(pumps)
            if sc.endpoint == "tcp":
                deadline = time.monotonic() + 5
                while pumps[1].stats().connects < 1 and time.monotonic() < deadline:
                    time.sleep(0.02)

        if sc.traffic != "tcp":
            return _udp_traffic(sc, w, n1, n2, target, seconds, pumps, forwarders, progress)
        if traffic == "iperf3":
            cpu0 = os.times()
            fcpu0 = sum(_proc_cpu_seconds(f.pid) for f in forwarders)
            t0 = time.monotonic()
            progress(sc.name, 0.0, None)
            received = _iperf3(w, n1, n2, target, seconds, sc.streams)
            return _result(sc, received, time.monotonic() - t0, pumps, forwarders, cpu0, fcpu0)
        # traffic: kernel TCP streams from n1 to n2, bounded in time and bytes
        sinks = [w.spawn(n2, "-m", "tunpump.bench.traffic", "sink", "--port", str(5201 + i), "--host", "0.0.0.0",
                         "--timeout", str(seconds + 30), "--no-hash") for i in range(sc.streams)]
        time.sleep(0.3)
        cpu0 = os.times()
        fcpu0 = sum(_proc_cpu_seconds(f.pid) for f in forwarders)
        t0 = time.monotonic()
        sources = [w.spawn(n1, "-m", "tunpump.bench.traffic", "source", "--host", target, "--port", str(5201 + i),
                           "--bytes", str(1 << 40), "--seconds", str(seconds), "--timeout", str(seconds + 30),
                           "--no-hash")
                   for i in range(sc.streams)]
        last_bytes, last_t = 0, t0
        while any(s.poll() is None for s in sources):
            time.sleep(0.25)
            now = time.monotonic()
            rate = None
            if pumps:
                nb = sum(p.stats().to_endpoint.bytes_out for p in pumps)
                rate = (nb - last_bytes) * 8 / (now - last_t) / 1e9
                last_bytes, last_t = nb, now
            progress(sc.name, now - t0, rate)
            if now - t0 > seconds + 30:
                raise BenchError(f"{sc.name}: traffic did not finish")
        wall = time.monotonic() - t0
        received = 0
        for s in sinks:
            out, err = s.communicate(timeout=seconds + 30)
            if s.returncode != 0:
                raise BenchError(f"{sc.name}: traffic sink failed: {err.strip()[-300:]}")
            received += json.loads(out)["bytes"]
        for s in sources:
            if s.returncode != 0:
                err = s.stderr.read() if s.stderr else ""
                raise BenchError(f"{sc.name}: traffic source failed: {err.strip()[-300:]}")
        return _result(sc, received, wall, pumps, forwarders, cpu0, fcpu0)
    finally:
        w.close()


def _transform_maker(sc: Scenario) -> Callable[[], Any]:
    """Makes the scenario's transform for each end (None: no transform)."""
    from .. import transforms
    if not sc.transform:
        return lambda: None
    if sc.transform == "null":
        return transforms.Null
    key = os.urandom(32)   # one pre-shared key for both ends, made for this run only
    try:
        transforms.AEAD(key, sc.transform)
    except transforms.AEADUnavailable as exc:
        raise BenchError(f"{sc.name}: {exc}") from None
    return lambda: transforms.AEAD(key, sc.transform)


def _udp_traffic(sc: Scenario, w: "World", n1: str, n2: str, target: str, seconds: float,
                 pumps, forwarders, progress) -> dict:
    """Small-packet UDP from the C generator: delivered packets per second."""
    size = 64 if sc.traffic == "flows" else int(sc.traffic[3:])
    nports = 20000 if sc.traffic == "flows" else 1
    r, wfd = os.pipe()
    sink = subprocess.Popen(["ip", "netns", "exec", n2, sys.executable, "-m", "tunpump.bench.traffic", "udp-sink",
                             "--port", "5301", "--seconds", str(seconds + 10), "--idle", "1",
                             "--ready-fd", str(wfd)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, pass_fds=(wfd,))
    w.procs.append(sink)
    os.close(wfd)
    os.read(r, 1)
    os.close(r)
    cpu0 = os.times()
    fcpu0 = sum(_proc_cpu_seconds(f.pid) for f in forwarders)
    t0 = time.monotonic()
    progress(sc.name, 0.0, None)
    src = subprocess.run(["ip", "netns", "exec", n1, sys.executable, "-m", "tunpump.bench.traffic", "udp-source",
                          "--host", target, "--port", "5301", "--size", str(size), "--seconds", str(seconds),
                          "--ports", str(nports), "--count", str(nports * 50 if nports > 1 else 10_000_000)],
                         capture_output=True, text=True, timeout=seconds + 30)
    wall = time.monotonic() - t0
    if src.returncode != 0:
        raise BenchError(f"{sc.name}: UDP source failed: {src.stderr.strip()[-300:]}")
    res = _result(sc, 0, wall, pumps, forwarders, cpu0, fcpu0)
    out, err = sink.communicate(timeout=seconds + 30)
    if sink.returncode != 0:
        raise BenchError(f"{sc.name}: UDP sink failed: {err.strip()[-300:]}")
    got, sent = json.loads(out), json.loads(src.stdout)
    secs = got["seconds"] or wall
    res["bytes"] = got["bytes"]
    res["gbps"] = got["bytes"] * 8 / secs / 1e9
    res["delivered_kpps"] = got["packets"] / secs / 1e3
    res["loss"] = 1 - got["packets"] / sent["packets"] if sent["packets"] else None
    if sc.traffic == "flows":
        # what is measured is the decisions, not delivery (only port 5301 listens)
        flows = sum(p.stats().flows.verdicts for p in pumps)
        res["flows_per_second"] = flows / wall
        res["delivered_kpps"] = None
        res["loss"] = None
    return res


def _result(sc: Scenario, received: int, wall: float, pumps, forwarders, cpu0, fcpu0) -> dict:
    """One scenario's figures, taken before its world is torn down."""
    cpu1 = os.times()
    fcpu1 = sum(_proc_cpu_seconds(f.pid) for f in forwarders)
    result = {"scenario": sc.name, "endpoint": sc.endpoint, "forwarder": sc.forwarder,
              "offloads": sc.offloads, "queues": sc.queues, "streams": sc.streams,
              "traffic": sc.traffic, "delivered_kpps": None, "loss": None, "flows_per_second": None,
              "on_flow": sc.on_flow, "transform": sc.transform or None,
              "seconds": round(wall, 3), "bytes": received,
              "gbps": received * 8 / wall / 1e9, "kpps": None, "bytes_per_syscall": None,
              "cpu_percent": None, "ratios": {}}
    if pumps:
        dirs = [d for p in pumps for d in (p.stats().to_endpoint, p.stats().to_device)]
        pk = sum(d.packets_out for d in dirs)
        by = sum(d.bytes_out for d in dirs)
        calls = sum(d.read_calls + d.write_calls for d in dirs)
        result["kpps"] = pk / wall / 1e3
        result["bytes_per_syscall"] = by / calls if calls else None
        # the bench process is idle apart from the pump's workers
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        result["cpu_percent"] = 100 * cpu / wall
    elif sc.forwarder in ("wireguard-go", "cli"):
        result["cpu_percent"] = 100 * (fcpu1 - fcpu0) / wall
    elif forwarders:
        for f in forwarders:
            f.terminate()
        counts = [json.loads(f.communicate(timeout=10)[0].strip().splitlines()[-1]) for f in forwarders]
        calls = sum(c["reads"] + c["writes"] for c in counts)
        result["kpps"] = sum(c["writes"] for c in counts) / wall / 1e3
        result["bytes_per_syscall"] = sum(c["bytes"] for c in counts) / calls if calls else None
        result["cpu_percent"] = 100 * (fcpu1 - fcpu0) / wall
    return result


def _ratios(results: List[dict]) -> None:
    """Each tunpump figure against the baselines of the same traffic."""
    def metric(r):
        return r["delivered_kpps"] if r["traffic"] != "tcp" else r["gbps"]

    got = {r["scenario"]: metric(r) for r in results}
    for r in results:
        if r["forwarder"] not in ("tunpump", "cli"):
            continue
        if r["traffic"] == "flows":
            bases = {}
        elif r["traffic"] == "tcp":
            bases = {"veth": "veth"}
            if r["endpoint"] == "relay":
                bases.update({"python": "py-relay", "python_vnet": "py-relay-vnet", "pytun": "pytun-relay"})
            else:
                bases.update({"python": "py-udp"})
            if r["on_flow"]:
                bases["without_on_flow"] = "relay-vnet"
            if r["forwarder"] == "cli":
                bases["library"] = "udp-vnet"   # the same tunnel built with the Python API
            if r.get("transform"):
                bases["udp_vnet"] = "udp-vnet"   # the same tunnel without the transform
            if r.get("transform") not in (None, "", "null"):
                bases["wireguard_go"] = "wireguard-go"
        else:
            bases = {"veth": "veth-u64", "python": "py-relay-u64"} if r["traffic"] == "udp64" else {}
            if r.get("transform") and r["traffic"] == "udp64":
                bases["udp_vnet_u64"] = "udp-vnet-u64"

        for key, base in bases.items():
            if got.get(base) and metric(r) is not None:
                r["ratios"][key] = metric(r) / got[base]


def format_table(results: List[dict]) -> str:
    head = (f"{'scenario':15} {'forwarder':9} {'Gbit/s':>8} {'kpps':>8} {'B/syscall':>9} {'CPU%':>6} "
            f"{'deliv.kpps':>10} {'loss':>5} {'flows/s':>8}  ratios")
    lines = [head, "-" * len(head)]
    for r in results:
        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"
        ratios = " ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items())
        lines.append(f"{r['scenario']:15} {r['forwarder']:9} {r['gbps']:8.2f} {f(r['kpps'], '8.1f'):>8} "
                     f"{f(r['bytes_per_syscall'], '9.0f'):>9} {f(r['cpu_percent'], '6.0f'):>6} "
                     f"{f(r['delivered_kpps'], '10.1f'):>10} {f(r['loss'], '5.2f'):>5} "
                     f"{f(r['flows_per_second'], '8.0f'):>8}  {ratios}")
    return "\n".join(lines)


def _need_matplotlib() -> None:
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError("--plot needs matplotlib: pip install 'tunpump[plot]'")


def _plot(results: List[dict], path: str) -> None:
    _need_matplotlib()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["scenario"] for r in results]
    ax.barh(names, [r["gbps"] for r in results],
            color=["#888" if r["forwarder"] != "tunpump" else "#2a7" for r in results])
    ax.set_xlabel("Gbit/s (one run)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)


def build_parser(p: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m tunpump bench")
    p.add_argument("--quick", action="store_true", help="short runs: finishes within 20 s")
    p.add_argument("--seconds", type=float, help="traffic per scenario (default 2.5, quick 0.6)")
    p.add_argument("--scenario", action="append", choices=sorted(BY_NAME), metavar="NAME",
                   help=f"run only these (repeatable): {', '.join(BY_NAME)}")
    p.add_argument("--traffic", choices=("builtin", "iperf3"), default="builtin",
                   help="TCP traffic from tunpump.bench.traffic (default) or from iperf3 when installed")
    p.add_argument("--batch", type=int, default=64, help="tunpump packets per wakeup and direction")
    p.add_argument("--json", action="store_true", help="print one JSON object (schema tunpump-bench/1)")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of the results (needs matplotlib)")
    p.add_argument("--soak", type=float, metavar="SECONDS",
                   help=f"full load on one scenario (--scenario, default {SOAK_DEFAULT}) for this long: "
                        "RSS over time and any packet not accounted for (exit 1 if any)")
    return p


SOAK_DEFAULT = "udp-vnet"


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _unaccounted(stats: "Stats") -> Dict[str, int]:
    """Per direction: packets in that went neither out nor to a drop reason
    nor to Python (punted)."""
    out = {}
    for d in ("to_endpoint", "to_device"):
        s = stats.direction(d)
        out[d] = s.packets_in - s.packets_out - s.dropped - s.punted
    return out


def soak(args: argparse.Namespace) -> int:
    """One tunpump scenario under full load for --soak seconds: the bench
    process's RSS (the pumps run in it) sampled over time, and, once the
    pumps stopped, every packet accounted for (in == out + drops)."""
    names = args.scenario or [SOAK_DEFAULT]
    if len(names) != 1 or BY_NAME[names[0]].forwarder != "tunpump":
        raise BenchError(f"--soak: one tunpump scenario (--scenario NAME), got {names}")
    if not 1 <= args.soak <= 7 * 86400:
        raise BenchError(f"--soak={args.soak:g}: expected 1 to 604800 seconds")
    sc = BY_NAME[names[0]]
    interval = max(0.5, args.soak / 60)
    samples: List[List[float]] = []
    pumps: list = []
    done = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while True:
            samples.append([round(time.monotonic() - t0, 2), _rss_kib()])
            if done.wait(interval):
                return

    def quiet(name: str, elapsed: float, rate: Optional[float]) -> None:
        pass

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_scenario(sc, args.soak, quiet, args.batch, args.traffic, on_pumps=pumps.extend)
    finally:
        signal.signal(signal.SIGTERM, old)
        done.set()
        sampler.join()
    samples.append([round(time.monotonic() - t0, 2), _rss_kib()])
    per_pump = [p.stats() for p in pumps]          # stopped: their final counters
    unaccounted = [_unaccounted(s) for s in per_pump]
    lost = sum(v for u in unaccounted for v in u.values())
    rss = [kib for _, kib in samples]
    doc = {"schema": "tunpump-soak/1", "version": _version(), "scenario": sc.name, "seconds": args.soak,
           "rss_kib": samples, "rss_growth_kib": rss[-1] - rss[0] if rss else 0,
           "packets": sum(s.to_endpoint.packets_in + s.to_device.packets_in for s in per_pump),
           "unaccounted": unaccounted, "unaccounted_total": lost, "gbps": result["gbps"]}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"soak {sc.name}: {args.soak:g} s, {doc['packets']} packets through the pumps, "
              f"{result['gbps']:.2f} Gbit/s")
        for t, kib in samples:
            print(f"  {t:8.1f} s  RSS {kib / 1024:8.1f} MiB")
        print(f"RSS growth {doc['rss_growth_kib'] / 1024:+.1f} MiB; "
              + ("every packet accounted for" if lost == 0 else f"UNACCOUNTED packets: {unaccounted}"))
    return 1 if lost else 0


def _choose(args: argparse.Namespace) -> List[Scenario]:
    """The scenarios to run: those named, or all (--quick: the quick ones);
    baselines whose tool is missing are refused when named, else skipped."""
    from . import wireguard
    chosen = ([BY_NAME[n] for n in args.scenario] if args.scenario else
              [sc for sc in SCENARIOS if (sc.quick or not args.quick) and
               (sc.forwarder != "pytun" or _have_pytun())])
    if any(sc.forwarder == "pytun" for sc in chosen) and not _have_pytun():
        raise BenchError("pytun-relay: python-pytun is not installed (pip install python-pytun)")
    why = wireguard.unavailable()
    if why and any(sc.forwarder == "wireguard-go" for sc in chosen):
        if args.scenario:
            raise BenchError(f"wireguard-go: {why}")
        print(f"tunpump bench: skipping wireguard-go: {why}", file=sys.stderr)
        chosen = [sc for sc in chosen if sc.forwarder != "wireguard-go"]
    return chosen


def run(args: argparse.Namespace) -> int:
    _check_environment()
    if getattr(args, "soak", None) is not None:
        return soak(args)
    if args.plot:
        _need_matplotlib()   # say so before the runs, not after
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
            raise BenchError(f"--plot {args.plot}: no such directory")
    seconds = args.seconds or (0.6 if args.quick else 2.5)   # quick: ~15 s in all, default: ~70 s
    if not 0.1 <= seconds <= 600:
        raise BenchError(f"--seconds={seconds}: expected 0.1 to 600")
    chosen = _choose(args)
    if args.traffic == "iperf3" and not shutil.which("iperf3"):
        raise BenchError("--traffic iperf3: iperf3 is not installed (apt-get install iperf3)")
    tty = sys.stderr.isatty()

    def progress(name: str, elapsed: float, rate: Optional[float]) -> None:
        cur = f"{rate:6.2f} Gbit/s" if rate is not None else ""
        msg = f"  {name:15} {elapsed:5.1f}s {cur}"
        print(("\r" + msg + "   ") if tty else msg, end="" if tty else "\n", file=sys.stderr, flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    results = []
    started = time.monotonic()
    try:
        for sc in chosen:
            results.append(run_scenario(sc, seconds, progress, args.batch, args.traffic))
    finally:
        signal.signal(signal.SIGTERM, old)
        if tty:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    _ratios(results)
    doc = {"schema": SCHEMA, "version": _version(), "quick": bool(args.quick),
           "seconds_per_scenario": seconds, "elapsed": round(time.monotonic() - started, 2),
           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "python": platform.python_version()},
           "results": results}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_table(results))
        print(f"\n{len(results)} scenarios, {seconds:g} s of traffic each, {doc['elapsed']:.1f} s in all; "
              f"ratios are to baselines measured in this run.")
    if args.plot:
        _plot(results, args.plot)
    return 0


def _have_pytun() -> bool:
    import importlib.util
    return importlib.util.find_spec("pytun") is not None


def _version() -> str:
    from .. import __version__
    return __version__


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"tunpump bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntunpump bench: interrupted; everything it made was removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
