"""Pump: forwards between a device and an endpoint on C worker threads."""
from __future__ import annotations

import errno
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union, overload

from . import _core
from . import stats as _stats
from . import transforms as _transforms
from .control import Control, Decision, Event, EventStream, Flow, Packet, Verdict, host_of
from .device import Device
from .endpoint import Address, TCPEndpoint, UDPEndpoint, packed_for, parse_address
from .errors import PumpError
from .prefix import check_flag as check_prefix_flag
from .stats import Stats

Endpoint = Union[Device, UDPEndpoint, TCPEndpoint]
DEFAULT_BATCH = 64
STOP_CALLBACK_WAIT = 2.0   # seconds stop() waits for a running callback to return
PEER_APPLY_WAIT = 5.0      # seconds set_peer / remove_peer wait for every worker to apply the change


def _fmt(dev: Device) -> tuple:
    return (int(dev.pi), dev.vnet_hdr_size, int(dev.mode == "tap"), dev._offload_bits)


def _inet(address: Any, ep: UDPEndpoint) -> Tuple[int, bytes, int]:
    """(family, raw address, port) of a (host, port) the endpoint's socket
    can reach (an IPv4 host on a dual-stack "::" socket: v4-mapped)."""
    try:
        host, port = address
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (TypeError, ValueError, OSError):
        raise ValueError(f"address={address!r}: expected (IPv4 or IPv6 address, port)") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"address={address!r}: port must be 1..65535")
    family, raw = packed_for(host, ep.local[0], f"address={address!r}")
    return family, raw, port


