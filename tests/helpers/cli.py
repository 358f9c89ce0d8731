"""Running `python -m tunpump tunnel/relay` as processes in namespaces."""
import os
import signal

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
