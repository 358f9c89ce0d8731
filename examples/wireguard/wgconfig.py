"""wg-quick's configuration format: an [Interface] section and [Peer]
sections of `Key = value` lines, `#` comments. Keys are base64 (`wg genkey`).
Errors are ConfigError naming the file, the line and the key."""
from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

log = logging.getLogger("wgtun")
# wg-quick's own keys (hooks, DNS, routing table): not this program's job.
WG_QUICK_ONLY = {"dns", "table", "preup", "postup", "predown", "postdown", "saveconfig", "fwmark"}


class ConfigError(ValueError):
    """The configuration is wrong; the message says where and how."""


@dataclass
class PeerConfig:
    public_key: bytes
    preshared_key: bytes = bytes(32)
    endpoint: Optional[Tuple[str, int]] = None
    allowed_ips: List[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = field(default_factory=list)
    persistent_keepalive: int = 0


@dataclass
class Config:
    private_key: bytes
    listen_port: Optional[int] = None
    addresses: List[Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]] = field(default_factory=list)
    mtu: Optional[int] = None
    peers: List[PeerConfig] = field(default_factory=list)


def parse_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("expected a 32-byte key in base64 (as `wg genkey` prints)")
    return raw


def _int(value: str, lo: int, hi: int) -> int:
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise ValueError(f"expected an integer from {lo} to {hi}")
    return int(value)


def parse_endpoint(value: str) -> Tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected host:port or [v6 address]:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    # an address (a name would need DNS), written as the socket API writes it
    return str(ipaddress.ip_address(host)), _int(port, 1, 65535)


def _list(value: str) -> List[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _interface(cfg: dict, key: str, value: str) -> None:
    if key == "privatekey":
        cfg["private_key"] = parse_key(value)
    elif key == "listenport":
        cfg["listen_port"] = _int(value, 0, 65535)
    elif key == "address":
        cfg.setdefault("addresses", []).extend(ipaddress.ip_interface(v) for v in _list(value))
    elif key == "mtu":
        cfg["mtu"] = _int(value, 576, 65535)
    else:
        raise KeyError(key)


def _peer(cfg: dict, key: str, value: str) -> None:
    if key == "publickey":
        cfg["public_key"] = parse_key(value)
    elif key == "presharedkey":
        cfg["preshared_key"] = parse_key(value)
    elif key == "endpoint":
        cfg["endpoint"] = parse_endpoint(value)
    elif key == "allowedips":
        cfg.setdefault("allowed_ips", []).extend(ipaddress.ip_network(v, strict=False) for v in _list(value))
    elif key == "persistentkeepalive":
        cfg["persistent_keepalive"] = 0 if value == "off" else _int(value, 0, 65535)
    else:
        raise KeyError(key)


def parse(text: str, name: str = "<config>") -> Config:
    iface: Optional[dict] = None
    peers: List[Tuple[int, dict]] = []
    section = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{name}:{lineno}"
        if line.startswith("["):
            section = line.lower()
            if section == "[interface]":
                if iface is not None:
                    raise ConfigError(f"{where}: a second [Interface] section")
                iface = {}
            elif section == "[peer]":
                peers.append((lineno, {}))
            else:
                raise ConfigError(f"{where}: unknown section {line} (expected [Interface] or [Peer])")
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: expected `Key = value`, got {raw.strip()!r}")
        if section is None:
            raise ConfigError(f"{where}: {key} outside a section (start with [Interface])")
        if key.lower() in WG_QUICK_ONLY and section == "[interface]":
            log.warning("%s: %s is a wg-quick setting; wgtun ignores it", where, key)
            continue
        try:
            if section == "[interface]":
                assert iface is not None   # made when the section began
                _interface(iface, key.lower(), value)
            else:
                _peer(peers[-1][1], key.lower(), value)
        except KeyError:
            raise ConfigError(f"{where}: unknown key {key} in {section[1:-1].capitalize()}") from None
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} = {value!r}: {exc}") from None
    if iface is None or "private_key" not in iface:
        raise ConfigError(f"{name}: needs an [Interface] section with a PrivateKey")
    seen = set()
    for lineno, p in peers:
        if "public_key" not in p:
            raise ConfigError(f"{name}:{lineno}: [Peer] without a PublicKey")
        if p["public_key"] in seen:
            raise ConfigError(f"{name}:{lineno}: PublicKey: a second [Peer] with the same key")
        seen.add(p["public_key"])
    return Config(peers=[PeerConfig(**p) for _, p in peers], **iface)


def load(path: str) -> Config:
    with open(path) as f:
        return parse(f.read(), path)
