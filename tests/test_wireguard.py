"""examples/wireguard's control plane, without devices: wg-quick config
parsing, the Noise_IKpsk2 handshake (two of ours against each other, and
known values), cookie replies, the timers' decisions, and the wgdata
transform's config checks. The interop tests are test_wireguard_interop.py."""
import base64
import hashlib
import logging
import os
import random
import struct
import sys

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from helpers import csan, wg

sys.path.insert(0, wg.EXAMPLE)
import noise  # noqa: E402
import timers as tm  # noqa: E402
import wgconfig  # noqa: E402

A = base64.b64encode(bytes(range(32))).decode()
B = base64.b64encode(bytes(range(1, 33))).decode()

CONF = f"""# a comment
[Interface]
PrivateKey = {A}
ListenPort = 51820
Address = 198.18.31.1/24, fd00:31::1/64
Address = 198.18.32.1/24
MTU = 1380
DNS = 198.18.0.53   # wg-quick's: ignored with a warning

[Peer]
PublicKey = {B}
PresharedKey = {A}
Endpoint = [fd00:30::2]:51821
AllowedIPs = 198.18.31.2/32, fd00:31::/64
allowedips = 198.18.40.0/22
PersistentKeepalive = 25

[peer]
publickey = {A}
Endpoint = 198.18.30.3:9
"""


# ---- config ---------------------------------------------------------------------

def test_config_parses_the_wg_quick_fields(caplog):
    with caplog.at_level(logging.WARNING, "wgtun"):
        c = wgconfig.parse(CONF, "wg0.conf")
    assert c.private_key == bytes(range(32)) and c.listen_port == 51820 and c.mtu == 1380
    assert [str(a) for a in c.addresses] == ["198.18.31.1/24", "fd00:31::1/64", "198.18.32.1/24"]
    p, q = c.peers
    assert p.public_key == bytes(range(1, 33)) and p.preshared_key == bytes(range(32))
    assert p.endpoint == ("fd00:30::2", 51821) and p.persistent_keepalive == 25
    assert [str(n) for n in p.allowed_ips] == ["198.18.31.2/32", "fd00:31::/64", "198.18.40.0/22"]
    assert q.preshared_key == bytes(32) and q.allowed_ips == [] and q.endpoint == ("198.18.30.3", 9)
    assert "wg0.conf:8: DNS is a wg-quick setting" in caplog.text


@pytest.mark.parametrize("text, message", [
    ("[Interface]\nPrivateKey = abc\n", "c:2: PrivateKey = 'abc': expected a 32-byte key in base64"),
    (f"[Interface]\nPrivateKey = {A}\nListenPort = 70000\n", "c:3: ListenPort = '70000': expected an integer"),
    (f"[Interface]\nPrivateKey = {A}\nColour = blue\n", "c:3: unknown key Colour in Interface"),
    (f"[Interface]\nPrivateKey = {A}\n[Peer]\nEndpoint = 198.18.0.1:1\n", "c:3: [Peer] without a PublicKey"),
    (f"[Interface]\nPrivateKey = {A}\n[Peer]\nPublicKey = {B}\nEndpoint = nohost\n",
     "c:5: Endpoint = 'nohost': expected host:port"),
    (f"[Interface]\nPrivateKey = {A}\n[Peer]\nPublicKey = {B}\nAllowedIPs = 198.18.0.0/99\n", "c:5: AllowedIPs"),
    (f"[Interface]\nPrivateKey = {A}\n[Peer]\nPublicKey = {B}\n[Peer]\nPublicKey = {B}\n",
     "c:5: PublicKey: a second [Peer] with the same key"),
    ("PrivateKey = x\n", "c:1: PrivateKey outside a section"),
    ("[Interface]\nListenPort = 1\n", "c: needs an [Interface] section with a PrivateKey"),
    (f"[Interface]\nPrivateKey = {A}\n[Tunnel]\n", "c:3: unknown section [Tunnel]"),
    (f"[Interface]\nPrivateKey = {A}\nMTU\n", "c:3: expected `Key = value`"),
])
def test_config_errors_name_file_line_and_key(text, message):
    with pytest.raises(wgconfig.ConfigError) as e:
        wgconfig.parse(text, "c")
    assert message in str(e.value)


