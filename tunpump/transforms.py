"""Transforms: C code run on every packet by the pump's workers (see
docs/transforms.md and tunpump/include/tunpump.h).

`Pump(..., transform=...)` takes either a PyCapsule named
"tunpump.transform.v2" (from any C or Cython module built against
`tunpump.get_include()`), or an object with a `__tunpump_transform__()`
method returning one (the built-ins below, and the way a third-party
transform class should present itself)."""
from __future__ import annotations

import ipaddress
import math
import weakref
from typing import TYPE_CHECKING, Any, Optional, Tuple

from . import _core

if TYPE_CHECKING:   # pragma: no cover
    from .pump import Pump

CAPSULE_NAME = _core.TRANSFORM_CAPSULE
ABI_VERSION = _core.TRANSFORM_ABI
CONTROL_MAX = _core.TRANSFORM_CONTROL_MAX   # the largest Pump.transform_control message


class Null:
    """Passes every packet unchanged (with TUNPUMP_NEEDS_SEGMENTS, as an
    encrypting transform would): measures what the hook itself costs."""

    def __tunpump_transform__(self) -> Any:
        return _core.null_transform()

    def __repr__(self) -> str:
        return "tunpump.transforms.Null()"


class AEADUnavailable(RuntimeError):
    """This tunpump was built without OpenSSL 3 libcrypto: the message says
    what to install before rebuilding."""


class AEAD:
    """The built-in pre-shared-key AEAD: every packet is sealed with
    ChaCha20-Poly1305 or AES-256-GCM (OpenSSL's libcrypto) on the way out
    and opened on the way in; anything that does not authenticate is dropped
    and counted under its reason (`aead_auth_failed`, `aead_replay`, ...).

    It gives confidentiality and integrity between two ends that share
    `key` (32 bytes), with an anti-replay window of 4,032 packets. It has
    no handshake and no forward secrecy: whoever learns the key can read
    recorded traffic, past and future. Rekey with `rekey()`.

    - `cipher`: "chacha20-poly1305" (default) or "aes-256-gcm".
    - `key_id` (0..255) names the key on the wire (each datagram carries
      it), so a rekey can overlap the old key.
    - `grace` (seconds, default 10): after a rekey the old key is still
      accepted this long, and a new key is sent with at the latest this long
      after `rekey()` (earlier once the peer is seen using it); rekey both
      ends within `grace` of each other and nothing is lost.
    - `side` (0 or 1) keeps the two ends' nonces apart. None (default):
      decided from the pump's endpoint: a TCP server is 1 and its client 0;
      for UDP the end with the lower port is 0 (equal ports: the lower
      address, which must then be given, not a wildcard). Where that cannot
      tell the ends apart (a UDP server that learns its peer, equal ports
      with a wildcard local address, a device endpoint) the pump refuses to
      start until `side` is given: 0 on one end, 1 on the other. Two ends on
      the same side would use the same nonces under one key; what reaches
      an end from its own side is dropped as `aead_same_side`.

    Each datagram grows by `OVERHEAD` (32) bytes: a 16-byte header (type,
    key id, sender, counter) and the 16-byte tag; give the device an MTU
    that much smaller (`tunpump tunnel --key-file` does).
    """

    OVERHEAD = _core.AEAD_OVERHEAD
    KEY_LEN = _core.AEAD_KEY_LEN
    CIPHERS = tuple(_core.AEAD_CIPHERS)
    DEFAULT_GRACE = 10.0

    def __init__(self, key: bytes, cipher: str = "chacha20-poly1305", *, key_id: int = 0,
                 grace: float = DEFAULT_GRACE, side: Optional[int] = None) -> None:
        if not _core.AEAD_AVAILABLE:
            raise AEADUnavailable(f"the AEAD transform needs OpenSSL 3 libcrypto, and "
                                  f"{_core.aead_unavailable_reason()}")
        self.key = _check_key(key, "key")
        if cipher not in _core.AEAD_CIPHERS:
            raise ValueError(f"cipher={cipher!r}: expected one of {', '.join(map(repr, _core.AEAD_CIPHERS))}")
        self.cipher = cipher
        self.key_id = _check_key_id(key_id)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or math.isnan(grace) or \
                not 0 <= grace <= 86400:
            raise ValueError(f"grace={grace!r}: expected seconds from 0 to 86400 (the old key's overlap "
                             f"after a rekey)")
        self.grace = float(grace)
        if side is not None and (isinstance(side, bool) or side not in (0, 1)):
            raise ValueError(f"side={side!r}: expected 0 or 1 (the other end takes the other), or None to "
                             f"decide from the endpoint")
        self.side = side
        self._key_ids: "weakref.WeakKeyDictionary[Any, int]" = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"tunpump.transforms.AEAD(cipher={self.cipher!r}, key_id={self.key_id}, side={self.side})"

    def __tunpump_transform__(self) -> Any:
        if self.side is None:
            raise ValueError("AEAD(side=None): the side is decided from the pump's endpoint; hand the AEAD "
                             "itself to Pump(transform=...), or give side=0 on one end and side=1 on the other")
        return self._capsule(self.side)

    def _capsule(self, side: int) -> Any:
        return _core.aead_transform(_core.AEAD_CIPHERS[self.cipher], side, int(self.grace * 1e9),
                                    self.key_id, self.key)

    def __tunpump_bind__(self, endpoint: Any) -> Any:
        """The capsule for a pump on `endpoint` (the side decided from it)."""
        _check_two_ends(endpoint)
        return self._capsule(self.side if self.side is not None else aead_side(endpoint))

    def rekey(self, pump: "Pump", key: bytes, key_id: int) -> None:
        """Give `pump`'s workers a new key, named `key_id` on the wire (not
        the id in use). Each worker takes it between two batches (no packet
        sees half a key): it accepts the new key at once, sends with it once
        the peer is seen using it or `grace` seconds later, and accepts the
        old key for `grace` seconds after that. Rekey the other end within
        `grace` seconds. A pump restarted later starts again from the key
        this AEAD was made with."""
        key = _check_key(key, "key")
        key_id = _check_key_id(key_id)
        run = getattr(pump, "_run", None)   # this run of the pump: a restart starts from self.key_id
        current = self._key_ids.get(run, self.key_id) if run is not None else self.key_id
        if key_id == current:
            raise ValueError(f"key_id={key_id!r}: that is the key in use; a new key needs a new id")
        pump.transform_control(bytes((_core.AEAD_REKEY, key_id)) + key)
        if run is not None:
            self._key_ids[run] = key_id


