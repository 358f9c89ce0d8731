"""`python -m tunpump bench`: quick JSON run validates against the documented
schema; nothing is left behind, also after SIGINT mid-run; clear refusals."""
import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from helpers.benchleft import leftovers, namespaces_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = json.load(open(os.path.join(ROOT, "tunpump", "bench", "schema.json")))


def bench_json(*scenarios, seconds, timeout):
    """`tunpump bench --json` on these scenarios: its document, checked
    against the schema."""
    args = [a for name in scenarios for a in ("--scenario", name)]
    r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--json", "--seconds", str(seconds), *args],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_quick_json_validates(privileged):
    r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--quick", "--json"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert doc["quick"] is True
    names = {x["scenario"] for x in doc["results"]}
    assert {"veth", "py-relay", "relay-vnet", "udp", "tcp"} <= names
    for res in doc["results"]:
        assert res["bytes"] > 0 and res["gbps"] > 0, res
        if res["forwarder"] == "tunpump":
            assert "veth" in res["ratios"] and "python" in res["ratios"]
            assert res["bytes_per_syscall"] > 0
    # how long --quick takes is the bench's own figure, not a test's; it covers every run
    assert doc["elapsed"] >= doc["seconds_per_scenario"] * len(doc["results"])
    assert leftovers() == []


