"""`tunnel` and `relay` defaults, run as processes in namespaces: offloads on
unless --no-offloads, the tunnel MTU derived from the route to the peer, a
warning for a larger --mtu, and a non-root owner running `tunnel` on a
persistent device root configured."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from helpers.cli import NOBODY, ROOT, start, stop, tun_info, underlay
from helpers.nettest import unique

@pytest.mark.parametrize("kind,v6,expected", [
    ("--udp", False, 1400 - 20 - 8),
    ("--tcp", False, 1400 - 20 - 20 - 2),
    ("--udp", True, 1400 - 40 - 8),
])
def test_default_mtu_from_the_route_and_offloads_on(ns, kind, v6, expected):
    n1, n2 = underlay(ns, mtu=1400, v6=v6)
    server = "[fd00:18::1]:7100" if v6 else "198.18.20.1:7100"
    dev = unique("tpm")
    if kind == "--tcp":   # the client connects: a listener must be there
        srv = start(ns, n1, "tunnel", "--dev", unique("tpm"), kind, "--listen", server, "--no-status")
    p = start(ns, n2, "tunnel", "--dev", dev, kind, "--connect", server, "--no-status")
    mtu, data = tun_info(n2, dev)
    assert mtu == expected
    assert data.get("vnet_hdr") is True
    _, err = stop(p)
    assert f"MTU {expected} (underlay MTU 1400" in err, err
    assert "offloads csum" in err, err
    if kind == "--tcp":
        stop(srv)


def test_route_mtu_metric_wins(ns):
    n1, n2 = underlay(ns)
    # the peer sits behind a route whose own MTU is smaller than the link's
    ns.run(n1, "ip", "addr", "add", "198.18.30.1/24", "dev", "lo")
    r = ns.run(n2, "ip", "route", "add", "198.18.30.0/24", "via", "198.18.20.1", "mtu", "1300")
    assert r.returncode == 0, r.stderr
    dev = unique("tpm")
    p = start(ns, n2, "tunnel", "--dev", dev, "--udp", "--connect", "198.18.30.1:7100", "--no-status")
    assert tun_info(n2, dev)[0] == 1300 - 28
    stop(p)


def test_larger_mtu_warns_once(ns):
    n1, n2 = underlay(ns, mtu=1400)
    dev = unique("tpm")
    p = start(ns, n2, "tunnel", "--dev", dev, "--udp", "--connect", "198.18.20.1:7100", "--mtu", "1500",
              "--no-status")
    assert tun_info(n2, dev)[0] == 1500
    _, err = stop(p)
    assert err.count("warning: --mtu 1500 is larger than 1372") == 1, err
    assert "fragmented" in err


def test_smaller_mtu_does_not_warn(ns):
    n1, n2 = underlay(ns, mtu=1400)
    dev = unique("tpm")
    p = start(ns, n2, "tunnel", "--dev", dev, "--udp", "--connect", "198.18.20.1:7100", "--mtu", "1300",
              "--no-status")
    assert tun_info(n2, dev)[0] == 1300
    _, err = stop(p)
    assert "warning" not in err, err


def test_no_offloads(ns):
    n1, n2 = underlay(ns)
    dev = unique("tpm")
    p = start(ns, n2, "tunnel", "--dev", dev, "--udp", "--connect", "198.18.20.1:7100", "--no-offloads",
              "--no-status")
    assert tun_info(n2, dev)[1].get("vnet_hdr") is False
    _, err = stop(p)
    assert "offloads off" in err


def test_relay_offloads_by_default(ns):
    n1, n2 = ns.make(), ns.make()
    a, b = unique("tpra"), unique("tprb")
    p = start(ns, n1, "relay", a, b, "--netns-a", n1, "--netns-b", n2, "--no-status")
    assert tun_info(n1, a)[1].get("vnet_hdr") is True
    assert tun_info(n2, b)[1].get("vnet_hdr") is True
    stop(p)


def test_quiet_hides_info_lines(ns):
    n1, n2 = underlay(ns)
    p = start(ns, n2, "tunnel", "--dev", unique("tpm"), "--udp", "--connect", "198.18.20.1:7100", "-q",
              "--no-status")
    _, err = stop(p)
    assert err == "", err


# ---- non-root ------------------------------------------------------------------

AS_NOBODY = textwrap.dedent("""
    import os, runpy, sys
    # /root (where this Python lives) is closed to nobody: load what the CLI
    # needs while still root, then drop every privilege.
    import tunpump.cli, tunpump.device, tunpump.pump, tunpump.monitor, tunpump.status, tunpump.mtu
    tunpump.device.list_devices()
    tunpump.mtu.tunnel_mtu("udp", ("0.0.0.0", 0), ("198.18.20.1", 1))
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    sys.argv = ["tunpump"] + sys.argv[1:]
    sys.exit(tunpump.cli.main())
