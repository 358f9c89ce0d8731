"""`python -m tunpump dev add|del|show`, like ip tuntap / tunctl."""
import json
import subprocess
import sys

from helpers.nettest import ip_link_json


def cli(ns_name, *args):
    return subprocess.run(["ip", "netns", "exec", ns_name, sys.executable, "-m", "tunpump", "dev", *args],
                          capture_output=True, text=True, timeout=30)


def test_add_show_del(ns):
    n = ns.make()
    r = cli(n, "add", "tpcli%d", "--mode", "tap", "--multi-queue", "--vnet-hdr", "--user", "65534",
            "--group", "65533")
    assert r.returncode == 0, r.stderr
    name = r.stdout.strip()
    assert name == "tpcli0"
    data = ip_link_json(n, name)["linkinfo"]["info_data"]
    assert data["type"] == "tap" and data["multi_queue"] and data["vnet_hdr"] and data["persist"]
    assert data["pi"] is False

    r = cli(n, "show", "--json")
    assert r.returncode == 0, r.stderr
    devs = json.loads(r.stdout)
    assert [d["name"] for d in devs] == [name]
    d = devs[0]
    assert (d["mode"], d["owner"], d["group"], d["vnet_hdr"], d["multi_queue"]) == ("tap", 65534, 65533, True, True)

    r = cli(n, "show", name)
    assert r.returncode == 0 and r.stdout.startswith(f"{name}: tap vnet_hdr multi_queue persist"), r.stdout

    r = cli(n, "del", name)
    assert r.returncode == 0, r.stderr
    r = cli(n, "show", "--json")
    assert json.loads(r.stdout) == []


def test_add_pi_tun(ns):
    n = ns.make()
    r = cli(n, "add", "tppi", "--pi")
    assert r.returncode == 0, r.stderr
    data = ip_link_json(n, "tppi")["linkinfo"]["info_data"]
    assert data["type"] == "tun" and data["pi"] is True and data["persist"] is True
    assert cli(n, "del", "tppi").returncode == 0


def test_errors_are_clear(ns):
    n = ns.make()
    r = cli(n, "add", "x" * 16)
    assert r.returncode == 2 and "at most 15 bytes" in r.stderr
    r = cli(n, "del", "nosuch")
    assert r.returncode == 2 and "no interface named 'nosuch'" in r.stderr
    r = cli(n, "show", "nosuch")
    assert r.returncode == 1 and "no TUN/TAP device named 'nosuch'" in r.stderr
    assert cli(n, "add", "tpdup").returncode == 0
    r = cli(n, "add", "tpdup")
    assert r.returncode == 2 and "device 'tpdup' already exists" in r.stderr, r.stderr
    assert "exclusive" not in r.stderr   # API words have no place on the command line
    assert cli(n, "del", "tpdup").returncode == 0


def test_add_with_unknown_user_or_group_leaves_nothing(ns):
    n = ns.make()
    for opt in ("--user", "--group"):
        r = cli(n, "add", "tpnouser", opt, "tpnosuchname")
        assert r.returncode == 2 and "no such" in r.stderr and "tpnosuchname" in r.stderr, r.stderr
        assert json.loads(cli(n, "show", "--json").stdout) == []
        # and a second try says what is wrong again, not that the device exists
        r = cli(n, "add", "tpnouser", opt, "tpnosuchname")
        assert "already exists" not in r.stderr and "no such" in r.stderr, r.stderr


def test_show_offloads_counters_and_detached_queues(ns):
    n = ns.make()
    assert cli(n, "add", "tpoff", "--vnet-hdr").returncode == 0
    assert cli(n, "add", "tpplain").returncode == 0
    devs = {d["name"]: d for d in json.loads(cli(n, "show", "--json").stdout)}
    # persistent and detached: no queue attached is 0, not null
    assert devs["tpoff"]["queues"] == 0 and devs["tpplain"]["queues"] == 0
    assert {"csum", "tso4", "tso6"} <= set(devs["tpoff"]["offloads"])
    assert devs["tpplain"]["offloads"] == []
    assert set(devs["tpoff"]["counters"]) >= {"rx_packets", "tx_packets", "rx_bytes", "tx_dropped"}
    # packets the kernel sends into a device nobody reads are counted by it
    for cmd in (("addr", "add", "198.18.23.1/30", "dev", "tpplain"), ("link", "set", "tpplain", "up")):
        assert ns.run(n, "ip", *cmd).returncode == 0
    ns.run(n, "ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.23.2")
    r = cli(n, "show", "tpplain")
    assert r.returncode == 0, r.stderr
    assert "queues 0 " in r.stdout and "offloads none" in r.stdout, r.stdout
    tx = json.loads(cli(n, "show", "tpplain", "--json").stdout)[0]["counters"]
    assert tx["tx_packets"] + tx["tx_dropped"] >= 2, tx
    r = cli(n, "show", "tpoff")
    assert "offloads csum tso4 tso6" in r.stdout, r.stdout
    assert cli(n, "del", "tpoff").returncode == 0 and cli(n, "del", "tpplain").returncode == 0
