"""`python -m tunpump bench --soak SECONDS` (issue 12): full load on one
scenario, RSS over time, and every packet accounted for once the pumps
stopped. CI runs only this short soak; long ones are run by hand."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def leftovers(pid):
    """The namespaces that bench process made (tpb<pid>x<n>) still there."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [ln.split()[0] for ln in ns.splitlines() if ln.startswith(f"tpb{pid}x")]


def run_bench(*argv, timeout=120):
    p = subprocess.Popen([sys.executable, "-m", "tunpump", "bench", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), p.pid


def test_soak_two_seconds_accounts_for_every_packet(privileged):
    r, pid = run_bench("--soak", "2", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["schema"] == "tunpump-soak/1" and doc["scenario"] == "udp-vnet"
    assert doc["packets"] > 0 and doc["gbps"] > 0
    assert doc["unaccounted_total"] == 0 and len(doc["unaccounted"]) == 2, doc["unaccounted"]
    times = [t for t, _ in doc["rss_kib"]]
    assert len(times) >= 3 and times == sorted(times) and all(kib > 0 for _, kib in doc["rss_kib"])
    assert doc["rss_growth_kib"] == doc["rss_kib"][-1][1] - doc["rss_kib"][0][1]
    assert leftovers(pid) == []


def test_soak_text_report_and_refusals(privileged):
    r, pid = run_bench("--soak", "1", "--scenario", "relay")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "soak relay: 1 s" in r.stdout and "RSS" in r.stdout and "every packet accounted for" in r.stdout
    for argv, msg in ((["--soak", "2", "--scenario", "veth"], "one tunpump scenario"),
                      (["--soak", "0.5"], "expected 1 to 604800")):
        r = subprocess.run([sys.executable, "-m", "tunpump", "bench", *argv], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert leftovers(pid) == []
