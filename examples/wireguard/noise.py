"""WireGuard's handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, as the
whitepaper (section 5.4) and wireguard-go's noise-protocol.go define it.
Primitives from libraries: X25519 and ChaCha20-Poly1305 from `cryptography`,
BLAKE2s and HMAC from hashlib/hmac. Messages (indices little-endian):
  1 initiation  type|sender|ephemeral|static(48)|timestamp(28)|mac1|mac2 = 148 bytes
  2 response    type|sender|receiver|ephemeral|empty(16)|mac1|mac2      =  92 bytes
  3 cookie      type|receiver|nonce(24)|cookie(32)                      =  64 bytes
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.exceptions import InvalidTag

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
INITIATION_LEN, RESPONSE_LEN, COOKIE_LEN = 148, 92, 64
_INIT = struct.Struct("<I I 32s 48s 28s")          # before mac1: 116 bytes
_RESP = struct.Struct("<I I I 32s 16s")            # before mac1: 60 bytes
_COOKIE = struct.Struct("<I I 24s 32s")
CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1, LABEL_COOKIE = b"mac1----", b"cookie--"
TAI64_BASE = 0x400000000000000A          # 2**62 + 10 (TAI - UTC), as wireguard-go
_WHITEN = 0x1000000 - 1                  # wireguard-go blurs the nanoseconds (~16 ms)


class HandshakeError(ValueError):
    """A handshake message that is malformed or does not authenticate."""


def HASH(*parts: bytes) -> bytes:
    h = hashlib.blake2s()
    for p in parts:
        h.update(p)
    return h.digest()


def MAC(key: bytes, data: bytes) -> bytes:
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


def KDF(n: int, key: bytes, data: bytes) -> list:
    """HKDF over HMAC-BLAKE2s: n 32-byte outputs."""
    t0 = hmac.new(key, data, hashlib.blake2s).digest()
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = hmac.new(t0, prev + bytes([i]), hashlib.blake2s).digest()
        out.append(prev)
    return out


def aead_encrypt(key: bytes, plain: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(bytes(12), plain, ad)   # handshake keys are used once: nonce 0


def aead_decrypt(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(bytes(12), sealed, ad)
    except InvalidTag:
        raise HandshakeError("does not authenticate") from None


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """XChaCha20's subkey (the cookie reply): ChaCha20's rounds without the
    final addition, i.e. one ChaCha20 block from `cryptography` (its 16-byte
    nonce is state words 12..15) minus the input words 0..3 and 12..15."""
    block = struct.unpack("<16I", Cipher(algorithms.ChaCha20(key, nonce16), None).encryptor().update(bytes(64)))
    init = struct.unpack("<4I", b"expand 32-byte k") + struct.unpack("<4I", nonce16)
    words = [(b - i) & 0xFFFFFFFF for b, i in zip(block[:4] + block[12:], init)]
    return struct.pack("<8I", *words)


def xaead_decrypt(key: bytes, nonce24: bytes, sealed: bytes, ad: bytes) -> bytes:
    """XChaCha20-Poly1305 open (the cookie reply)."""
    try:
        return ChaCha20Poly1305(hchacha20(key, nonce24[:16])).decrypt(b"\0" * 4 + nonce24[16:], sealed, ad)
    except InvalidTag:
        raise HandshakeError("cookie reply does not authenticate") from None


def public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:   # a low-order point: all-zero shared secret
        raise HandshakeError("bad public key") from None


def tai64n(now_ns: Optional[int] = None) -> bytes:
    s, ns = divmod(time.time_ns() if now_ns is None else now_ns, 10**9)
    return struct.pack(">QI", TAI64_BASE + s, ns & ~_WHITEN)


_C0 = HASH(CONSTRUCTION)
_H0 = HASH(_C0, IDENTIFIER)


@dataclass
class Keys:
    """A finished handshake: a session's indices and transport keys."""
    local_index: int
    remote_index: int
    send: bytes
    recv: bytes
    initiator: bool


@dataclass
class Initiated:
    """The initiator's state between sending an initiation and the response."""
    sender: int
    ck: bytes
    h: bytes
    eph: X25519PrivateKey
    peer_public: bytes
    psk: bytes
    mac1: bytes          # of the initiation: a cookie reply is bound to it


@dataclass
class Consumed:
    """The responder's state after a valid initiation."""
    peer_public: bytes
    sender: int          # the initiator's index
    timestamp: bytes
    ck: bytes
    h: bytes
    eph_public: bytes


