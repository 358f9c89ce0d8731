"""The control plane's Python side: flows, verdicts, events, and the thread
that calls your callbacks.

Python never runs on a worker thread. Workers post events on lock-free
single-producer rings and wake a control thread through an eventfd; that
thread calls `on_flow`, `on_packet` and `on_event` and posts verdicts back.
A callback that raises is logged with its traceback and the default verdict
applies; a slow callback delays only decisions, never forwarding of flows
already decided (their packets never wait for Python). For asyncio,
`Pump.events()` is an async iterator fed by the same thread.
"""
from __future__ import annotations

import asyncio
import collections
import enum
import errno as _errno
import logging
import os
import socket
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Deque, List, Optional, Tuple, Union

from . import _core
from .stats import Stats

log = logging.getLogger("tunpump")

_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


class Verdict(enum.Enum):
    """What happens to a flow's packets: FORWARD, DROP, PUNT (to on_packet, or
    in batches to on_punt without it),
    or ROUTE to one peer of a multi-peer UDP endpoint, given as
    `Verdict.route(peer)` with the peer's index (`UDPEndpoint.peers[peer]`).
    `on_flow` returns a member, a `Decision` (`Verdict.route(peer, ttl=...)`,
    `Verdict.FORWARD.with_ttl(seconds)`: ask again after that long), or None
    for the default verdict."""

    FORWARD = "forward"
    DROP = "drop"
    PUNT = "punt"
    ROUTE = "route"

    @classmethod
    def _missing_(cls, value: object) -> "Verdict":
        raise ValueError(f"verdict={value!r}: expected one of "
                         f"{', '.join(repr(m.value) for m in cls)} (or Verdict.FORWARD, ...)")

    @staticmethod
    def route(peer: Optional[int] = None, ttl: Optional[float] = None, *,
              endpoint: Optional[int] = None) -> "Decision":
        """ROUTE this flow's packets to peer index `peer` of the UDP endpoint
        (`UDPEndpoint.peers[peer]`). `endpoint=` is the old, deprecated name."""
        if endpoint is not None:
            warnings.warn("Verdict.route(endpoint=...) is now Verdict.route(peer=...)", DeprecationWarning,
                          stacklevel=2)
            if peer is not None:
                raise TypeError("Verdict.route: give peer= only (endpoint= is its old name)")
            peer = endpoint
        if peer is None:
            raise TypeError("Verdict.route: missing the peer index (Verdict.route(peer))")
        return Decision(Verdict.ROUTE, peer, ttl)

    def with_ttl(self, ttl: float) -> "Decision":
        """This verdict for `ttl` seconds; then the pump asks on_flow again."""
        if self is Verdict.ROUTE:
            raise ValueError("Verdict.ROUTE needs a peer: Verdict.route(peer, ttl=...)")
        return Decision(self, 0, ttl)

    def _code(self) -> Tuple[int, int, int]:
        if self is Verdict.ROUTE:
            raise ValueError("Verdict.ROUTE needs a peer index: return Verdict.route(peer)")
        return _VERDICT_CODES[self], 0, 0

    def __repr__(self) -> str:
        return f"Verdict.{self.name}"


_VERDICT_CODES = {Verdict.FORWARD: _core.VERDICT_FORWARD, Verdict.DROP: _core.VERDICT_DROP,
                  Verdict.PUNT: _core.VERDICT_PUNT, Verdict.ROUTE: _core.VERDICT_ROUTE}


