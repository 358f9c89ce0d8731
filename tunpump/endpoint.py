"""Where a pump sends a device's packets: another device (a relay), a UDP
peer, or a TCP stream framed like simpletun (2-byte big-endian length).

With N queues, worker i uses local port P+i and remote port P+i, so each
queue has its own socket and one flow stays on one worker end to end. With one
queue this is exactly simpletun's single connection on port 55555."""
from __future__ import annotations

import ipaddress
import math
import socket
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from ._core import MAX_PEERS

Address = Union[str, Tuple[str, int]]
SIMPLETUN_PORT = 55555
DEFAULT_SOCK_BUF = 4 << 20  # default ~208 KiB buffers cost tunnels most of their TCP throughput
DEFAULT_PEER_TIMEOUT = 30.0  # seconds a learned UDP peer must be silent before a new source replaces it


def parse_address(value: Address, arg: str, default_port: Optional[int] = None) -> Tuple[str, int]:
    """("198.18.0.1", 5000), "198.18.0.1:5000", "[fd00::1]:5000" or, with a
    default port, a bare address."""
    host: str
    port: Optional[int]
    if isinstance(value, tuple) and len(value) == 2:
        host, port = value[0], value[1]
    elif isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            host, _, rest = s[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
            if rest and port is None:
                raise ValueError(f"{arg}={value!r}: expected [IPv6]:PORT")
        elif s.count(":") == 1:
            host, _, p = s.partition(":")
            if not p.isdigit():
                raise ValueError(f"{arg}={value!r}: the port must be a number")
            port = int(p)
        else:
            host, port = s, None
    else:
        raise ValueError(f"{arg}={value!r}: expected (host, port) or 'HOST:PORT'")
    if port is None:
        port = default_port
    if port is None or isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{arg}={value!r}: expected a port from 0 to 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = str(socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][4][0])
        except (socket.gaierror, UnicodeError):
            raise ValueError(f"{arg}={value!r}: {host!r} is not an IP address or a known host name") from None
    return host, port


def _packed(host: str) -> Tuple[int, bytes]:
    ip = ipaddress.ip_address(host)
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), ip.packed


V4_MAPPED = b"\0" * 10 + b"\xff\xff"   # ::ffff:a.b.c.d, an IPv4 address on an IPv6 socket


def dual_stack(local_host: str) -> bool:
    """A socket bound to "::" (Linux's default: not IPV6_V6ONLY) talks IPv4 too."""
    return ipaddress.ip_address(local_host) == ipaddress.IPv6Address("::")


def packed_for(host: str, local_host: str, arg: str) -> Tuple[int, bytes]:
    """(family, raw address) of `host` as a socket bound to `local_host`
    addresses it: an IPv4 host on a dual-stack IPv6 socket is its
    v4-mapped address (as the kernel reports its datagrams)."""
    fam, raw = _packed(host)
    lfam, _ = _packed(local_host)
    if fam == lfam:
        return fam, raw
    if fam == socket.AF_INET and dual_stack(local_host):
        return socket.AF_INET6, V4_MAPPED + raw
    raise ValueError(f"{arg}: not the same IP version as the socket's local address {local_host!r} "
                     f"(a socket bound to '::' takes IPv4 and IPv6 peers)")


@dataclass
class _SocketEndpoint:
    local: Tuple[str, int]
    remote: Optional[Tuple[str, int]]
    netns: Optional[str]
    sock_buf: int
    remotes: Tuple[Tuple[str, int], ...] = ()

    def _remote_port_any(self) -> bool:
        """Whether remote port 0 means any port (a TCP server's client)."""
        return False

    def _sock_cfg(self, queues: int) -> dict:
        fam, laddr = _packed(self.local[0])
        remotes: List[Tuple[bytes, int]] = []
        cfg: Dict[str, Any] = {"family": fam, "local_addr": laddr, "local_port": self.local[1],
                               "remotes": remotes, "sock_buf": self.sock_buf}
        for remote in self.remotes or ((self.remote,) if self.remote is not None else ()):
            _, raddr = packed_for(remote[0], self.local[0], f"remote={remote!r}")
            if remote[1] == 0 and not self._remote_port_any():
                raise ValueError(f"remote={remote!r}: the remote port cannot be 0")
            if remote[1] + queues - 1 > 65535:
                raise ValueError(f"remote={remote!r}: ports {remote[1]}..{remote[1] + queues - 1} "
                                 f"(one per queue) run past 65535")
            remotes.append((raddr, remote[1]))
        if self.local[1] and self.local[1] + queues - 1 > 65535:
            raise ValueError(f"local={self.local!r}: ports (one per queue) run past 65535")
        return cfg