class _Run:
    """One started C pump and the threads using it.

    stop() never waits on a lock: a signal handler can run it in the middle of
    any other pump call on the same thread, and a callback can run it on the
    control thread. Instead, every user of the core (stats, error, inject,
    run's wait, the control thread) holds a token, and the core's memory is
    freed by whoever leaves last once the run is retired. list.append/remove
    are atomic under the GIL; retiring sets the flag before looking at the
    users and users look at the flag after joining, so one side always sees
    the other."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.users: List[object] = []
        self.retired = False
        self.stoppers: List[tuple] = []   # (token, thread id) of each stop(); the first one stops
        self.stopped = threading.Event()
        self._close_claim = [True]
        # tp_pump_stop must not run on two threads at once; re-entrant so a
        # signal handler interrupting this thread never waits for itself.
        self._stop_lock = threading.RLock()

    def stop_workers(self) -> None:
        """Stop and join the workers (idempotent); the caller holds a token."""
        with self._stop_lock:
            self.core.stop()

    def enter(self) -> Optional[object]:
        tok = object()
        self.users.append(tok)
        if self.retired:
            self.leave(tok)
            return None
        return tok

    def leave(self, tok: object) -> None:
        self.users.remove(tok)
        if self.retired and not self.users:
            self._close()

    def retire(self) -> None:
        self.retired = True
        if not self.users:
            self._close()

    def _close(self) -> None:
        try:
            self._close_claim.pop()   # exactly one closer
        except IndexError:
            return
        self.core.close()


class Pump:
    """Forward packets between every queue of `device` and `endpoint`.

    One C worker thread per queue; the GIL is never taken on the forwarding
    path. `start()` returns at once; `run()` blocks until `stop()` (from a
    signal handler or another thread) or a worker error, which it raises as
    PumpError. The pump never closes the devices it was given.

    Offloads: super-packets a device hands over are cut into segments (every
    header and checksum fixed) for a sink that cannot take them — a socket, or
    a device without those offloads — and passed through whole otherwise.
    Packets bound for a device with offloads are coalesced into super-packets.
    A device's offloads are read when the pump starts.

    Control plane (all optional; without `on_flow` no flow table exists and
    every packet forwards):

    - `on_flow(flow) -> Verdict | Decision | None` (`Verdict.DROP`,
      `Verdict.route(peer)`, `Verdict.FORWARD.with_ttl(30)`) for the first packet of each flow the
      device sends (device -> endpoint direction); None means the default.
    - Packets of PUNT flows go to `on_packet(packet: memoryview, flow)`, one
      call each (the memoryview is valid during the call only), or, without
      `on_packet`, to `on_punt(list[Packet])` in batches (below).
    - `on_event(event)`: PeerUp, PeerDown, PeerMoved, WorkerError, FlowEvicted,
      StatsTick.
    - `flow_table_size` per queue (LRU eviction when full), `flow_idle_timeout`
      seconds, `decision_timeout` seconds after which `default_verdict`
      (FORWARD: fail-open, DROP: fail-closed) applies, `pending_limit` packets
      per queue held while their flow waits for a verdict.

    Transform (docs/transforms.md): `transform=` a capsule named
    "tunpump.transform.v2" or an object with `__tunpump_transform__()` (such
    as `tunpump.transforms.Null()`) runs C code on every packet in both
    directions, on the workers. Packets it sends to Python arrive in batches
    at `on_punt(list[Packet])` (one call per dispatch round), as do PUNT
    flows' packets when there is no `on_packet`; `punt_ring` packets per
    queue (a power of two, 64 KiB each, default 64) wait for Python, the
    rest are dropped as `punt_full`. With a transform the pump fails closed: `default_verdict`
    defaults to DROP and FORWARD is refused, so nothing leaves untransformed
    because Python was slow. `transform_control(msg)` hands the transform's
    workers a message (new keys) between batches.

    UDP peers change while the pump runs: `set_peer(i, address)`,
    `remove_peer(i)`, `peers(queue)`; a transform may move a peer to the
    source of a datagram it authenticated (roaming: a `PeerMoved` event).
    """

    def __init__(self, device: Device, endpoint: Endpoint, *, batch: int = DEFAULT_BATCH,
                 on_flow: Optional[Callable[[Flow], Union[Verdict, Decision, None]]] = None,
                 on_packet: Optional[Callable[[memoryview, Flow], None]] = None,
                 on_event: Optional[Callable[[Event], None]] = None,
                 flow_table_size: int = 65536, flow_idle_timeout: float = 60.0,
                 decision_timeout: float = 1.0, default_verdict: Optional[Verdict] = None,
                 pending_limit: int = 256, stats_interval: Optional[float] = None,
                 transform: Any = None, on_punt: Optional[Callable[[List[Packet]], None]] = None,
                 punt_ring: int = _core.DEFAULT_PUNT_RING) -> None:
        if not isinstance(device, Device):
            raise TypeError(f"device={device!r}: expected a tunpump.Device")
        if not isinstance(endpoint, (Device, UDPEndpoint, TCPEndpoint)):
            raise TypeError(f"endpoint={endpoint!r}: expected a Device, UDPEndpoint or TCPEndpoint")
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= _core.MAX_BATCH:
            raise ValueError(f"batch={batch!r}: expected 1..{_core.MAX_BATCH} packets per wakeup")
        if device.closed:
            raise ValueError("device: it is closed")
        if isinstance(endpoint, Device):
            if endpoint is device:
                raise ValueError("endpoint: relaying a device to itself would loop")
            if endpoint.mode != device.mode:
                raise ValueError(
                    f"endpoint: {device.name} is a {device.mode.upper()} device (IP packets) and "
                    f"{endpoint.name} a {endpoint.mode.upper()} device (Ethernet frames); "
                    f"a relay needs two devices of the same mode")
            if endpoint.closed:
                raise ValueError("endpoint: the device is closed")
            if endpoint.queues != device.queues:
                raise ValueError(f"endpoint: {endpoint.name} has {endpoint.queues} queues and "
                                 f"{device.name} {device.queues}; a relay pairs queue i with queue i")
        self._transform = None if transform is None else _transforms.as_capsule(transform, endpoint)
        if default_verdict is None:
            default_verdict = Verdict.FORWARD if transform is None else Verdict.DROP
        elif transform is not None and default_verdict != Verdict.DROP:
            raise ValueError(f"default_verdict={default_verdict!r}: with a transform the pump fails closed "
                             f"(Verdict.DROP), so no packet leaves untransformed because Python was slow")
        if isinstance(punt_ring, bool) or not isinstance(punt_ring, int) or \
                not 1 <= punt_ring <= _core.MAX_PUNT_RING or punt_ring & (punt_ring - 1):
            raise ValueError(f"punt_ring={punt_ring!r}: expected a power of two from 1 to {_core.MAX_PUNT_RING} "
                             f"packets per queue (64 KiB of memory each)")
        if on_punt is not None and transform is None and (on_flow is None or on_packet is not None):
            raise ValueError("on_punt: nothing would reach it: packets come from a transform "
                             "(TUNPUMP_TO_PYTHON) or, without on_packet, from flows on_flow gives "
                             "Verdict.PUNT")
        for name, cb in (("on_flow", on_flow), ("on_packet", on_packet), ("on_event", on_event),
                         ("on_punt", on_punt)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{name}={cb!r}: expected a callable")
        if isinstance(flow_table_size, bool) or not isinstance(flow_table_size, int) or \
                not 1 <= flow_table_size <= _core.MAX_FLOW_TABLE:
            raise ValueError(f"flow_table_size={flow_table_size!r}: expected 1 to {_core.MAX_FLOW_TABLE} flows "
                             "per queue")
        if isinstance(pending_limit, bool) or not isinstance(pending_limit, int) or \
                not 0 <= pending_limit <= _core.MAX_PENDING:
            # each waiting packet holds a 64 KiB slot made at start
            raise ValueError(f"pending_limit={pending_limit!r}: expected 0 to {_core.MAX_PENDING} packets per "
                             f"queue (64 KiB of memory each)")
        for name, val in (("flow_idle_timeout", flow_idle_timeout), ("decision_timeout", decision_timeout)):
            if not isinstance(val, (int, float)) or isinstance(val, bool) or not 0.001 <= val <= 86400:
                raise ValueError(f"{name}={val!r}: expected seconds from 0.001 to 86400")
        if decision_timeout >= flow_idle_timeout:
            # a verdict that came later would find its flow evicted as idle
            raise ValueError(f"decision_timeout={decision_timeout!r}: must be shorter than "
                             f"flow_idle_timeout={flow_idle_timeout!r}")
        if default_verdict not in (Verdict.FORWARD, Verdict.DROP):
            raise ValueError(f"default_verdict={default_verdict!r}: expected Verdict.FORWARD (fail-open) "
                             f"or Verdict.DROP (fail-closed)")
        if stats_interval is not None and not (isinstance(stats_interval, (int, float)) and stats_interval > 0):
            raise ValueError(f"stats_interval={stats_interval!r}: expected seconds > 0 or None")
        self.device = device
        self.endpoint = endpoint
        self.batch = batch
        self._ctl_cfg = {
            "enabled": int(on_flow is not None), "table_size": flow_table_size,
            "idle_ns": int(flow_idle_timeout * 1e9), "decision_ns": int(decision_timeout * 1e9),
            "default_verdict": default_verdict._code()[0], "pending_limit": pending_limit,
            "punt_ring": punt_ring,
        }
        self._control = Control(self, on_flow, on_packet, on_event, default_verdict, stats_interval, on_punt)
        self._wants_control = any(x is not None for x in (on_flow, on_packet, on_event, stats_interval,
                                                          transform))
        self._peer_lock = threading.Lock()   # one peer change at a time, each waited for
        self._run: Optional[_Run] = None
        self._start_lock = threading.RLock()
        self._stop_requested = False
        self._last_stats: List[dict] = []
        self._inject_lock = threading.Lock()
        self._injected = {"to_endpoint": 0, "to_device": 0}   # packets Python sent (inject)

    def __repr__(self) -> str:
        return f"<Pump {self.device.name} <-> {self.endpoint!r} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self._run is not None

    def _devices(self) -> List[Device]:
        return [d for d in (self.device, self.endpoint) if isinstance(d, Device)]

    def start(self) -> "Pump":
        with self._start_lock:
            if self._run is not None:
                raise RuntimeError("the pump is already running")
            for dev in self._devices():
                if dev.closed:
                    raise ValueError(f"{'device' if dev is self.device else 'endpoint'}: "
                                     f"{dev.name} is closed")
            self._stop_requested = False
            core = _core.CorePump()
            ep = self.endpoint
            fds = self.device.fds
            netns_fd = -1
            ctl = dict(self._ctl_cfg, events=int(self._wants_control or self._control.has_streams()))
            try:
                if isinstance(ep, Device):
                    core.start(_core.KIND_TUN, self.batch, fds, _fmt(self.device), ep.fds, _fmt(ep), ctl=ctl,
                               transform=self._transform)
                else:
                    cfg = ep.sock_cfg(len(fds))
                    if ep.netns:
                        netns_fd = _core.netns_open(ep.netns)
                        cfg["netns_fd"] = netns_fd
                    kind = _core.KIND_UDP if isinstance(ep, UDPEndpoint) else _core.KIND_TCP
                    core.start(kind, self.batch, fds, _fmt(self.device), sock=cfg, ctl=ctl,
                               transform=self._transform)
            except OSError as exc:
                raise PumpError(exc.errno, f"starting the pump: {exc.strerror} "
                                           f"(endpoint {ep!r})") from None
            finally:
                if netns_fd >= 0:
                    os.close(netns_fd)
            run = _Run(core)
            for dev in self._devices():
                dev._add_user(self)   # Device.close() stops this pump before closing its fds
            self._run = run   # before the first callback can run
            if ctl["events"]:
                self._control.start(core, run)
        if self._stop_requested:   # stop() ran (a signal handler) while we were starting
            self.stop()
        return self

    def stop(self) -> None:
        """Stop the workers (within a second even under load), join them and
        close the sockets the pump opened. When it returns the workers are
        gone and no callback runs any more (a callback still running after
        STOP_CALLBACK_WAIT seconds is logged and left to finish on its own).

        Safe to call more than once, at the same time from several threads,
        from a signal handler (also when a second signal interrupts the first
        handler's stop()), from a callback, or while another thread is in
        stats(): it never waits on a lock another pump call might hold."""
        self._stop_requested = True
        run = self._run
        if run is None:
            return
        me = (object(), threading.get_ident())
        run.stoppers.append(me)
        first = run.stoppers[0]
        if first is not me:
            if first[1] == me[1] or self._control.is_control_thread():
                # This thread's own stop() was interrupted (by a signal
                # handler), or a callback stops while another thread waits
                # for the callback to return: make sure the workers are gone
                # when we return (Device.close() relies on it) and let the
                # first stop() finish the rest.
                tok = run.enter()
                if tok is not None:
                    try:
                        run.stop_workers()
                    finally:
                        run.leave(tok)
            else:
                run.stopped.wait()   # another thread is stopping: return once it is done
            return
        tok = run.enter()
        assert tok is not None
        try:
            try:
                self._control.stop(STOP_CALLBACK_WAIT)   # no new callbacks; joins the control thread
            finally:
                run.stop_workers()
                self._last_stats = run.core.stats()
                self._run = None
                for dev in self._devices():
                    dev._remove_user(self)
        finally:
            run.leave(tok)
            run.retire()   # frees the core now, or when its last user leaves
            run.stopped.set()

    def run(self) -> None:
        """Start if needed and block until stop() or a worker error."""
        if self._run is None:
            self.start()
        run, tok = self._use()
        if run is None:
            return   # stopped while starting
        try:
            while not self._stop_requested and self._run is run:
                if run.core.wait(200):
                    err = run.core.error()
                    if err is not None:
                        raise self._worker_error(err)
        finally:
            run.leave(tok)
            self.stop()

    def _worker_error(self, err: tuple) -> PumpError:
        worker, code, where = err
        if code == errno.EBADFD and "device" in where:
            # A TUN/TAP fd whose device went away (ip link del, or its
            # namespace was torn down) answers EBADFD from then on.
            dev = self.endpoint if (isinstance(self.endpoint, Device) and
                                    ("peer" in where or "endpoint" in where)) else self.device
            return PumpError(code, f"worker {worker} ({where}): device {dev.name!r} deleted")
        return PumpError(code, f"worker {worker} ({where}): {os.strerror(code)}")

    def _use(self) -> Tuple[Optional[_Run], Optional[object]]:
        run = self._run
        if run is None:
            return None, None
        tok = run.enter()
        return (run, tok) if tok is not None else (None, None)

    def error(self) -> Optional[PumpError]:
        """The first worker error while running, or None."""
        run, tok = self._use()
        if run is None:
            return None
        try:
            err = run.core.error()
        finally:
            run.leave(tok)
        return None if err is None else self._worker_error(err)

    @overload
    def stats(self, per_queue: Literal[False] = ...) -> Stats: ...

    @overload
    def stats(self, per_queue: Literal[True]) -> List[Stats]: ...

    def stats(self, per_queue: bool = False) -> Union[Stats, List[Stats]]:
        """The counters (tunpump.stats.Stats), summed over the workers, or
        with `per_queue=True` a list with one per queue; read without
        stopping the workers. `.to_dict()` gives them as plain dicts (JSON).

        For each direction (`to_endpoint`, `to_device`): packets and bytes
        in and out, batches, read and write calls, offload counters, drops
        by reason; plus wakeups, TCP/UDP connection counters and the control
        plane's flow counters. "packets" are wire packets (segments, never
        super-packets) on every path. For each direction, packets_in ==
        packets_out + dropped + punted once the pump is stopped (while
        running, a batch may be in flight); `punted` counts packets handed
        to Python (PUNT verdicts, a transform's TO_PYTHON). `injected` (in
        the summed stats only, as Python injects per pump) counts packets
        Python sent with inject(); they are not part of packets_in /
        packets_out. Before the first start every counter is 0; after a
        stop, the last run's final counters."""
        run, tok = self._use()
        if run is None:
            per = self._last_stats
        else:
            try:
                per = run.core.stats()
            finally:
                run.leave(tok)
        if per_queue:
            if not per:
                return [Stats.zero() for _ in range(self.device.queues or 1)]
            return [Stats.from_dict(s) for s in per]
        if not per:
            total = Stats.zero(injected=True).to_dict()
        else:
            total = _stats.total(per)
        with self._inject_lock:
            for direction, n in self._injected.items():
                total[direction]["injected"] = n
        return Stats.from_dict(total)

    def inject(self, packet: bytes, to: Union[str, Device, UDPEndpoint, TCPEndpoint] = "device", *,
               queue: int = 0, peer: int = 0, address: Optional[Tuple[str, int]] = None,
               through_transform: bool = False, prefix: bool = False) -> None:
        """Send a packet built in Python: into the device (`to="device"` or the
        device) or out of the endpoint
        (`to="endpoint"`: a relay's other device, or through queue `queue`'s
        UDP socket to peer `peer`, or to `address=(host, port)`, such as the
        source of a punted handshake message). Injected packets do not pass
        through the transform: they leave exactly as given; unless
        `through_transform=True` (to="endpoint" only): then `packet` is a
        device packet (an IP packet, or a frame for TAP) that queue `queue`'s
        worker sends through the transform as if the device had sent it
        (Python's own data, a keepalive: it may be empty, for the transform
        to read as it likes), counted in packets_in too, past the verdicts; BlockingIOError when that worker's 64-packet ring is
        full. Each injected packet is counted in stats() as `injected` of
        its direction (to_device / to_endpoint). A TCP stream's framing
        belongs to its worker, so injecting into a TCP endpoint is refused
        (through the transform it is accepted).

        `prefix` says what `packet` is for a device, as in Device.read() and
        write(): False (the default) a bare IP packet (TUN) or Ethernet frame
        (TAP), before which the device's plain PI / vnet_hdr prefix is put
        (tunpump.prefix.build: PI with the packet's EtherType, a vnet_hdr
        asking for nothing); True, a frame that already starts with the
        device's prefix (such as one Device.read() returned with its default
        prefix=True), written as it is. Datagrams and packets for the
        transform have no prefix: prefix=True is refused there."""
        check_prefix_flag(prefix)
        data = bytes(packet)
        if not data and not through_transform:
            raise ValueError("packet: empty (only through_transform=True takes an empty packet: the "
                             "transform says what it means, such as a keepalive)")
        target: Endpoint
        if to == "device" or to is self.device:
            target = self.device
        elif to == "endpoint" or to is self.endpoint:
            target = self.endpoint
        else:
            raise ValueError(f"to={to!r}: expected 'device', 'endpoint', the pump's device or its endpoint")
        if address is not None and not isinstance(target, UDPEndpoint):
            raise ValueError(f"address={address!r}: only for to='endpoint' with a UDP endpoint")
        if prefix and not isinstance(target, Device):
            raise ValueError("prefix=True: only for a device (datagrams have no PI / vnet_hdr prefix)")
        if through_transform:
            if prefix:
                raise ValueError("prefix=True: the transform takes bare device packets (prefix=False)")
            self._inject_through_transform(data, target, queue, peer, address)
            return
        if isinstance(target, Device):
            if isinstance(queue, bool) or not isinstance(queue, int) or not 0 <= queue < target.queues:
                raise ValueError(f"queue={queue!r}: expected 0..{target.queues - 1}")
            if prefix and len(data) <= target.prefix_size:
                raise ValueError(f"packet: {len(data)} bytes with prefix=True, but {target.name}'s prefix "
                                 f"alone is {target.prefix_size} bytes")
            target.write(data, queue, prefix=prefix)   # prefix=False: tunpump.prefix.build, the one builder
            self._count_injected("to_device" if target is self.device else "to_endpoint")
            return
        if isinstance(target, TCPEndpoint):
            raise ValueError("to='endpoint': injecting into a TCP stream is not supported "
                             "(its framing belongs to the worker); inject into the device instead")
        if not 0 <= queue < self.device.queues:
            raise ValueError(f"queue={queue!r}: expected 0..{self.device.queues - 1}")
        if address is not None:
            family, raw, port = _inet(address, target)
            self._with_core(lambda core: core.inject_udp_addr(queue, family, raw, port, data))
        else:
            self._check_peer_arg(queue, peer)
            self._with_core(lambda core: core.inject_udp(queue, peer, data))
        self._count_injected("to_endpoint")

    def _inject_through_transform(self, data: bytes, target: Any, queue: int, peer: int,
                                  address: Any) -> None:
        if self._transform is None:
            raise ValueError("through_transform=True: the pump has no transform")
        if target is self.device or address is not None:
            raise ValueError("through_transform=True: only to='endpoint' with a peer index (no address)")
        if len(data) > 65535:
            raise ValueError(f"packet: {len(data)} bytes, at most 65535")
        if not 0 <= queue < self.device.queues:
            raise ValueError(f"queue={queue!r}: expected 0..{self.device.queues - 1}")
        self._check_peer_arg(queue, peer)
        self._with_core(lambda core: core.inject_transform(queue, peer, data))
        self._count_injected("to_endpoint")

    def _check_peer_arg(self, queue: int, peer: Any) -> None:
        """`peer` must name a peer queue `queue` has now (ValueError otherwise)."""
        if isinstance(peer, bool) or not isinstance(peer, int) or not 0 <= peer < _core.MAX_PEERS:
            raise ValueError(f"peer={peer!r}: expected a peer index from 0 to {_core.MAX_PEERS - 1}")
        if not self._has_peer(queue, peer):
            raise ValueError(f"peer={peer!r}: queue {queue} has no peer {peer} (peers: {self._peer_list(queue)})")

    def _has_peer(self, queue: int, peer: int) -> bool:
        """Whether queue `queue` has peer `peer` now (a device or TCP endpoint: peer 0 only)."""
        if not isinstance(self.endpoint, UDPEndpoint):
            return peer == 0
        return self._with_core(lambda core: core.get_peer(queue, peer)) is not None

    def _peer_list(self, queue: int) -> List[int]:
        if not isinstance(self.endpoint, UDPEndpoint):
            return [0]
        return sorted(self.peers(queue))

    # ---- UDP peers -----------------------------------------------------------------
    def _udp_endpoint(self, what: str) -> UDPEndpoint:
        ep = self.endpoint
        if not isinstance(ep, UDPEndpoint):
            raise ValueError(f"{what}: the endpoint is {ep!r}; peers can change only on a UDPEndpoint")
        if ep.learn_peer:
            raise ValueError(f"{what}: the endpoint learns its peer (learn_peer=True); for peers set from "
                             f"Python use UDPEndpoint(local, remote=[...]) (an empty list is fine)")
        return ep

    @staticmethod
    def _peer_index(index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < _core.MAX_PEERS:
            raise ValueError(f"index={index!r}: expected a peer index from 0 to {_core.MAX_PEERS - 1}")
        return index

    def set_peer(self, index: int, address: Address) -> None:
        """Make UDP peer `index` (0 to MAX_PEERS - 1) `address` (`(host, port)`
        or "host:port", the socket's IP version), adding it if it was not
        there, while the pump runs. Like `UDPEndpoint(remote=[...])`, the
        port is queue 0's: queue i sends to port + i. Each worker applies the
        change between two batches; this returns once every worker has, so
        a packet routed to the peer (a `Verdict.route(index)`, a transform
        choosing it, `inject(peer=index)`) goes to the new address from then
        on, and datagrams from it are accepted as that peer's. Raises
        RuntimeError when the pump is not running, ValueError for a bad
        argument, a TCP / device endpoint, or one that learns its peer;
        TimeoutError if a worker has not applied the change within
        PEER_APPLY_WAIT (5) seconds (it still applies it when it gets
        there)."""
        ep = self._udp_endpoint("set_peer")
        index = self._peer_index(index)
        host, port = parse_address(address, "address")
        family, raw, port = _inet((host, port), ep)
        if port + self.device.queues - 1 > 65535:
            raise ValueError(f"address={address!r}: ports {port}..{port + self.device.queues - 1} "
                             f"(one per queue) run past 65535")
        self._change_peer("set_peer", lambda core: core.set_peer(index, family, raw, port))

    def remove_peer(self, index: int) -> None:
        """Remove UDP peer `index` while the pump runs: packets routed to it
        are dropped (counted as `no_peer`), datagrams from its address as
        `unknown_peer` (or, for a transform with TUNPUMP_UNKNOWN_SOURCES,
        reach it as a stranger). Returns once every worker applied it.
        ValueError if no queue has that peer."""
        ep = self._udp_endpoint("remove_peer")
        index = self._peer_index(index)
        if not any(self._has_peer(q, index) for q in range(self.device.queues)):
            raise ValueError(f"index={index!r}: there is no peer {index} (peers: {self._peer_list(0)})")
        family = socket.AF_INET6 if ":" in ep.local[0] else socket.AF_INET
        self._change_peer("remove_peer", lambda core: core.set_peer(index, family, b"", 0))

    def _change_peer(self, what: str, post: Callable[[Any], None]) -> None:
        with self._peer_lock:
            self._with_core(post)
            deadline = time.monotonic() + PEER_APPLY_WAIT
            while self._with_core(lambda core: core.peers_pending()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what}: the workers did not apply the change within "
                                       f"{PEER_APPLY_WAIT} s")
                time.sleep(0.0005)

    def peers(self, queue: int = 0) -> Dict[int, Tuple[str, int]]:
        """The UDP peers queue `queue`'s worker uses now, `{index: (host,
        port)}`: as set (queue i: the given port + i), learned, or roamed to
        (a roam moves a peer on the queue that received the datagram only).
        RuntimeError when the pump is not running."""
        if not isinstance(self.endpoint, UDPEndpoint):
            raise ValueError(f"peers: the endpoint is {self.endpoint!r}; only a UDPEndpoint has peers")
        if isinstance(queue, bool) or not isinstance(queue, int) or not 0 <= queue < self.device.queues:
            raise ValueError(f"queue={queue!r}: expected 0..{self.device.queues - 1}")

        def read(core: Any) -> Dict[int, Tuple[str, int]]:
            out = {}
            for i in range(_core.MAX_PEERS):
                got = core.get_peer(queue, i)
                if got is not None:
                    family, raw, port = got
                    out[i] = (host_of(family, raw), port)
            return out
        return self._with_core(read)

    def local_address(self, queue: int = 0) -> Tuple[str, int]:
        """`(host, port)` queue `queue`'s UDP socket is bound to: with
        `UDPEndpoint(("0.0.0.0", 0), ...)`, the port the kernel chose (each
        queue's socket gets its own; with a fixed port P, queue i has P + i).
        RuntimeError when the pump is not running."""
        if not isinstance(self.endpoint, UDPEndpoint):
            raise ValueError(f"local_address: the endpoint is {self.endpoint!r}; only for a UDPEndpoint")
        if isinstance(queue, bool) or not isinstance(queue, int) or not 0 <= queue < self.device.queues:
            raise ValueError(f"queue={queue!r}: expected 0..{self.device.queues - 1}")
        family, raw, port = self._with_core(lambda core: core.local_addr(queue))
        return host_of(family, raw), port

    def _count_injected(self, direction: str) -> None:
        with self._inject_lock:
            self._injected[direction] += 1

    def transform_control(self, message: bytes, queue: Optional[int] = None) -> None:
        """Hand the transform's control() `message` (at most
        tunpump.transforms.CONTROL_MAX bytes) on worker `queue`, or on every
        worker (None). Each worker runs it on its own thread between two
        batches, in the order sent, so no batch sees a half-made change (a
        rekey). Returns once posted, not once applied. Raises BlockingIOError
        when a worker's 64-message ring is full (with queue=None, workers
        before it got the message: send per-queue messages to retry)."""
        data = bytes(message)
        if self._transform is None:
            raise RuntimeError("transform_control: the pump has no transform")
        if len(data) > _transforms.CONTROL_MAX:
            raise ValueError(f"message: {len(data)} bytes, at most {_transforms.CONTROL_MAX}")
        if queue is not None and (isinstance(queue, bool) or not isinstance(queue, int) or
                                  not 0 <= queue < self.device.queues):
            raise ValueError(f"queue={queue!r}: expected None (every queue) or 0..{self.device.queues - 1}")
        try:
            self._with_core(lambda core: core.transform_control(-1 if queue is None else queue, data))
        except OSError as exc:
            if exc.errno == errno.ENOTSUP:
                raise RuntimeError("transform_control: this transform has no control function") from None
            raise

    def _with_core(self, call: Callable[[Any], Any]) -> Any:
        """Run call(core) while holding the running pump (its core is freed
        only once the last user leaves); RuntimeError when it is not running."""
        run, tok = self._use()
        if run is None:
            raise RuntimeError("the pump is not running")
        try:
            return call(run.core)
        finally:
            run.leave(tok)

    def events(self) -> EventStream:
        """Events as an async iterator, for asyncio code:

            async for event in pump.events(): ...

        The iterator receives events from the moment it is created, so make
        it before start() (or pass on_event) for the workers to post events.
        Events wait in the iterator until read; close it (`await it.aclose()`,
        or drop it) to stop receiving."""
        return self._control.stream()

    @property
    def callback_errors(self) -> int:
        """How many times a callback raised (each was logged)."""
        return self._control.callback_errors

    def __enter__(self) -> "Pump":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:
            pass
