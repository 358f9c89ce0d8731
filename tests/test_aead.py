"""The AEAD's wire format checked against an independent implementation:
what tunpump's C core seals (through the bench tools' test binding,
tunpump.bench._tools.Aead), the `cryptography` package opens by following
docs/design.md alone, and the other way round. Also the binding's argument
errors."""
import errno
import struct

import pytest

from helpers.nettest import CI
from tunpump.bench import _tools

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
except ImportError:                                    # pragma: no cover - a test extra
    AESGCM = ChaCha20Poly1305 = None

if not _tools.aead_available() or AESGCM is None:
    why = ("tunpump was built without OpenSSL 3 libcrypto (libssl-dev)" if not _tools.aead_available()
           else "the cryptography package is missing (pip install '.[test]')")
    if CI:
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)

CIPHERS = {"aes-256-gcm": AESGCM, "chacha20-poly1305": ChaCha20Poly1305}
KEY = bytes(range(32))
SIDE0_Q2, SIDE1_Q2 = 0x00000002, 0x00010002


def header(key_id, sender, counter):
    """docs/design.md: type/version 0xA1, key id, two zero bytes, sender, counter (big-endian)."""
    return struct.pack("!BBHIQ", 0xA1, key_id, 0, sender, counter)


def py_seal(cipher, key, key_id, sender, counter, plain):
    h = header(key_id, sender, counter)
    return h + CIPHERS[cipher](key).encrypt(h[4:], plain, h)


def py_open(cipher, key, datagram):
    h = datagram[:16]
    return CIPHERS[cipher](key).decrypt(h[4:], datagram[16:], h)


def pair(cipher, grace_ns=0):
    a = _tools.Aead(cipher, SIDE0_Q2, SIDE1_Q2, counter_start=1 << 60, grace_ns=grace_ns)
    b = _tools.Aead(cipher, SIDE1_Q2, SIDE0_Q2, counter_start=7, grace_ns=grace_ns)
    a.set_key(9, KEY)
    b.set_key(9, KEY)
    return a, b


@pytest.mark.parametrize("cipher", sorted(CIPHERS))
@pytest.mark.parametrize("size", [0, 1, 16, 64, 1400, 65535])
def test_c_seals_what_cryptography_opens(cipher, size):
    a, _ = pair(cipher)
    plain = bytes((i * 31 + 7) & 0xFF for i in range(size))
    first = a.next_counter
    d = a.seal(plain)
    assert len(d) == size + 32
    typ, kid, rsv, sender, counter = struct.unpack("!BBHIQ", d[:16])
    assert (typ, kid, rsv, sender, counter) == (0xA1, 9, 0, SIDE0_Q2, first)
    assert a.next_counter == first + 1
    assert py_open(cipher, KEY, d) == plain
    if size >= 16:
        assert plain[:16] not in d, "plaintext on the wire"


@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_cryptography_seals_what_c_opens(cipher):
    _, b = pair(cipher)
    for counter, plain in [(5, b"first"), (3, b"reordered, in the window"), (10**18, b"a jump ahead"),
                           (10**18 - 4000, b"still inside 4032")]:
        assert b.open(py_seal(cipher, KEY, 9, SIDE0_Q2, counter, plain)) == ("ok", plain)
    assert b.open(py_seal(cipher, KEY, 9, SIDE0_Q2, 5, b"first")) == ("too_old", None)
    assert b.open(py_seal(cipher, KEY, 9, SIDE0_Q2, 10**18, b"again")) == ("replay", None)
    assert b.open(py_seal(cipher, KEY, 8, SIDE0_Q2, 10**18 + 1, b"x")) == ("unknown_key", None)
    assert b.open(py_seal(cipher, KEY, 9, SIDE1_Q2, 10**18 + 1, b"x")) == ("bad_sender", None)
    assert b.open(py_seal(cipher, bytes(32), 9, SIDE0_Q2, 10**18 + 1, b"x")) == ("auth_failed", None)
    other = "aes-256-gcm" if cipher != "aes-256-gcm" else "chacha20-poly1305"
    assert b.open(py_seal(other, KEY, 9, SIDE0_Q2, 10**18 + 2, b"x")) == ("auth_failed", None)
    # the forgeries above did not spend their counters
    assert b.open(py_seal(cipher, KEY, 9, SIDE0_Q2, 10**18 + 1, b"x")) == ("ok", b"x")


@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_every_byte_is_authenticated(cipher):
    """Changing any one byte of a datagram gets it refused (never "ok")."""
    a, b = pair(cipher)
    d = bytearray(a.seal(b"p" * 40))
    for i in range(len(d)):
        forged = bytearray(d)
        forged[i] ^= 0x01
        reason, plain = b.open(bytes(forged))
        assert reason != "ok" and plain is None, i
    assert b.open(bytes(d)) == ("ok", b"p" * 40)


@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_rekey_grace_through_the_binding(cipher):
    a, b = pair(cipher, grace_ns=1_000_000_000)
    old = a.seal(b"old")
    a.set_key(10, bytes(range(32, 64)), now_ns=5_000_000_000)
    b.set_key(10, bytes(range(32, 64)), now_ns=5_000_000_000)
    new = a.seal(b"new")
    assert new[1] == 10 and py_open(cipher, bytes(range(32, 64)), new) == b"new"
    assert b.open(new) == ("ok", b"new")
    b.tick(5_500_000_000)
    assert b.open(old) == ("ok", b"old")
    b.tick(6_000_000_000)
    assert b.open(py_seal(cipher, KEY, 9, SIDE0_Q2, (1 << 60) + 50, b"late")) == ("unknown_key", None)


def test_drop_reasons_are_named():
    assert _tools.AEAD_DROP_REASONS == ("truncated", "garbage", "bad_sender", "unknown_key", "auth_failed",
                                        "replay", "too_old")
    _, b = pair("aes-256-gcm")
    assert b.open(b"") == ("truncated", None)
    assert b.open(b"\x45" + bytes(59)) == ("garbage", None)


def test_binding_argument_errors():
    with pytest.raises(ValueError, match=r"cipher='aes-128-gcm': expected one of aes-256-gcm, chacha20-poly1305"):
        _tools.Aead("aes-128-gcm", 0, 1)
    a = _tools.Aead("aes-256-gcm", 0, 1)
    with pytest.raises(OSError, match="tp_aead_seal") as e:
        a.seal(b"no key yet")
    assert e.value.errno == errno.ENOKEY
    with pytest.raises(ValueError, match="key: 16 bytes, expected 32"):
        a.set_key(1, bytes(16))
    with pytest.raises(ValueError, match="key_id=256: expected 0 to 255"):
        a.set_key(256, KEY)
    a.set_key(1, KEY)
    with pytest.raises(ValueError, match="key_id=1: already the current key"):
        a.set_key(1, KEY)
    with pytest.raises(ValueError, match="plain: 65536 bytes, at most 65535"):
        a.seal(bytes(65536))
    end = _tools.Aead("chacha20-poly1305", 0, 1, counter_start=2**64 - 2)
    end.set_key(1, KEY)
    end.seal(b"last one")
    with pytest.raises(OSError, match="tp_aead_seal: Value too large"):
        end.seal(b"counter used up")