def _check_peer_timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not value > 0:
        raise ValueError(f"peer_timeout={value!r}: expected seconds above 0, or math.inf (never re-learn)")
    return float(value)


def _check_buf(sock_buf: int) -> int:
    if isinstance(sock_buf, bool) or not isinstance(sock_buf, int) or not 0 <= sock_buf <= 1 << 30:
        raise ValueError(f"sock_buf={sock_buf!r}: expected bytes from 0 (kernel default) to 1 GiB")
    return sock_buf


class UDPEndpoint(_SocketEndpoint):
    """A UDP peer — or several. Each worker binds local port P+i and sends to
    remote port P+i. Datagrams from any other source are dropped and counted
    (``unknown_peer``). Without ``remote``, ``learn_peer`` mode takes the first
    sender of each worker's socket as its peer (a server for one client).

    A learned peer is replaced by a new source only once it has been silent
    for ``peer_timeout`` seconds (default 30; ``math.inf``: never), so a
    client that restarts on a new port gets the tunnel back, while a stranger
    cannot take over a peer that is talking. Until then strangers are dropped
    as ``unknown_peer``. A change posts ``PeerDown(old)`` then ``PeerUp(new)``
    and counts in ``peers_learned``. The risk that stays: a stranger who can
    send to the port takes over a peer that has been silent that long (a
    tunnel that only receives looks silent); authenticate with a transform,
    or give ``remote``.

    ``remote`` may be a list of peers (at most ``MAX_PEERS``, 16) sharing the one socket:
    packets go to the first unless a flow's verdict is ``Verdict.route(peer)``
    (or a transform picks the peer), and datagrams from any of them are
    accepted. A peer is named by its index in ``peers`` everywhere:
    ``Verdict.route(peer)``, ``Pump.inject(..., peer=i)``, ``Packet.peer``,
    ``Decision.peer``, ``Pump.set_peer(i, address)``. An empty list
    (``remote=[]``) starts with no peer: add them while the pump runs with
    ``Pump.set_peer(i, address)`` (``remove_peer`` / ``set_peer`` work on a
    non-empty list too). Until a packet's peer exists it is dropped as
    ``no_peer``."""

    def __init__(self, local: Address = ("0.0.0.0", 0),
                 remote: Union[None, Address, List[Address]] = None, *,
                 learn_peer: Optional[bool] = None, netns: Optional[str] = None,
                 sock_buf: int = DEFAULT_SOCK_BUF, peer_timeout: Optional[float] = None) -> None:
        loc = parse_address(local, "local", 0)
        remotes: Tuple[Tuple[str, int], ...] = ()
        later = isinstance(remote, list) and not remote   # peers come from Pump.set_peer
        if isinstance(remote, list):
            if len(remote) > MAX_PEERS:
                raise ValueError(f"remote: a list of 0 to {MAX_PEERS} peers, got {len(remote)}")
            remotes = tuple(parse_address(r, f"remote[{i}]") for i, r in enumerate(remote))
            remote = remotes[0] if remotes else None
        rem = parse_address(remote, "remote") if remote is not None else None
        if learn_peer is None:
            learn_peer = rem is None and not later
        if rem is None and not learn_peer and not later:
            raise ValueError("remote=None: give the peer's address, remote=[] to add peers with "
                             "Pump.set_peer, or learn_peer=True to take the first sender")
        if (rem is not None or later) and learn_peer:
            raise ValueError("learn_peer=True: only without a remote address (remote=None)")
        if learn_peer and loc[1] == 0:
            raise ValueError("local: a server that learns its peer needs a fixed local port")
        peers = remotes or ((rem,) if rem else ())
        if loc[0] == "0.0.0.0" and any(_packed(r[0])[0] == socket.AF_INET6 for r in peers):
            loc = ("::", loc[1])   # an IPv6 peer: a dual-stack socket (IPv4 peers too)
        if peer_timeout is not None and not learn_peer:
            raise ValueError(f"peer_timeout={peer_timeout!r}: only for a server that learns its peer "
                             "(no remote): a fixed remote never changes")
        super().__init__(loc, rem, netns, _check_buf(sock_buf), remotes)
        self.learn_peer = learn_peer
        self.peer_timeout: Optional[float] = (_check_peer_timeout(peer_timeout if peer_timeout is not None
                                                                  else DEFAULT_PEER_TIMEOUT)
                                              if learn_peer else None)

    @property
    def peers(self) -> List[Tuple[str, int]]:
        """The peers a pump starts with; peer index i (Verdict.route(i),
        inject(peer=i)) is peers[i]. While a pump runs, `Pump.peers()` has
        the live ones (set, removed, learned, roamed)."""
        return list(self.remotes) if self.remotes else ([self.remote] if self.remote else [])

    def __repr__(self) -> str:
        remote = list(self.remotes) if self.remotes or not self.learn_peer else self.remote
        return f"UDPEndpoint(local={self.local!r}, remote={remote!r}, learn_peer={self.learn_peer})"

    def sock_cfg(self, queues: int) -> dict:
        cfg = self._sock_cfg(queues)
        cfg["learn_peer"] = int(self.learn_peer)
        if self.peer_timeout is not None and not math.isinf(self.peer_timeout):
            cfg["peer_timeout_ns"] = max(1, int(self.peer_timeout * 1e9))
        return cfg