@dataclass(frozen=True)
class Decision:
    """A verdict with its arguments: the peer index (ROUTE) and a ttl in
    seconds after which the pump asks again. Made by `Verdict.route()` and
    `Verdict.<X>.with_ttl()`."""
    verdict: Verdict
    peer: int = 0
    ttl: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.verdict, Verdict):
            raise TypeError(f"verdict={self.verdict!r}: expected a tunpump.Verdict")
        p = self.peer
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < _core.MAX_PEERS:
            raise ValueError(f"peer={p!r}: expected a peer index from 0 to {_core.MAX_PEERS - 1}")
        if self.verdict is not Verdict.ROUTE and p:
            raise ValueError(f"peer={p!r}: only Verdict.route(peer) names a peer")
        t = self.ttl
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 86400 * 7):
            raise ValueError(f"ttl={t!r}: expected seconds, more than 0 and at most a week")

    @property
    def endpoint(self) -> int:
        """Deprecated: the peer index, now `peer`."""
        warnings.warn("Decision.endpoint is now Decision.peer", DeprecationWarning, stacklevel=2)
        return self.peer

    def with_ttl(self, ttl: float) -> "Decision":
        return Decision(self.verdict, self.peer, ttl)

    def _code(self) -> Tuple[int, int, int]:
        return _VERDICT_CODES[self.verdict], self.peer, int(self.ttl * 1000) if self.ttl else 0

    def __repr__(self) -> str:
        peer = f"({self.peer})" if self.verdict is Verdict.ROUTE else ""
        ttl = f" ttl={self.ttl}" if self.ttl else ""
        return f"<Verdict.{self.verdict.name}{peer}{ttl}>"


def flow_uid(queue: int, slot: int, gen: int) -> int:
    """Flow.id: the queue, the flow table slot and the slot's generation
    (bumped each time the slot is reused), so an id never repeats within a
    pump's run, even after the flow was evicted and its slot reused."""
    return (gen << 48) | (queue << 32) | slot


class Flow:
    """A flow as a worker saw it (`id`: unique within the pump's run, see
    flow_uid; the same for every event of the flow, and never given to
    another flow once its table slot is reused): kind ("ip", "fragment", "arp", "nd",
    "other", "unparsed"), IP version, protocol, addresses, ports (or the ICMP
    echo id), VLAN, the queue it arrived on and its counters at the time of
    the event.

    "unparsed" is an IP packet whose transport header the worker could not
    find (too many IPv6 extension headers, a header chain or length running
    past the packet): it has addresses but no ports, so a port-based rule
    cannot judge it. Decide on it explicitly (dropping it is the safe
    choice); it is never reported as "other"."""

    __slots__ = ("queue", "id", "packets", "bytes", "_raw", "_decoded")

    def __init__(self, queue: int, flow_id: int, key: Union[_core.FlowKey, bytes], packets: int = 0,
                 nbytes: int = 0) -> None:
        self.queue = queue
        self.id = flow_id
        self.packets = packets
        self.bytes = nbytes
        # A FlowKey, or the key's raw bytes from an event, decoded by the
        # binding on first use: a callback that reads no field costs no decode.
        self._raw = key
        self._decoded: Optional[_core.FlowKey] = key if isinstance(key, tuple) else None

    @property
    def _key(self) -> _core.FlowKey:
        if self._decoded is None:
            assert isinstance(self._raw, bytes)
            self._decoded = _core.decode_flow_key(self._raw)
        return self._decoded

    @property
    def kind(self) -> str:
        return self._key.kind

    @property
    def version(self) -> int:
        return self._key.version

    @property
    def protocol(self) -> int:
        return self._key.protocol

    @property
    def protocol_name(self) -> str:
        return _PROTOS.get(self.protocol, str(self.protocol))

    def _addr(self, raw: bytes) -> Optional[str]:
        if self.version == 4:
            return socket.inet_ntop(socket.AF_INET, raw[:4])
        if self.version == 6:
            return socket.inet_ntop(socket.AF_INET6, raw)
        return None

    @property
    def src(self) -> Optional[str]:
        return self._addr(self._key.src)

    @property
    def dst(self) -> Optional[str]:
        return self._addr(self._key.dst)

    @property
    def sport(self) -> int:
        return self._key.sport

    @property
    def dport(self) -> int:
        return self._key.dport

    @property
    def icmp_id(self) -> Optional[int]:
        return self.sport if self.protocol in (1, 58) else None

    @property
    def vlan(self) -> int:
        return self._key.vlan

    @property
    def ethertype(self) -> int:
        return self._key.ethertype

    def __repr__(self) -> str:
        if self.kind in ("arp", "nd", "other"):
            return f"<Flow {self.kind} ethertype=0x{self.ethertype:04x} vlan={self.vlan} queue={self.queue}>"
        ports = f":{self.sport} -> " if self.protocol in (6, 17, 132) else " -> "
        dport = f":{self.dport}" if self.protocol in (6, 17, 132) else ""
        return (f"<Flow {self.kind} {self.protocol_name} {self.src}{ports}{self.dst}{dport} "
                f"queue={self.queue} packets={self.packets}>")


