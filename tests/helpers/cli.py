"""Running `python -m tunpump tunnel/relay` as processes in namespaces."""
import os
import signal
import subprocess
import sys

import pytest

from .nettest import ip_link_json

NOBODY = 65534
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(ns, n, *args, **kw):
    p = ns.python(n, "-m", "tunpump", *args, **kw)
    line = p.stdout.readline()
    if "running" not in line:
        p.kill()
        out, err = p.communicate(timeout=10)
        pytest.fail(f"did not start: {line}{out}{err}")
    return p


def stop(p, sig=signal.SIGTERM):
    p.send_signal(sig)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 0, err
    return out, err


def underlay(ns, mtu=1500, v6=False):
    n1, n2 = ns.make(), ns.make()
    if v6:
        ns.veth(n1, n2, "fd00:18::1/64", "fd00:18::2/64", mtu=mtu)
    else:
        ns.veth(n1, n2, "198.18.20.1/24", "198.18.20.2/24", mtu=mtu)
    return n1, n2


def tun_info(n, dev):
    info = ip_link_json(n, dev)
    return info["mtu"], info["linkinfo"]["info_data"]


def status(*args):
    """`python -m tunpump status ARGS` (from the root namespace: the socket is a file)."""
    return subprocess.run([sys.executable, "-m", "tunpump", "status", *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)


def scrape(ns, n, url):
    """The text at url, fetched from inside namespace n (a --metrics endpoint)."""
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    r = ns.run(n, sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    return r.stdout
