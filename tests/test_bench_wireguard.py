"""The bench's wireguard-go baseline (tunpump/bench/wireguard.py): two
wireguard-go ends in the bench's namespaces carry its TCP traffic; nothing is
left behind (namespaces, processes, control sockets); a missing tool is a
clear refusal when named and a skip otherwise."""
import argparse
import json
import os
import shutil
import subprocess
import sys

import jsonschema
import pytest

from helpers.benchleft import leftovers
from helpers.nettest import CI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = json.load(open(os.path.join(ROOT, "tunpump", "bench", "schema.json")))
HAVE_WG = bool(shutil.which("wireguard-go") and shutil.which("wg"))


def _bench_wireguard_go():
    """wireguard-go processes serving a bench device (tpbw*), whoever started them."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[1:] if "wireguard-go -f tpbw" in line}


def test_wireguard_go_baseline(privileged):
    if not HAVE_WG:
        if CI:
            pytest.fail("wireguard-go / wg missing: .ci/run installs wireguard-go and wireguard-tools")
        r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--scenario", "wireguard-go"],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2 and "not installed (apt-get install" in r.stderr
        pytest.skip("wireguard-go and wg are not installed here")
    before = _bench_wireguard_go()
    r = subprocess.run([sys.executable, "-m", "tunpump", "bench", "--json", "--seconds", "0.5",
                        "--scenario", "wireguard-go"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    (res,) = doc["results"]
    assert res["scenario"] == "wireguard-go" and res["forwarder"] == "wireguard-go"
    assert res["bytes"] > 0 and res["gbps"] > 0
    assert res["cpu_percent"] > 0        # the two wireguard-go processes did the work
    assert leftovers() == []
    assert _bench_wireguard_go() <= before, "a wireguard-go the bench started is still running"


def _args(**kw):
    base = dict(scenario=None, quick=False)
    base.update(kw)
    return argparse.Namespace(**base)


def test_missing_wireguard_go_is_refused_when_named_and_skipped_otherwise(monkeypatch, capsys):
    from tunpump.bench import runner, wireguard
    monkeypatch.setattr(wireguard.shutil, "which", lambda t: None if t == "wireguard-go" else f"/usr/bin/{t}")
    assert "wireguard-go not installed" in wireguard.unavailable()
    with pytest.raises(runner.BenchError, match=r"wireguard-go: wireguard-go not installed \(apt-get install "
                                                r"--no-install-recommends wireguard-go wireguard-tools\)"):
        runner._choose(_args(scenario=["wireguard-go"]))
    names = [sc.name for sc in runner._choose(_args())]
    assert "wireguard-go" not in names and "veth" in names
    assert "skipping wireguard-go: wireguard-go not installed" in capsys.readouterr().err
    monkeypatch.setattr(wireguard.shutil, "which", lambda t: f"/usr/bin/{t}")
    assert wireguard.unavailable() is None
    assert "wireguard-go" in [sc.name for sc in runner._choose(_args())]
    assert "wireguard-go" not in [sc.name for sc in runner._choose(_args(quick=True))]


def test_encrypted_scenarios_get_a_ratio_to_wireguard_go():
    from tunpump.bench import _ratios

    def res(name, endpoint, forwarder, gbps, transform=None):
        return {"scenario": name, "endpoint": endpoint, "forwarder": forwarder, "gbps": gbps, "on_flow": False,
                "traffic": "tcp", "delivered_kpps": None, "ratios": {}, "transform": transform}

    rs = [res("veth", "veth", "kernel", 10.0), res("wireguard-go", "udp", "wireguard-go", 0.5),
          res("udp-aead", "udp", "tunpump", 5.0, "aead"), res("udp-vnet", "udp", "tunpump", 8.0)]
    _ratios(rs)
    assert rs[2]["ratios"]["wireguard_go"] == 10.0
    assert "wireguard_go" not in rs[3]["ratios"] and rs[1]["ratios"] == {}
