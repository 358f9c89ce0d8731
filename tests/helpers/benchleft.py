"""What a `tunpump bench` run left behind: its namespaces (tpb<pid>x<n>)
and wireguard-go sockets (tpbw<pid % 10000>a/b) whose bench process has
ended. Those of a bench still running (another test session on the same
machine) are not leftovers."""
import os
import re
import subprocess

_NS = re.compile(r"tpb(\d+)x\d+$")
_WG = re.compile(r"tpbw(\d+)[ab]\.sock$")


def _live_pids():
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def namespaces_of(pid):
    """The namespaces bench process `pid` has made so far."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"tpb{pid}x")]


def leftovers():
    live = _live_pids()
    out = []
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        m = _NS.match(line.split()[0]) if line.strip() else None
        if m and int(m.group(1)) not in live:
            out.append(m.group(0))
    socks = os.listdir("/var/run/wireguard") if os.path.isdir("/var/run/wireguard") else []
    for s in socks:
        m = _WG.match(s)
        if m and not any(pid % 10000 == int(m.group(1)) for pid in live):
            out.append(s)
    return out