# ---- events ------------------------------------------------------------------

@dataclass(frozen=True)
class FlowEvicted:
    flow: Flow
    reason: str          # "idle" or "table_full"
    packets: int
    bytes: int
    age: float           # seconds since the flow was first seen


@dataclass(frozen=True)
class PeerUp:
    """A peer came up on worker `queue`: a TCP connection (made or accepted)
    or a learned UDP peer, at `address` (host, port)."""
    queue: int
    address: Tuple[str, int]


@dataclass(frozen=True)
class PeerDown:
    """A TCP connection went down, or a learned UDP peer gave way to a new one."""
    queue: int
    address: Tuple[str, int]


@dataclass(frozen=True)
class PeerMoved:
    """UDP peer `peer` of queue `queue` now sends from (and is sent to)
    `address`: the transform authenticated a datagram from there (roaming,
    TUNPUMP_UNKNOWN_SOURCES / pkt->roam in tunpump.h). Only that queue's
    worker moved it; `Pump.set_peer` moves it on every queue."""
    queue: int
    peer: int
    address: Tuple[str, int]


@dataclass(frozen=True)
class PeerUnreachable:
    """A peer could not be reached from queue `queue`: `what` is "send" (the
    kernel refused a datagram to `address` with ECONNREFUSED, EHOSTUNREACH
    or ENETUNREACH: no route, an unreachable route; such datagrams are
    dropped as `unreachable`) or "connect" (a TCP client's connect failed,
    e.g. ECONNREFUSED; it retries with backoff, each try counted in
    `connect_attempts`). Posted at most once a second per queue, however
    often it happens."""
    queue: int
    address: Tuple[str, int]
    what: str
    errno: int

    @property
    def reason(self) -> str:
        return os.strerror(self.errno)


@dataclass(frozen=True)
class WorkerError:
    queue: int
    errno: int
    where: str

    @property
    def device_gone(self) -> bool:
        """The device was removed or the queue detached under the worker."""
        return self.errno in (_errno.EBADFD, _errno.EBADF, _errno.ENODEV, _errno.EIO)


@dataclass(frozen=True)
class Packet:
    """A packet handed to Python, as `Pump(on_punt=...)` receives it, in
    batches: from a transform (TUNPUMP_TO_PYTHON), or of a flow `on_flow`
    gave Verdict.PUNT when there is no `on_packet`.

    direction: "to_endpoint" (read from the device, not yet transformed) or
    "to_device" (read from the endpoint: e.g. a handshake message);
    queue: the worker; peer: the UDP peer index it was going to / came
    from (None: unknown or not UDP); source: (host, port) of the datagram
    for "to_device" from a UDP endpoint (None otherwise); flow: the
    flow's Flow.id when verdicts are on (None otherwise)."""
    direction: str
    queue: int
    peer: Optional[int]
    source: Optional[Tuple[str, int]]
    data: bytes
    flow: Optional[int] = None


def host_of(family: int, addr: bytes) -> str:
    """An address from C as Python writes it; an IPv4 peer of a dual-stack
    IPv6 socket (::ffff:a.b.c.d) as plain IPv4, the way it was given."""
    if family == socket.AF_INET6 and addr[:12] == b"\0" * 10 + b"\xff\xff":
        family, addr = socket.AF_INET, addr[12:16]
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, addr[:4])
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, addr[:16])
    return ""



@dataclass(frozen=True)
class StatsTick:
    """Every `stats_interval` seconds: the pump's summed counters."""
    stats: Stats


Event = Any


