"""Seeing a running tunnel from another shell: `python -m tunpump status`
over the unix socket under /run/tunpump, and `--metrics` for Prometheus."""
import json
import os
import stat
import subprocess
import sys

import pytest

from helpers.nettest import unique
from helpers.cli import scrape, start, status, stop, underlay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_DIR = "/run/tunpump"


def pair(ns, *extra):
    n1, n2 = underlay(ns)
    name = unique("tpst")
    server = start(ns, n1, "tunnel", "--dev", name, "--udp", "--listen", "198.18.20.1:7300",
                   "--address", "198.18.21.1/30", *extra)
    client = start(ns, n2, "tunnel", "--dev", unique("tpsc"), "--udp", "--connect", "198.18.20.1:7300",
                   "--address", "198.18.21.2/30", "--no-status")
    r = ns.ping(n2, "198.18.21.1")
    assert r.returncode == 0, r.stdout + r.stderr
    return n1, n2, name, server, client


def test_status_json_and_text(ns):
    n1, n2, name, server, client = pair(ns)
    sock = os.path.join(RUN_DIR, name + ".sock")
    assert stat.S_IMODE(os.stat(RUN_DIR).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    r = status(name, "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["kind"] == "tunnel" and st["device"] == name and st["name"] == name
    assert st["total"]["to_endpoint"]["packets_out"] >= 3       # the ping replies
    assert st["total"]["to_device"]["packets_out"] >= 3
    assert len(st["queues"]) == 1 and st["queues"][0]["to_device"]["bytes_out"] > 0
    assert "no_peer" in st["drops"]
    assert st["offloads"][name] and "csum" in st["offloads"][name]
    assert st["uptime"] > 0
    assert [p for p in st["peers"] if p["up"] and p["address"].startswith("198.18.20.2:")], st["peers"]
    r = status(name)
    assert r.returncode == 0, r.stderr
    assert f"tunnel {name}:" in r.stdout and "drops:" in r.stdout and "peer 198.18.20.2:" in r.stdout
    assert "uptime" in r.stdout and "offloads" in r.stdout
    r = status()   # every running one: ours among them
    assert r.returncode == 0 and f"tunnel {name}:" in r.stdout
    stop(client)
    out, err = stop(server)
    assert not os.path.exists(sock)            # removed on exit
    assert "peer 198.18.20.2:" in err and " up" in err    # logged
    r = status(name)
    assert r.returncode == 2 and "no running tunnel or relay" in r.stderr


def test_stale_socket_is_replaced(ns):
    n1, n2 = underlay(ns)
    name = unique("tpst")
    p = start(ns, n1, "tunnel", "--dev", name, "--udp", "--listen", "198.18.20.1:7300")
    p.kill()    # SIGKILL: the socket stays behind
    p.wait(10)
    sock = os.path.join(RUN_DIR, name + ".sock")
    assert os.path.exists(sock)
    r = status(name)
    assert r.returncode == 2 and "nobody answers" in r.stderr
    p = start(ns, n1, "tunnel", "--dev", name, "--udp", "--listen", "198.18.20.1:7300")
    assert status(name, "--json").returncode == 0
    _, err = stop(p)
    assert "replaced the stale status socket" in err


def test_stats_line_names_drop_reasons(ns):
    n1, n2 = underlay(ns)
    # a server no client has reached: the pings into its device have no peer
    p = start(ns, n1, "tunnel", "--dev", unique("tpst"), "--udp", "--listen", "198.18.20.1:7300",
              "--address", "198.18.21.1/30", "--stats", "0.3", "--no-status")
    ns.run(n1, "ping", "-c", "3", "-i", "0.2", "-W", "1", "198.18.21.2")
    out, err = stop(p)
    assert any("| drops " in ln and "(no_peer " in ln for ln in out.splitlines()), out
    last = out.strip().splitlines()[-1]
    assert last.startswith("total: ") and "bytes" in last and "no_peer" in last, last


def test_metrics(ns):
    pytest.importorskip("prometheus_client")
    n1, n2, name, server, client = pair(ns, "--metrics", "198.18.20.1:9309")
    text = scrape(ns, n1, "http://198.18.20.1:9309/metrics")
    line = [ln for ln in text.splitlines() if ln.startswith("tunpump_packets_total{")
            and 'direction="to_device"' in ln and 'queue="0"' in ln]
    assert line and float(line[0].split()[-1]) >= 3, text
    assert "# TYPE tunpump_packets_total counter" in text
    assert any(ln.startswith("tunpump_drops_total{") and 'reason="no_peer"' in ln for ln in text.splitlines())
    assert any(ln.startswith("tunpump_bytes_total{") for ln in text.splitlines())
    assert f'tunpump_offload{{device="{name}"' in text or 'offload="csum"' in text
    assert "tunpump_uptime_seconds" in text
    stop(client)
    stop(server)


def test_metrics_without_prometheus_client(ns, tmp_path):
    (tmp_path / "prometheus_client.py").write_text("raise ImportError('not installed')\n")
    n1, n2 = underlay(ns)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}:{ROOT}")
    r = subprocess.run(["ip", "netns", "exec", n1, sys.executable, "-m", "tunpump", "tunnel", "--dev",
                        unique("tpst"), "--udp", "--listen", "198.18.20.1:7300", "--metrics",
                        "198.18.20.1:9309", "--no-status"], capture_output=True, text=True, timeout=30,
                       env=env, cwd=ROOT)
    assert r.returncode == 2
    assert "pip install 'tunpump[metrics]'" in r.stderr, r.stderr


def test_relay_status(ns):
    n1, n2 = ns.make(), ns.make()
    a, b = unique("tpra"), unique("tprb")
    p = start(ns, n1, "relay", a, b, "--netns-a", n1, "--netns-b", n2)
    r = status(a, "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["kind"] == "relay" and st["device"] == a
    assert set(st["offloads"]) == {a, b} and "csum" in st["offloads"][b]
    stop(p)


def test_tcp_reconnect_is_logged(ns):
    n1, n2 = underlay(ns)
    srv_args = ("tunnel", "--dev", unique("tpst"), "--tcp", "--listen", "198.18.20.1:7400",
                "--address", "198.18.21.1/30", "--no-status")
    server = start(ns, n1, *srv_args)
    client = start(ns, n2, "tunnel", "--dev", unique("tpsc"), "--tcp", "--connect", "198.18.20.1:7400",
                   "--address", "198.18.21.2/30", "--no-status")
    assert ns.ping(n2, "198.18.21.1").returncode == 0
    stop(server)
    server = start(ns, n1, *srv_args)
    r = ns.ping(n2, "198.18.21.1", count=3, timeout=15)   # the client's backoff is at most 5 s
    assert r.returncode == 0, r.stdout
    _, err = stop(client)
    stop(server)
    assert "queue 0: peer 198.18.20.1:7400 up\n" in err, err
    assert "queue 0: peer 198.18.20.1:7400 down (" in err, err
    assert "queue 0: peer 198.18.20.1:7400 up again (reconnected)" in err, err