# ---- handshake ------------------------------------------------------------------

def test_initial_chain_values_match_other_implementations():
    # HASH(CONSTRUCTION) and HASH(that || IDENTIFIER) as boringtun hard-codes them
    assert list(noise._C0) == [96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235,
                               66, 6, 248, 114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54]
    assert list(noise._H0) == [34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108,
                               102, 34, 147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243]


def test_hchacha20_test_vector():
    # draft-irtf-cfrg-xchacha-03, section 2.2.1
    out = noise.hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927"))
    assert out.hex() == "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"


def test_kdf_is_hkdf_over_hmac_blake2s():
    import hmac
    t0 = hmac.new(b"k" * 32, b"data", hashlib.blake2s).digest()
    t1 = hmac.new(t0, b"\x01", hashlib.blake2s).digest()
    assert noise.KDF(2, b"k" * 32, b"data") == [t1, hmac.new(t0, t1 + b"\x02", hashlib.blake2s).digest()]


def _pair(psk=bytes(32)):
    i, r = noise.Static(os.urandom(32)), noise.Static(os.urandom(32))
    return i, r, psk


@pytest.mark.parametrize("psk", [bytes(32), os.urandom(32)], ids=["no-psk", "psk"])
def test_two_handshakes_agree_on_keys(psk):
    i, r, _ = _pair()
    msg, st = i.initiation(r.public, psk, sender=7)
    assert len(msg) == noise.INITIATION_LEN and msg[:4] == b"\x01\0\0\0" and msg[-16:] == bytes(16)
    c = r.consume_initiation(msg, {i.public}.__contains__)
    assert c.peer_public == i.public and c.sender == 7 and len(c.timestamp) == 12
    resp, rk = r.response(c, psk, sender=9)
    assert len(resp) == noise.RESPONSE_LEN and noise.receiver_index(resp) == 7
    ik = i.consume_response(resp, st)
    assert (ik.local_index, ik.remote_index, rk.local_index, rk.remote_index) == (7, 9, 9, 7)
    assert ik.send == rk.recv and ik.recv == rk.send and ik.send != ik.recv
    assert ik.initiator and not rk.initiator
    # the keys carry a transport message either way
    sealed = ChaCha20Poly1305(ik.send).encrypt(bytes(4) + (0).to_bytes(8, "little"), b"x" * 16, b"")
    assert ChaCha20Poly1305(rk.recv).decrypt(bytes(4) + bytes(8), sealed, b"") == b"x" * 16


def test_wrong_psk_fails_at_the_initiator():
    i, r, _ = _pair()
    msg, st = i.initiation(r.public, os.urandom(32), sender=1)
    resp, _ = r.response(r.consume_initiation(msg, lambda k: True), os.urandom(32), sender=2)
    with pytest.raises(noise.HandshakeError, match="does not authenticate"):
        i.consume_response(resp, st)


def test_wrong_responder_key_fails_mac1_and_unknown_initiator_is_refused():
    i, r, _ = _pair()
    other = noise.Static(os.urandom(32))
    msg, _ = i.initiation(other.public, bytes(32), sender=1)
    with pytest.raises(noise.HandshakeError, match="bad mac1"):
        r.consume_initiation(msg, lambda k: True)
    msg, _ = i.initiation(r.public, bytes(32), sender=1)
    with pytest.raises(noise.HandshakeError, match="unknown public key"):
        r.consume_initiation(msg, lambda k: False)


@pytest.mark.parametrize("offset", [8, 40, 90, 110])
def test_tampered_initiation_is_refused(offset):
    i, r, _ = _pair()
    msg, _ = i.initiation(r.public, bytes(32), sender=1)
    bad = bytearray(msg)
    bad[offset] ^= 1
    # fix mac1 so the tampering is found by the AEAD, not only the MAC
    bad[116:132] = noise.MAC(noise.HASH(noise.LABEL_MAC1, r.public), bytes(bad[:116]))
    with pytest.raises(noise.HandshakeError):
        r.consume_initiation(bytes(bad), lambda k: True)


