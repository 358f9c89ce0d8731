"""`python -m tunpump tunnel --key-file FILE`: the encrypted tunnel as two
processes in two namespaces over a veth, offloads on. Ping and a hashed
transfer both ways, IPv4 and IPv6 inside; the underlay, captured in the
test's own namespace with an AF_PACKET socket, carries no plaintext."""
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from helpers.cli import scrape, start, status, stop, tun_info
from helpers.nettest import unique
from tunpump import netns
from tunpump.bench import _tools

pytestmark = pytest.mark.skipif(not _tools.aead_available(), reason="built without OpenSSL 3 libcrypto")

# 256 MiB each way, as issue 10 asks (about 20 s on a quiet 2-core machine).
TRANSFER = int(os.environ.get("TUNPUMP_TEST_AEAD_BYTES", 256 << 20))
PATTERN = "c0ffee15deadbeefc0ffee15deadbeef"   # ping -p: 16 bytes repeated in every echo
ETH_P_ALL = 0x0003


def _key_file(tmp_path, text):
    path = tmp_path / "tunnel.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    return str(path)


class Capture:
    """Frames seen on `ifname` inside namespace `ns` (AF_PACKET), kept while running."""

    def __init__(self, ns, ifname):
        with netns.entered(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.2)
        self.frames = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set() and len(self.frames) < 200000:
            try:
                self.frames.append(self.sock.recv(65535)[:256])   # headers and the start of the payload
            except socket.timeout:
                continue

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def udp_payloads(self, port):
        """Payloads of the UDP datagrams (IPv4 or IPv6) to or from `port`."""
        out = []
        for f in self.frames:
            ethertype = struct.unpack("!H", f[12:14])[0]
            if ethertype == 0x0800 and f[23] == 17:
                l4 = 14 + (f[14] & 0xF) * 4
            elif ethertype == 0x86DD and f[20] == 17:
                l4 = 14 + 40
            else:
                continue
            sport, dport = struct.unpack("!HH", f[l4:l4 + 4])
            if port in (sport, dport):
                out.append(f[l4 + 8:])
        return out