class Control:
    """Runs the callbacks on one thread; the Cython dispatcher calls the
    on_* methods below, which never raise."""

    def __init__(self, pump, on_flow, on_packet, on_event, default: Verdict, stats_interval,
                 on_punt: Optional[Callable] = None) -> None:
        self.pump = pump
        self.on_punt_cb = on_punt
        self._punts: list = []
        self.on_flow_cb: Optional[Callable] = on_flow
        self.on_packet_cb: Optional[Callable] = on_packet
        self.on_event_cb: Optional[Callable] = on_event
        self.default = default._code()
        self.stats_interval = stats_interval
        self.streams: List["weakref.ref[EventStream]"] = []   # Pump.events() iterators
        self.callback_errors = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ident: Optional[int] = None   # the current control thread's id
        self._idents: set = set()   # thread ids of control threads still alive

    # -- asyncio iterators -----------------------------------------------------
    def stream(self) -> "EventStream":
        st = EventStream(self)
        self.streams.append(weakref.ref(st, self._forget))
        return st

    def _forget(self, ref) -> None:
        try:
            self.streams.remove(ref)
        except ValueError:
            pass

    def has_streams(self) -> bool:
        return any(ref() is not None for ref in list(self.streams))

    # -- thread ----------------------------------------------------------------
    def start(self, core, run) -> None:
        """Run the callbacks for `core` on a new thread. The thread holds a
        token of `run` (tunpump.pump._Run) while it may touch the core, so
        the core outlives a callback that is still running after stop()."""
        self._stop = threading.Event()   # a fresh one: a late thread of an earlier run keeps its own
        tok = run.enter()
        if tok is None:   # stopped already (by another thread, while start() ran)
            return
        t = threading.Thread(target=self._run, args=(core, run, tok, self._stop),
                             name="tunpump-control", daemon=True)
        self._thread = t
        t.start()
        self._ident = t.ident

    def is_control_thread(self) -> bool:
        """True on a thread that runs (or ran, and is finishing a late
        callback) this pump's callbacks."""
        return threading.get_ident() in self._idents

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: Optional[float] = None) -> None:
        """No callback starts after this; wait up to `timeout` seconds for the
        thread (a callback may be running). From a callback, only ask."""
        self._stop.set()
        t = self._thread
        if t is None or t is threading.current_thread():
            return
        self._thread = None
        self._ident = None
        t.join(timeout)
        if t.is_alive():
            log.warning("tunpump: a callback is still running %.1f s after stop(); it finishes "
                        "on its own and its verdicts are ignored", timeout or 0)

    def _stopping(self) -> bool:
        # Per event: get_ident() and an int compare, not current_thread().
        return self._stop.is_set() or threading.get_ident() != self._ident

    def _run(self, core, run, tok, stop: threading.Event) -> None:
        self._idents.add(threading.get_ident())
        if threading.current_thread() is self._thread:
            self._ident = threading.get_ident()   # before start() returns: callbacks may come first
        try:
            next_tick = time.monotonic() + self.stats_interval if self.stats_interval else None
            while not stop.is_set():
                if core.wait_events(50):
                    while not stop.is_set():
                        n = core.dispatch(self, 4096)
                        self._flush_punts()
                        if n < 4096:
                            break
                if next_tick is not None and time.monotonic() >= next_tick and not stop.is_set():
                    next_tick += self.stats_interval
                    self._event(StatsTick(self.pump.stats()))
        finally:
            self._idents.discard(threading.get_ident())
            run.leave(tok)

    # -- called by the dispatcher ---------------------------------------------------
    def _failed(self, what: str) -> None:
        self.callback_errors += 1
        log.exception("tunpump: %s raised; the pump goes on", what)

    def on_flow(self, queue, flow_id, gen, key, packets, nbytes):
        if self.on_flow_cb is None or self._stopping():
            return self.default
        try:
            v = self.on_flow_cb(Flow(queue, flow_uid(queue, flow_id, gen), key, packets, nbytes))
            if v is None:
                return self.default
            if not isinstance(v, (Verdict, Decision)):
                raise TypeError(f"on_flow returned {v!r}: expected a tunpump.Verdict (Verdict.FORWARD, "
                                f"Verdict.route(peer), ...) or None")
            if isinstance(v, Decision) and v.verdict is Verdict.ROUTE and not self.pump._has_peer(queue, v.peer):
                raise ValueError(f"on_flow returned {v!r}: queue {queue} has no peer {v.peer} "
                                 f"(peers: {self.pump._peer_list(queue)})")
            return v._code()
        except BaseException:
            self._failed("on_flow")
            return self.default

    def on_packet(self, queue, view, flow_id, gen, key, packets, nbytes) -> None:
        if self._stopping():
            return
        if self.on_packet_cb is None:
            if self.on_punt_cb is not None:   # batched with the transform's punts
                self._punts.append(Packet("to_endpoint", queue, None, None, bytes(view),
                                          flow_uid(queue, flow_id, gen)))
            return
        try:
            self.on_packet_cb(view, Flow(queue, flow_uid(queue, flow_id, gen), key, packets, nbytes))
        except BaseException:
            self._failed("on_packet")

    def on_punt(self, queue, direction, peer, flow_id, gen, family, addr, port, data) -> None:
        source = (host_of(family, addr), port) if family else None
        self._punts.append(Packet("to_endpoint" if direction == 0 else "to_device", queue,
                                  None if peer < 0 else peer, source, data,
                                  None if flow_id < 0 else flow_uid(queue, flow_id, gen)))

    def _flush_punts(self) -> None:
        """One on_punt call per dispatch round, with every packet it brought."""
        if not self._punts:
            return
        batch, self._punts = self._punts, []
        if self.on_punt_cb is None or self._stopping():
            return   # no callback starts after stop(), even with packets gathered before it
        try:
            self.on_punt_cb(batch)
        except BaseException:
            self._failed("on_punt")

    def on_evicted(self, queue, flow_id, gen, key, packets, nbytes, reason, age_ns) -> None:
        if not self.streams and self.on_event_cb is None:
            return   # nobody listens: a table churning through flows builds no event objects
        flow = Flow(queue, flow_uid(queue, flow_id, gen), key, packets, nbytes)
        self._event(FlowEvicted(flow, "idle" if reason == _core.EVICT_IDLE else "table_full", packets, nbytes, age_ns / 1e9))

    def on_peer(self, queue, up, family, addr, port) -> None:
        host = host_of(family, addr)
        self._event((PeerUp if up else PeerDown)(queue, (host, port)))

    def on_peer_moved(self, queue, peer, family, addr, port) -> None:
        self._event(PeerMoved(queue, peer, (host_of(family, addr), port)))

    def on_unreachable(self, queue, what, err, family, addr, port) -> None:
        self._event(PeerUnreachable(queue, (host_of(family, addr), port), what, err))

    def on_error(self, queue, err, where) -> None:
        self._event(WorkerError(queue, err, where))

    def _event(self, ev) -> None:
        if self._stopping():
            return
        for ref in list(self.streams):
            st = ref()
            if st is not None:
                st._post(ev)
        if self.on_event_cb is not None:
            try:
                self.on_event_cb(ev)
            except BaseException:
                self._failed("on_event")