def test_timestamps_increase_and_are_tai64n():
    a, b = noise.tai64n(10**18), noise.tai64n(10**18 + 10**9)
    assert a < b and struct.unpack(">Q", a[:8])[0] == 0x400000000000000A + 10**9


def test_cookie_reply_is_read_and_mac2_uses_it():
    i, r, _ = _pair()
    msg, st = i.initiation(r.public, bytes(32), sender=5)
    cookie, nonce = os.urandom(16), os.urandom(24)
    key = noise.HASH(noise.LABEL_COOKIE, r.public)      # the responder's cookie key
    sealed = ChaCha20Poly1305(noise.hchacha20(key, nonce[:16])).encrypt(bytes(4) + nonce[16:], cookie, st.mac1)
    reply = struct.pack("<II24s32s", 3, 5, nonce, sealed)
    assert noise.receiver_index(reply) == 5
    assert noise.consume_cookie_reply(reply, r.public, st.mac1) == cookie
    with pytest.raises(noise.HandshakeError):
        noise.consume_cookie_reply(reply, r.public, bytes(16))   # bound to our mac1
    msg2, _ = i.initiation(r.public, bytes(32), sender=6, cookie=cookie)
    assert msg2[-16:] == noise.MAC(cookie, msg2[:-16])
    r.consume_initiation(msg2, lambda k: True)   # mac2 does not disturb the responder


# ---- timers ----------------------------------------------------------------------

T = tm.Timers(rekey_after_time=10, reject_after_time=20, rekey_attempt_time=9, rekey_timeout=1,
              keepalive_timeout=2, rekey_after_messages=1000)


def _t(**kw):
    return tm.PeerTimers(T, rng=random.Random(1), **kw)


def test_initiation_retries_with_jitter_then_gives_up():
    p = _t()
    p.initiation_sent(0.0)
    assert not p.may_initiate(0.5) and 1.0 <= p.retry_at <= 1.0 + T.rekey_jitter
    assert p.due(0.9, tm.Counters()) == []
    now, retries = 0.0, 0
    while True:
        now = p.retry_at
        acts = p.due(now, tm.Counters())
        if acts == [tm.GIVE_UP]:
            break
        assert acts == [tm.INITIATE]
        p.initiation_sent(now)
        retries += 1
    assert now >= T.rekey_attempt_time and 6 <= retries <= 9 and not p.handshaking


def test_rekey_after_time_only_when_sending_as_initiator():
    p = _t()
    p.session_started(0.0, initiator=True)
    assert p.due(11, tm.Counters(tx_data=0)) == []                 # nothing sent: no rekey
    assert p.due(11.1, tm.Counters(tx_data=5)) == [tm.INITIATE]
    q = _t()
    q.session_started(0.0, initiator=False)
    assert q.due(11, tm.Counters(tx_data=5)) == []                 # the responder waits


def test_rekey_after_messages_and_receiving_near_reject():
    p = _t()
    p.session_started(0.0, initiator=False)
    assert p.due(1, tm.Counters(send_counter=1000)) == []          # checked when sending, as wireguard-go
    assert p.due(1.1, tm.Counters(send_counter=1001, tx_data=1)) == [tm.INITIATE]
    q = _t()
    q.session_started(0.0, initiator=True)
    assert q.due(16.5, tm.Counters(rx_data=3)) == []               # 20 - 2 - 1 = 17 not reached
    assert q.due(17.5, tm.Counters(rx_data=4)) == [tm.INITIATE]
    assert q.due(17.6, tm.Counters(rx_data=5)) == []               # once


def test_keepalive_and_new_handshake_on_silence():
    p = _t()
    p.session_started(0.0, initiator=True)
    c = tm.Counters(rx_unanswered=1.0, tx_data=0)
    assert p.due(2.5, c) == [] and p.due(3.0, c) == [tm.KEEPALIVE] and p.due(3.5, c) == []
    c = tm.Counters(tx_unanswered=4.0)
    assert p.due(6.9, c) == [] and p.due(7.0, c) == [tm.INITIATE] and p.due(8, c) == []