@pytest.mark.parametrize("cipher", ["aes-256-gcm"])
def test_cli_tunnel_with_key_file(ns, tmp_path, cipher):
    n1, n2 = ns.make(), ns.make()
    va, _ = ns.veth(n1, n2, "198.18.20.1/24", "198.18.20.2/24")
    key = _key_file(tmp_path, os.urandom(32).hex())
    common = ["--udp", "--key-file", key, "--cipher", cipher, "--stats", "1"]
    server = start(ns, n1, "tunnel", "--dev", "tpk%d", "--listen", "198.18.20.1:7100",
                   "--remote", "198.18.20.2:7100", "--address", "198.18.21.1/30",
                   "--address", "fd00:21::1/64", *common)
    client = start(ns, n2, "tunnel", "--dev", "tpk%d", "--connect", "198.18.20.1:7100",
                   "--local", "198.18.20.2:7100", "--address", "198.18.21.2/30",
                   "--address", "fd00:21::2/64", *common)
    # the default MTU leaves room for the AEAD: 1500 - 20 (IPv4) - 8 (UDP) - 32
    assert tun_info(n1, "tpk0")[0] == tun_info(n2, "tpk0")[0] == 1440
    cap = Capture(n1, va)
    try:
        for src, dst in ((n1, "198.18.21.2"), (n2, "198.18.21.1"), (n1, "fd00:21::2"), (n2, "fd00:21::1")):
            r = ns.run(src, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", PATTERN, dst, timeout=20)
            assert r.returncode == 0, r.stdout + r.stderr
        # the sealed echoes on the wire: our header, and none of the echo's bytes
        payloads = cap.udp_payloads(7100)
        assert len(payloads) >= 12, len(payloads)
        assert all(p[0] == 0xA1 for p in payloads)
        pattern = bytes.fromhex(PATTERN)
        inner = [socket.inet_pton(socket.AF_INET, a) for a in ("198.18.21.1", "198.18.21.2")] + \
            [socket.inet_pton(socket.AF_INET6, a) for a in ("fd00:21::1", "fd00:21::2")]
        for p in payloads:
            assert pattern[:8] not in p and not any(a in p for a in inner), p.hex()
        # the capture does see plaintext where there is some: the same ping, unencrypted, on the veth
        r = ns.run(n1, "ping", "-c", "1", "-W", "2", "-p", PATTERN, "198.18.20.2", timeout=10)
        assert r.returncode == 0
        assert wait_for_pattern(cap, pattern[:8])
        # hashed transfers both ways, one over each inner family (the transfer helper checks the hash)
        for src, dst, addr in ((n1, n2, "198.18.21.2"), (n2, n1, "fd00:21::1")):
            res = ns.transfer(src, dst, addr, TRANSFER, timeout=300)
            assert res["received"]["bytes"] == TRANSFER
            assert res["received"]["sha256"] == res["sent"]["sha256"]
        payloads = cap.udp_payloads(7100)
        assert len(payloads) > 1000 and all(p[0] == 0xA1 for p in payloads)
    finally:
        cap.close()
    for p in (client, server):
        out, err = stop(p)
        total = [line for line in out.splitlines() if line.startswith("total:")]
        assert total and "aead_" not in total[0], out   # nothing refused
        assert f"encrypted with {cipher}" in err and "no forward secrecy" in err


def wait_for_pattern(cap, pattern):
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if any(pattern in f for f in list(cap.frames)):
            return True
        time.sleep(0.05)
    return False


def _tunnel(*args):
    # fails on its arguments before any device or socket is made
    return subprocess.run([sys.executable, "-m", "tunpump", "tunnel", "--dev", "tpk0", "--udp",
                           "--connect", "198.18.20.1:7100", *args], capture_output=True, text=True, timeout=60)


def test_key_file_checked_before_anything_runs(tmp_path):
    key = _key_file(tmp_path, "00" * 32)
    os.chmod(key, 0o644)
    r = _tunnel("--key-file", key)
    assert r.returncode == 2 and "has mode 0644" in r.stderr and "chmod 600" in r.stderr, r.stderr
    os.chmod(key, 0o600)
    with open(key, "w") as f:
        f.write("abcd\n")
    r = _tunnel("--key-file", key)
    assert r.returncode == 2 and "4 hex digits, expected 64" in r.stderr, r.stderr
    r = _tunnel("--cipher", "aes-256-gcm")
    assert r.returncode == 2 and "--cipher aes-256-gcm: only with --key-file" in r.stderr, r.stderr
    r = _tunnel("--key-file", key, "--cipher", "rot13")
    assert r.returncode == 2 and "invalid choice: 'rot13'" in r.stderr, r.stderr


def test_wrong_key_shown_by_status_and_metrics(ns, tmp_path):
    """A wrong key on one end: nothing is delivered, and the reason is in
    `tunpump status` and the Prometheus metrics as aead_auth_failed."""
    pytest.importorskip("prometheus_client")
    n1, n2 = ns.make(), ns.make()
    ns.veth(n1, n2, "198.18.20.1/24", "198.18.20.2/24")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    name = unique("tpka")
    server = start(ns, n1, "tunnel", "--dev", name, "--udp", "--listen", "198.18.20.1:7100", "--remote",
                   "198.18.20.2:7100", "--address", "198.18.21.1/30", "--key-file",
                   _key_file(tmp_path / "a", "11" * 32), "--metrics", "198.18.20.1:9319")
    client = start(ns, n2, "tunnel", "--dev", "tpk%d", "--udp", "--connect", "198.18.20.1:7100", "--local",
                   "198.18.20.2:7100", "--address", "198.18.21.2/30", "--key-file",
                   _key_file(tmp_path / "b", "22" * 32), "--no-status")
    r = ns.ping(n2, "198.18.21.1", timeout=2)
    assert r.returncode != 0
    r = status(name, "--json")
    assert r.returncode == 0, r.stderr
    drops = json.loads(r.stdout)["total"]["to_device"]["drops"]
    assert drops["aead_auth_failed"] >= 1 and drops["aead_replay"] == 0, drops
    assert "aead_auth_failed" in status(name).stdout
    text = scrape(ns, n1, "http://198.18.20.1:9319/metrics")
    assert any(ln.startswith("tunpump_drops_total{") and 'reason="aead_auth_failed"' in ln and
               'direction="to_device"' in ln and float(ln.split()[-1]) >= 1 for ln in text.splitlines()), text
    stop(client)
    stop(server)