def _check_key(key: Any, arg: str) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"{arg}: expected {_core.AEAD_KEY_LEN} bytes, got {type(key).__name__} (read a key "
                        f"file with tunpump.keyfile.read_key_file)")
    key = bytes(key)
    if len(key) != _core.AEAD_KEY_LEN:
        raise ValueError(f"{arg}: {len(key)} bytes, expected {_core.AEAD_KEY_LEN}")
    return key


def _check_key_id(key_id: Any) -> int:
    if isinstance(key_id, bool) or not isinstance(key_id, int) or not 0 <= key_id <= 255:
        raise ValueError(f"key_id={key_id!r}: expected 0..255")
    return key_id


def _check_two_ends(endpoint: Any) -> None:
    peers = getattr(endpoint, "peers", [])
    if len(peers) > 1:
        raise ValueError(f"AEAD: the endpoint has {len(peers)} peers; a pre-shared key is for two ends "
                         f"(every peer would share the key and the nonces): one remote")


def aead_side(endpoint: Any) -> int:
    """The AEAD's side (0 or 1) on `endpoint`, decided so that the other end
    decides the other one (see AEAD); ValueError where it cannot tell."""
    from .endpoint import TCPEndpoint, UDPEndpoint
    ask = "give AEAD(side=0) on one end and AEAD(side=1) on the other"
    if isinstance(endpoint, TCPEndpoint):
        return 1 if endpoint.is_listener else 0
    if not isinstance(endpoint, UDPEndpoint):
        raise ValueError(f"AEAD: cannot tell the two ends apart on {endpoint!r}: {ask}")
    _check_two_ends(endpoint)
    peers = endpoint.peers
    if not peers:
        raise ValueError(f"AEAD: {endpoint!r} has no fixed peer (it learns its peer, or peers are set "
                         f"later), so the two ends cannot be told apart from the addresses: {ask}")
    (laddr, lport), (raddr, rport) = endpoint.local, peers[0]
    if lport and lport != rport:
        return 0 if lport < rport else 1
    local_ip, remote_ip = ipaddress.ip_address(laddr), ipaddress.ip_address(raddr)
    if lport == rport and not local_ip.is_unspecified and local_ip != remote_ip:
        return 0 if local_ip.packed < remote_ip.packed else 1
    raise ValueError(f"AEAD: cannot tell the two ends apart from local={endpoint.local!r} and "
                     f"remote={peers[0]!r} (this end's port is ephemeral or its address a wildcard, so "
                     f"both ends could decide alike): give the local port or address, or {ask}")


def as_capsule(transform: Any, endpoint: Any = None) -> Any:
    """The checked capsule behind `transform` (a capsule, or an object with
    `__tunpump_transform__()`; a built-in that depends on the endpoint, such
    as AEAD, is bound to `endpoint`). Raises TypeError / ValueError naming
    what is wrong: not a capsule, a capsule of another name or ABI version."""
    bind = getattr(transform, "__tunpump_bind__", None)
    get = getattr(transform, "__tunpump_transform__", None)
    if endpoint is not None and callable(bind):
        capsule = bind(endpoint)
    else:
        capsule = get() if callable(get) else transform
    try:
        _core.transform_info(capsule)
    except TypeError:
        raise TypeError(f"transform={transform!r}: expected a PyCapsule named {CAPSULE_NAME!r} or an object "
                        f"with a __tunpump_transform__() method returning one") from None
    return capsule


def info(transform: Any) -> tuple:
    """(name, flags, has_control) of a transform."""
    return _core.transform_info(as_capsule(transform))


def drop_reasons(transform: Any) -> Tuple[str, ...]:
    """The transform's own drop reasons (tunpump.h: ops->drop_reasons), as
    it names them; stats() shows each as "<transform name>_<reason>"."""
    return _core.transform_drop_reasons(as_capsule(transform))