def test_persistent_keepalive_and_expiry():
    p = _t(persistent_keepalive=5)
    p.session_started(0.0, initiator=True)
    assert p.due(4, tm.Counters(last_tx=0.5)) == []
    assert p.due(6, tm.Counters(last_tx=0.5)) == [tm.KEEPALIVE]
    assert p.due(7, tm.Counters(last_tx=0.5)) == []                # not again right away
    assert tm.EXPIRE in p.due(60, tm.Counters(last_tx=59.9, last_rx=59.9))
    assert not p.session_usable(60)


def test_timer_values_are_checked():
    with pytest.raises(ValueError, match="rekey_after_time"):
        tm.Timers(rekey_after_time=200)
    with pytest.raises(ValueError, match="keepalive_timeout"):
        tm.Timers(keepalive_timeout=0)


# ---- the C transform's config -----------------------------------------------------

@pytest.fixture(scope="module")
def wgdata(tmp_path_factory):
    d = wg.build(str(tmp_path_factory.mktemp("wgdata")))
    sys.path.insert(0, d)
    try:
        import wgdata
        yield wgdata
    finally:
        sys.path.remove(d)


def _blob(mtu=1420, npeers=1, entries=((0, 4, 32, bytes(16)),)):
    return struct.pack("<4sIIIQQ", b"WGT1", mtu, npeers, len(entries), 10**9, 2**60) + b"".join(
        struct.pack("<BBBx16s", *e) for e in entries)


def test_wgdata_refuses_bad_configs(wgdata):
    cap = wgdata.Transform(_blob())
    per_peer, drops = wgdata.counters(cap)
    assert len(per_peer) == 1 and all(v == 0 for v in per_peer[0]) and len(drops) == len(wgdata.DROP_REASONS)
    assert "src_filter" in wgdata.DROP_REASONS and "replay" in wgdata.DROP_REASONS
    for bad in (b"nope", _blob(mtu=100), _blob(npeers=0), _blob(npeers=17), _blob(entries=((1, 4, 32, bytes(16)),)),
                _blob(entries=((0, 5, 8, bytes(16)),)), _blob(entries=((0, 4, 33, bytes(16)),)), _blob()[:-1]):
        with pytest.raises(ValueError, match="config"):
            wgdata.Transform(bad)
    with pytest.raises(TypeError):
        wgdata.counters(object())


# ---- the C data path alone: fuzz target and a scripted run -------------------------

def _gcc_build(tmp_path, sources, name):
    import tunpump
    return csan.build(csan.sanitizer_gcc(), tmp_path / name,
                      ["-I", tunpump.get_include(), "-I", os.path.join(wg.ROOT, "tests", "fuzz"), "-I", wg.EXAMPLE,
                       *sources, "-lcrypto"])


def _seeds(directory, n=400):
    rng = random.Random(11)
    os.makedirs(directory)
    for i in range(n):
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(0, 1200))
        else:
            data = b""
            for _ in range(rng.randrange(1, 30)):
                op, k = rng.randrange(256), rng.randrange(0, 64)
                data += bytes([op, k]) + rng.randbytes(k * (6 if op & 3 == 1 else 1))
        with open(os.path.join(directory, f"seed{i}"), "wb") as f:
            f.write(data)


def test_wgdata_fuzz_target_replays_clean_under_asan_ubsan(tmp_path):
    """examples/wireguard/fuzz_wgdata.c: random datagrams, sealed packets
    (some with a flipped byte), control messages and replays through the
    data path; its invariants abort on a break."""
    exe = _gcc_build(tmp_path, [os.path.join(wg.EXAMPLE, "fuzz_wgdata.c"),
                                os.path.join(wg.ROOT, "tests", "fuzz", "driver.c")], "fuzz_wgdata")
    _seeds(str(tmp_path / "corpus"))
    assert "replayed 400 inputs" in csan.run([exe, str(tmp_path / "corpus")])