class Static:
    """This side's static key pair and the MAC keys derived from it."""

    def __init__(self, private: bytes) -> None:
        self.private_bytes = private
        self.private = X25519PrivateKey.from_private_bytes(private)
        self.public = public_key(private)
        self.mac1_key = HASH(LABEL_MAC1, self.public)      # to check mac1 on what we receive

    def _macs(self, body: bytes, peer_public: bytes, cookie: Optional[bytes]) -> Tuple[bytes, bytes]:
        mac1 = MAC(HASH(LABEL_MAC1, peer_public), body)
        mac2 = MAC(cookie, body + mac1) if cookie else bytes(16)
        return mac1, mac2

    def check_mac1(self, msg: bytes) -> None:
        if not hmac.compare_digest(MAC(self.mac1_key, msg[:-32]), msg[-32:-16]):
            raise HandshakeError("bad mac1")

    def initiation(self, peer_public: bytes, psk: bytes, sender: int, cookie: Optional[bytes] = None,
                   now_ns: Optional[int] = None) -> Tuple[bytes, Initiated]:
        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        h = HASH(_H0, peer_public)
        ck = KDF(1, _C0, eph_pub)[0]
        h = HASH(h, eph_pub)
        ck, k = KDF(2, ck, _dh(eph, peer_public))
        static = aead_encrypt(k, self.public, h)
        h = HASH(h, static)
        ck, k = KDF(2, ck, _dh(self.private, peer_public))
        stamp = aead_encrypt(k, tai64n(now_ns), h)
        h = HASH(h, stamp)
        body = _INIT.pack(INITIATION, sender, eph_pub, static, stamp)
        mac1, mac2 = self._macs(body, peer_public, cookie)
        return body + mac1 + mac2, Initiated(sender, ck, h, eph, peer_public, psk, mac1)

    def consume_initiation(self, msg: bytes, known: Callable[[bytes], bool]) -> Consumed:
        """Decrypt an initiation (mac1 checked first). `known(public)` says
        whether the initiator's static key is a configured peer."""
        if len(msg) != INITIATION_LEN or msg[:4] != b"\x01\0\0\0":
            raise HandshakeError("not an initiation")
        self.check_mac1(msg)
        _, sender, eph_pub, static, stamp = _INIT.unpack(msg[:116])
        h = HASH(_H0, self.public)
        ck = KDF(1, _C0, eph_pub)[0]
        h = HASH(h, eph_pub)
        ck, k = KDF(2, ck, _dh(self.private, eph_pub))
        peer_public = aead_decrypt(k, static, h)
        if not known(peer_public):
            raise HandshakeError("initiation from an unknown public key")
        h = HASH(h, static)
        ck, k = KDF(2, ck, _dh(self.private, peer_public))
        timestamp = aead_decrypt(k, stamp, h)
        h = HASH(h, stamp)
        return Consumed(peer_public, sender, timestamp, ck, h, eph_pub)

    def response(self, c: Consumed, psk: bytes, sender: int, cookie: Optional[bytes] = None) -> Tuple[bytes, Keys]:
        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        ck = KDF(1, c.ck, eph_pub)[0]
        h = HASH(c.h, eph_pub)
        ck = KDF(1, ck, _dh(eph, c.eph_public))[0]
        ck = KDF(1, ck, _dh(eph, c.peer_public))[0]
        ck, tau, k = KDF(3, ck, psk)
        h = HASH(h, tau)
        empty = aead_encrypt(k, b"", h)
        body = _RESP.pack(RESPONSE, sender, c.sender, eph_pub, empty)
        mac1, mac2 = self._macs(body, c.peer_public, cookie)
        recv, send = KDF(2, ck, b"")
        return body + mac1 + mac2, Keys(sender, c.sender, send, recv, initiator=False)

    def consume_response(self, msg: bytes, st: Initiated) -> Keys:
        if len(msg) != RESPONSE_LEN or msg[:4] != b"\x02\0\0\0":
            raise HandshakeError("not a response")
        self.check_mac1(msg)
        _, sender, receiver, eph_pub, empty = _RESP.unpack(msg[:60])
        if receiver != st.sender:
            raise HandshakeError("response to another initiation")
        ck = KDF(1, st.ck, eph_pub)[0]
        h = HASH(st.h, eph_pub)
        ck = KDF(1, ck, _dh(st.eph, eph_pub))[0]
        ck = KDF(1, ck, _dh(self.private, eph_pub))[0]
        ck, tau, k = KDF(3, ck, st.psk)
        h = HASH(h, tau)
        aead_decrypt(k, empty, h)
        send, recv = KDF(2, ck, b"")
        return Keys(st.sender, sender, send, recv, initiator=True)


def receiver_index(msg: bytes) -> int:
    """The receiver index of a response or cookie reply (the sender index we chose)."""
    return struct.unpack_from("<I", msg, 8 if msg[0] == RESPONSE else 4)[0]


def consume_cookie_reply(msg: bytes, peer_public: bytes, mac1: bytes) -> bytes:
    """The cookie from a cookie reply to our message whose mac1 was `mac1`."""
    if len(msg) != COOKIE_LEN or msg[:4] != b"\x03\0\0\0":
        raise HandshakeError("not a cookie reply")
    _, _, nonce, sealed = _COOKIE.unpack(msg)
    return xaead_decrypt(HASH(LABEL_COOKIE, peer_public), nonce, sealed, mac1)


def new_index(taken) -> int:
    while True:
        i = int.from_bytes(os.urandom(4), "little")
        if i not in taken:
            return i