def test_sigint_mid_run_cleans_up(privileged):
    p = subprocess.Popen([sys.executable, "-m", "tunpump", "bench", "--scenario", "relay-vnet",
                          "--seconds", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not namespaces_of(p.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # traffic is flowing
        assert namespaces_of(p.pid), "the bench never built its namespaces"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert leftovers() == [] and namespaces_of(p.pid) == []
    link = subprocess.run(["ip", "-o", "link", "show", "type", "tun"], capture_output=True, text=True).stdout
    assert "tpb" not in link


def test_bench_refuses_without_root():
    # import first: after dropping root the interpreter's own files under /root are unreadable
    code = ("import os, sys; from tunpump.bench import main; import tunpump.device, tunpump.pump;"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534); sys.exit(main(['--quick']))")
    if os.geteuid() != 0:
        r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--quick"], capture_output=True, text=True)
    else:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "needs root" in r.stderr


def test_unknown_scenario_is_refused():
    r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--scenario", "warp"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "invalid choice: 'warp'" in r.stderr


def test_iperf3_traffic(privileged):
    import shutil
    args = [sys.executable, "-m", "tunpump", "bench", "--quick", "--json", "--traffic", "iperf3",
            "--scenario", "veth", "--scenario", "relay-vnet"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if not shutil.which("iperf3"):  # .ci/run installs it; elsewhere it is optional
        assert r.returncode == 2 and "iperf3 is not installed" in r.stderr
        return
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [x["scenario"] for x in doc["results"]] == ["veth", "relay-vnet"]
    assert all(x["bytes"] > 0 for x in doc["results"])
    assert leftovers() == []


def test_small_packet_scenarios(privileged):
    doc = bench_json("veth-u64", "relay-u64", seconds=0.5, timeout=120)
    veth, relay = doc["results"]
    assert veth["traffic"] == relay["traffic"] == "udp64"
    assert veth["delivered_kpps"] > 0 and relay["delivered_kpps"] > 0
    assert 0 <= relay["loss"] < 1
    assert "veth" in relay["ratios"]
    assert leftovers() == []


def test_udp_generator_counts_exactly(ns):
    """The C generator sends exactly --count datagrams; the sink sees them."""
    n1, n2 = ns.make(), ns.make()
    ns.veth(n1, n2, "198.18.50.1/24", "198.18.50.2/24")
    r, w = os.pipe()
    sink = ns.python(n2, "-m", "tunpump.bench.traffic", "udp-sink", "--port", "5400", "--seconds", "10",
                     "--idle", "0.5", "--ready-fd", str(w), pass_fds=(w,))
    os.close(w)
    os.read(r, 1)
    os.close(r)
    src = ns.run(n1, sys.executable, "-m", "tunpump.bench.traffic", "udp-source", "--host", "198.18.50.2",
                 "--port", "5400", "--size", "100", "--count", "5000", "--seconds", "5")
    assert src.returncode == 0, src.stderr
    sent = json.loads(src.stdout)
    out, err = sink.communicate(timeout=15)
    got = json.loads(out)
    assert sent["packets"] == 5000 and sent["bytes"] == 500000
    assert sent["calls"] < 5000  # batched: sendmmsg
    assert got["packets"] <= 5000 and got["packets"] > 4000  # a veth may drop a few under a burst
    assert got["bytes"] == got["packets"] * 100


def test_ratios_pair_each_result_with_its_baselines():
    from tunpump.bench import _ratios

    def res(name, endpoint, forwarder, gbps, on_flow=False, traffic="tcp", kpps=None):
        return {"scenario": name, "endpoint": endpoint, "forwarder": forwarder, "gbps": gbps,
                "on_flow": on_flow, "traffic": traffic, "delivered_kpps": kpps, "ratios": {}}

    rs = [res("veth", "veth", "kernel", 20.0), res("py-relay", "relay", "python", 2.0),
          res("py-relay-vnet", "relay", "python", 10.0), res("pytun-relay", "relay", "pytun", 1.0),
          res("py-udp", "udp", "python", 1.0), res("relay-vnet", "relay", "tunpump", 12.0),
          res("relay-vnet-flow", "relay", "tunpump", 11.0, on_flow=True), res("udp-vnet", "udp", "tunpump", 8.0),
          res("veth-u64", "veth", "kernel", 0, traffic="udp64", kpps=200.0),
          res("relay-u64", "relay", "tunpump", 0, traffic="udp64", kpps=100.0),
          res("udp-cli", "udp", "cli", 6.0), res("wireguard-go", "udp", "wireguard-go", 0.5),
          res("udp-vnet-u64", "udp", "tunpump", 0, traffic="udp64", kpps=80.0),
          dict(res("udp-null", "udp", "tunpump", 7.6), transform="null"),
          dict(res("udp-aead", "udp", "tunpump", 5.0), transform="aes-256-gcm"),
          dict(res("udp-aead-u64", "udp", "tunpump", 0, traffic="udp64", kpps=72.0), transform="aes-256-gcm")]
    _ratios(rs)
    by = {r["scenario"]: r["ratios"] for r in rs}
    assert by["relay-vnet"] == {"veth": 0.6, "python": 6.0, "python_vnet": 1.2, "pytun": 12.0}
    assert by["relay-vnet-flow"]["without_on_flow"] == pytest.approx(11 / 12)
    assert by["udp-vnet"] == {"veth": 0.4, "python": 8.0}
    assert by["relay-u64"] == {"veth": 0.5}
    assert by["udp-cli"] == {"veth": 0.3, "python": 6.0, "library": 0.75}
    assert by["veth"] == {} and by["py-relay"] == {}
    # a transform's figures against the same tunnel without it, the AEAD's also against wireguard-go
    assert by["udp-null"] == {"veth": pytest.approx(0.38), "python": 7.6, "udp_vnet": pytest.approx(0.95)}
    assert by["udp-aead"] == {"veth": 0.25, "python": 5.0, "udp_vnet": 0.625, "wireguard_go": 10.0}
    assert by["udp-aead-u64"] == {"veth": 0.36, "udp_vnet_u64": 0.9}


def test_aead_scenarios_run(privileged):
    """udp-null and udp-aead(-u64): the transforms' tunnels carry the
    traffic, reported with their ratios to the plain tunnel of the same run."""
    doc = bench_json("udp-vnet", "udp-null", "udp-aead", "udp-vnet-u64", "udp-aead-u64", seconds=0.4, timeout=180)
    by = {x["scenario"]: x for x in doc["results"]}
    assert by["udp-null"]["transform"] == "null" and by["udp-aead"]["transform"] == "aes-256-gcm"
    for name in ("udp-null", "udp-aead"):
        assert by[name]["bytes"] > 0
        assert by[name]["ratios"]["udp_vnet"] == pytest.approx(by[name]["gbps"] / by["udp-vnet"]["gbps"])
    u64 = by["udp-aead-u64"]
    assert u64["delivered_kpps"] > 0
    assert u64["ratios"]["udp_vnet_u64"] == pytest.approx(u64["delivered_kpps"] / by["udp-vnet-u64"]["delivered_kpps"])
    assert leftovers() == []


def test_cli_scenario_runs_the_tunnel_command(privileged):
    """udp-cli: two `tunpump tunnel` processes on their defaults carry the
    traffic, and the figure comes with its ratio to the library's udp-vnet."""
    doc = bench_json("udp-vnet", "udp-cli", seconds=0.5, timeout=120)
    lib, cli = doc["results"]
    assert cli["forwarder"] == "cli" and cli["bytes"] > 0 and cli["cpu_percent"] > 0
    assert cli["ratios"]["library"] == pytest.approx(cli["gbps"] / lib["gbps"])
    assert leftovers() == []


def test_pytun_baseline(privileged):
    import importlib.util
    if importlib.util.find_spec("pytun") is None:
        r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--scenario", "pytun-relay"],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "python-pytun is not installed" in r.stderr
        return
    doc = bench_json("pytun-relay", "relay", seconds=0.5, timeout=120)
    base, relay = doc["results"]
    assert base["forwarder"] == "pytun" and base["gbps"] > 0
    assert "pytun" in relay["ratios"]
    assert leftovers() == []


def test_refuses_without_dev_net_tun(monkeypatch):
    from tunpump.bench import runner as bench
    monkeypatch.setattr(bench.os, "geteuid", lambda: 0)
    real = bench.os.path.exists
    monkeypatch.setattr(bench.os.path, "exists", lambda p: False if p == "/dev/net/tun" else real(p))
    with pytest.raises(bench.BenchError, match="/dev/net/tun is missing"):
        bench._check_environment()


def test_plot(privileged, tmp_path):
    import importlib.util
    out = tmp_path / "bench.png"
    r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--seconds", "0.3", "--scenario", "veth",
                        "--plot", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    if importlib.util.find_spec("matplotlib") is None:
        # refused before running anything
        assert r.returncode == 2 and "--plot needs matplotlib" in r.stderr
        assert "veth" not in r.stdout
        return
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