class TCPEndpoint(_SocketEndpoint):
    """A TCP stream with simpletun's framing: each packet preceded by its
    length as a 2-byte big-endian integer. Use :meth:`listen` (server) or
    :meth:`connect` (client). A frame of length 0 or above ``max_frame`` is a
    protocol error: counted, the connection is closed, and the client
    reconnects (backoff 0.1 s doubling to 5 s) or the server accepts anew.

    A server takes one connection at a time: a new client replaces the
    current one (a client that crashed or moved may never close its old
    connection). Give the server ``remote`` (the client's address; with a
    port, only that source port) and connections from anyone else are
    closed at once and counted (``refused_connections``). Without
    ``remote``, anyone who can reach the port takes the tunnel over."""

    def __init__(self, local: Address, remote: Optional[Address], *, listen: bool,
                 netns: Optional[str] = None, sock_buf: int = DEFAULT_SOCK_BUF,
                 max_frame: int = 65535) -> None:
        loc = parse_address(local, "local", SIMPLETUN_PORT if listen else 0)
        # A server's remote is its client: without a port, any source port.
        rem = parse_address(remote, "remote", 0 if listen else SIMPLETUN_PORT) if remote is not None else None
        if isinstance(max_frame, bool) or not isinstance(max_frame, int) or not 1 <= max_frame <= 65535:
            raise ValueError(f"max_frame={max_frame!r}: expected 1..65535 bytes")
        if rem is not None and loc[0] in ("0.0.0.0", "::"):
            fam, _ = _packed(rem[0])
            loc = ("::" if fam == socket.AF_INET6 else "0.0.0.0", loc[1])
        super().__init__(loc, rem, netns, _check_buf(sock_buf))
        self.is_listener = listen
        self.max_frame = max_frame

    def _remote_port_any(self) -> bool:
        return self.is_listener

    @classmethod
    def listen(cls, local: Address = ("0.0.0.0", SIMPLETUN_PORT), remote: Optional[Address] = None,
               **kw) -> "TCPEndpoint":
        """A server on `local`. `remote`: the only client address it accepts
        ("ADDR" any port, "ADDR:PORT" that port + queue); None: anyone, and a
        new connection replaces the current one."""
        return cls(local, remote, listen=True, **kw)

    @classmethod
    def connect(cls, remote: Address, local: Address = ("0.0.0.0", 0), **kw) -> "TCPEndpoint":
        return cls(local, remote, listen=False, **kw)

    def __repr__(self) -> str:
        role = f"listen={self.local!r}" if self.is_listener else f"connect={self.remote!r}"
        if self.is_listener and self.remote is not None:
            role += f", remote={self.remote!r}"
        return f"TCPEndpoint({role})"

    def sock_cfg(self, queues: int) -> dict:
        cfg = self._sock_cfg(queues)
        cfg["listen"] = int(self.is_listener)
        cfg["max_frame"] = self.max_frame
        return cfg