class EventStream:
    """An async iterator over a pump's events (Pump.events()). It is
    registered when made, so events posted between start() and the first
    `async for` step wait in it. Events are kept until read; aclose() (or
    dropping it) unregisters it."""

    def __init__(self, control: Control) -> None:
        self._control = control
        self._items: Deque[Any] = collections.deque()
        self._lock = threading.Lock()   # the control thread posts, the loop's thread reads
        self._waiter: Optional[asyncio.Future] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closed = False

    def _post(self, ev: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._items.append(ev)
            waiter, loop, self._waiter = self._waiter, self._loop, None
        if waiter is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:   # its loop was closed: nobody can read this any more
                self._unregister()

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    raise StopAsyncIteration
                fut = loop.create_future()
                self._waiter, self._loop = fut, loop
            try:
                await fut
            finally:
                with self._lock:
                    if self._waiter is fut:
                        self._waiter = None

    def _unregister(self) -> None:
        with self._lock:
            self._closed = True
            self._items.clear()
            waiter, loop, self._waiter = self._waiter, self._loop, None
        for ref in list(self._control.streams):
            if ref() is self or ref() is None:
                self._control._forget(ref)
        if waiter is not None and loop is not None:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:
                pass

    async def aclose(self) -> None:
        """Stop receiving events; a pending `async for` step ends."""
        self._unregister()

    def close(self) -> None:
        self._unregister()


def _wake(fut: "asyncio.Future") -> None:
    if not fut.done():
        fut.set_result(None)
