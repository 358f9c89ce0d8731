"""`python -m tunpump tunnel` and `relay` as processes: traffic flows, a stats
line is printed, and SIGTERM / SIGINT end them cleanly."""
import signal
import sys

import pytest

from helpers.nettest import wait_until


def start(ns, n, *args):
    p = ns.python(n, "-m", "tunpump", *args)
    line = p.stdout.readline()
    assert "running" in line, line + p.stderr.read() if p.poll() is not None else line
    return p


@pytest.mark.parametrize("kind", ["--udp", "--tcp"])
def test_tunnel_cli(ns, kind):
    n1, n2 = ns.make(), ns.make()
    ns.veth(n1, n2, "198.18.20.1/24", "198.18.20.2/24")
    server = start(ns, n1, "tunnel", "--dev", "tpc%d", kind, "--listen", "198.18.20.1:7000",
                   "--address", "198.18.21.1/30", "--mtu", "1400", "--stats", "0.2")
    client = start(ns, n2, "tunnel", "--dev", "tpc%d", kind, "--connect", "198.18.20.1:7000",
                   "--address", "198.18.21.2/30", "--mtu", "1400", "--stats", "0.2")
    r = ns.ping(n2, "198.18.21.1")
    assert r.returncode == 0, r.stdout + r.stderr
    stats_line = server.stdout.readline()
    assert "kpps" in stats_line and "Gbit/s" in stats_line and "drops" in stats_line
    for p, sig in ((client, signal.SIGTERM), (server, signal.SIGINT)):
        p.send_signal(sig)  # ends ip netns exec's child: the signal is passed on
        out, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        assert "total:" in out


def test_relay_cli(ns):
    n1, n2 = ns.make(), ns.make()
    p = start(ns, n1, "relay", "tpra", "tprb", "--vnet-hdr", "--netns-a", n1, "--netns-b", n2)
    assert wait_until(lambda: ns.run(n2, "ip", "link", "show", "tprb").returncode == 0)
    ns.run(n1, "ip", "link", "set", "tpra", "up")
    ns.run(n1, "ip", "addr", "add", "198.18.22.1", "peer", "198.18.22.2", "dev", "tpra")
    ns.run(n2, "ip", "link", "set", "tprb", "up")
    ns.run(n2, "ip", "addr", "add", "198.18.22.2", "peer", "198.18.22.1", "dev", "tprb")
    r = ns.ping(n1, "198.18.22.2")
    assert r.returncode == 0, r.stdout + r.stderr
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=10)
    assert p.returncode == 0


def test_tunnel_cli_bad_argument(ns):
    n1 = ns.make()
    r = ns.run(n1, sys.executable, "-m", "tunpump", "tunnel", "--dev", "tpx", "--udp", "--connect", "nohost.invalid:1")
    assert r.returncode == 2 and "not an IP address" in r.stderr