CHECK = r"""
#include "fuzz_wgdata.c"
#include <stdio.h>
int main(void)
{
    static const uint8_t in[] = {
        1, 1, 1, 2, 3, 4, 5, 6,        /* IPv4 to peer 0: sealed by A, opened by B (promotes B's next) */
        5, 1, 9, 9, 9, 9, 9, 9,        /* IPv6 likewise */
        3, 0,                          /* the last one again: a replay */
        0x11, 1, 2, 0, 0, 0, 0, 0,     /* sealed, then byte 2 (reserved) flipped: bad type */
        0x41, 1, 1, 2, 3, 4, 5, 6,     /* from a source outside B's AllowedIPs for A */
        0x21, 0,                       /* a keepalive */
        0x09, 1, 1, 1, 1, 1, 1, 1,     /* to peer 1, which has no session: to Python */
        0, 3, 1, 0, 0,                 /* a 3-byte datagram: short */
    };
    LLVMFuzzerTestOneInput(in, sizeof(in));
    for (int i = 0; i < R_N; i++)
        printf("%s=%lu\n", reason_names[i], (unsigned long)bb.sh.drops[i]);
    printf("rx_data=%lu\nkeepalives_rx=%lu\nstaged=%lu\n", (unsigned long)bb.sh.peer[0][C_RX_DATA],
           (unsigned long)bb.sh.peer[0][C_KEEPALIVES_RX], (unsigned long)ba.sh.peer[1][C_STAGED]);
    return 0;
}
"""


def test_wgdata_counts_each_drop_reason(tmp_path):
    src = tmp_path / "check.c"
    src.write_text(CHECK)
    exe = _gcc_build(tmp_path, [str(src)], "check")
    got = dict(line.split("=") for line in csan.run([exe]).split())
    assert {k: int(v) for k, v in got.items()} == {
        "short": 1, "bad_type": 1, "bad_length": 0, "no_session": 0, "expired": 0, "replay": 1, "auth": 0,
        "keepalive": 1, "bad_inner": 0, "src_filter": 1, "no_route": 0, "too_big": 0, "rx_data": 2, "keepalives_rx": 1,
        "staged": 1}


def test_mypy_passes_on_the_example(tmp_path):
    import subprocess
    r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-incremental",
                        "--cache-dir", str(tmp_path),
                        *[f for f in os.listdir(wg.EXAMPLE) if f.endswith(".py")]],
                       capture_output=True, text=True, cwd=wg.EXAMPLE, timeout=300)
    assert r.returncode == 0 and "Success" in r.stdout, r.stdout + r.stderr


def test_cli_reports_config_errors_and_missing_tunnels(wgdata, tmp_path):
    import subprocess
    wgtun = os.path.join(os.path.dirname(wgdata.__file__), "wgtun.py")
    for f in ("noise.py", "timers.py", "wgconfig.py", "wgtun.py"):   # the build dir has the example's files
        assert os.path.exists(os.path.join(os.path.dirname(wgdata.__file__), f))
    conf = tmp_path / "bad.conf"
    conf.write_text(f"[Interface]\nPrivateKey = {A}\nListenPort = x\n")
    env = dict(os.environ, PYTHONPATH=wg.ROOT)

    def run(*args):
        return subprocess.run([sys.executable, wgtun, *args], capture_output=True, text=True, timeout=60, env=env)
    r = run(str(conf), "--dev", "wgx0")
    assert r.returncode == 1 and f"wgtun: {conf}:3: ListenPort = 'x': expected an integer" in r.stderr
    r = run(str(tmp_path / "missing.conf"), "--dev", "wgx0")
    assert r.returncode == 1 and "No such file" in r.stderr
    r = run(str(conf), "--dev", "wgx0", "--timer", "nonsense=1")
    assert r.returncode == 2 and "nonsense: not a timer" in r.stderr
    for args in (("show", "wgx-none"), ("--show", "--dev", "wgx-none")):
        r = run(*args)
        assert r.returncode == 1 and "no running wgtun for that device" in r.stderr