""")


def test_nonroot_owner_runs_tunnel_on_configured_device(ns, tun_node):
    n1, n2 = underlay(ns)
    # a non-root process's status socket lives in $XDG_RUNTIME_DIR/tunpump
    run_dir = pathlib.Path(os.path.dirname(tun_node)) / "xdg"
    run_dir.mkdir()
    os.chown(str(run_dir), NOBODY, NOBODY)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir))
    dev = unique("tpnr")
    r = ns.run(n2, sys.executable, "-m", "tunpump", "dev", "add", dev, "--vnet-hdr", "--user", str(NOBODY))
    assert r.returncode == 0, r.stderr
    ns.on_cleanup(lambda: ns.run(n2, sys.executable, "-m", "tunpump", "dev", "del", dev))
    for cmd in (("link", "set", dev, "mtu", "1472"), ("addr", "add", "198.18.21.2/30", "dev", dev),
                ("link", "set", dev, "up")):
        assert ns.run(n2, "ip", *cmd).returncode == 0
    server = start(ns, n1, "tunnel", "--dev", unique("tps"), "--udp", "--listen", "198.18.20.1:7200",
                   "--address", "198.18.21.1/30", "--no-status")
    client = ns.python(n2, "-c", AS_NOBODY, "tunnel", "--dev", dev, "--udp", "--connect", "198.18.20.1:7200",
                       "--address", "198.18.21.2/30", "--tun-path", tun_node, env=env)
    line = client.stdout.readline()
    assert "running" in line, line + (client.stderr.read() if client.poll() is not None else "")
    r = ns.ping(n1, "198.18.21.2")
    assert r.returncode == 0, r.stdout + r.stderr
    sock = run_dir / "tunpump" / f"{dev}.sock"
    assert sock.exists() and os.stat(str(sock)).st_uid == NOBODY
    r = subprocess.run([sys.executable, "-m", "tunpump", "status", dev, "--json"], capture_output=True,
                       text=True, timeout=30, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total"]["to_device"]["packets_out"] >= 3
    _, err = stop(client)
    assert "configuration already in place" in err, err
    assert "offloads csum" in err, err
    stop(server)


def test_nonroot_without_configuration_says_which_privilege(ns, tun_node):
    n1, n2 = underlay(ns)
    dev = unique("tpnr")
    r = ns.run(n2, sys.executable, "-m", "tunpump", "dev", "add", dev, "--user", str(NOBODY))
    assert r.returncode == 0, r.stderr
    ns.on_cleanup(lambda: ns.run(n2, sys.executable, "-m", "tunpump", "dev", "del", dev))
    r = ns.run(n2, sys.executable, "-c", AS_NOBODY, "tunnel", "--dev", dev, "--udp", "--connect",
               "198.18.20.1:7200", "--address", "198.18.21.2/30", "--tun-path", tun_node, "--no-status")
    assert r.returncode == 2
    assert "CAP_NET_ADMIN" in r.stderr, r.stderr


def test_no_route_to_the_peer_is_a_warning(ns):
    n1, n2 = underlay(ns)
    dev = unique("tpm")
    p = start(ns, n2, "tunnel", "--dev", dev, "--udp", "--connect", "198.19.99.1:7100", "--no-status")
    assert tun_info(n2, dev)[0] == 1500 - 28
    _, err = stop(p)
    assert "warning: no route to 198.19.99.1" in err and "assumed: no route to the peer" in err, err
