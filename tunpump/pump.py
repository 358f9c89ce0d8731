"""Pump: forwards between a device and an endpoint on C worker threads."""
from __future__ import annotations

import errno
import os
import threading
import time
import asyncio
import struct
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _core
from .control import Control, Event, EventStream, Flow, Verdict
from .device import Device
from .endpoint import TCPEndpoint, UDPEndpoint
from .errors import PumpError

Endpoint = Union[Device, UDPEndpoint, TCPEndpoint]
DEFAULT_BATCH = 64
STOP_CALLBACK_WAIT = 2.0   # seconds stop() waits for a running callback to return


def _fmt(dev: Device) -> tuple:
    return (int(dev.pi), dev.vnet_hdr_size, int(dev.mode == "tap"), dev._offload_bits)


def _sum(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in a.items():
        out[k] = _sum(v, b[k]) if isinstance(v, dict) else v + b[k]
    return out


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

    - `on_flow(flow) -> Verdict | None` for the first packet of each flow the
      device sends (device -> endpoint direction); None means the default.
    - `on_packet(packet: memoryview, flow)` for packets of PUNT flows; the
      memoryview is valid during the call only.
    - `on_event(event)`: PeerUp, PeerDown, WorkerError, FlowEvicted, StatsTick.
    - `flow_table_size` per queue (LRU eviction when full), `flow_idle_timeout`
      seconds, `decision_timeout` seconds after which `default_verdict`
      (FORWARD: fail-open, DROP: fail-closed) applies, `pending_limit` packets
      per queue held while their flow waits for a verdict.
    """

    def __init__(self, device: Device, endpoint: Endpoint, *, batch: int = DEFAULT_BATCH,
                 on_flow: Optional[Callable[[Flow], Optional[Verdict]]] = None,
                 on_packet: Optional[Callable[[memoryview, Flow], None]] = None,
                 on_event: Optional[Callable[[Event], None]] = None,
                 flow_table_size: int = 65536, flow_idle_timeout: float = 60.0,
                 decision_timeout: float = 1.0, default_verdict: Verdict = Verdict.FORWARD,
                 pending_limit: int = 256, stats_interval: Optional[float] = None) -> None:
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
        for name, cb in (("on_flow", on_flow), ("on_packet", on_packet), ("on_event", on_event)):
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
        }
        self._control = Control(self, on_flow, on_packet, on_event, default_verdict, stats_interval)
        self._wants_control = any(x is not None for x in (on_flow, on_packet, on_event, stats_interval))
        self._npeers = len(endpoint.peers) if isinstance(endpoint, UDPEndpoint) else 1
        self._run: Optional[_Run] = None
        self._start_lock = threading.RLock()
        self._stop_requested = False
        self._last_stats: List[dict] = []

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
                    core.start(_core.KIND_TUN, self.batch, fds, _fmt(self.device), ep.fds, _fmt(ep), ctl=ctl)
                else:
                    cfg = ep.sock_cfg(len(fds))
                    if ep.netns:
                        netns_fd = _core.netns_open(ep.netns)
                        cfg["netns_fd"] = netns_fd
                    kind = _core.KIND_UDP if isinstance(ep, UDPEndpoint) else _core.KIND_TCP
                    core.start(kind, self.batch, fds, _fmt(self.device), sock=cfg, ctl=ctl)
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

    def stats(self, per_queue: bool = False) -> Any:
        """Counters summed over workers (or a list per queue): for each
        direction (`to_endpoint`, `to_device`) packets and bytes in and out,
        batches, read and write calls, drops by reason; plus wakeups and, for
        TCP/UDP, connects, disconnects, protocol errors and learned peers.
        For each direction, packets_in == packets_out + sum(drops) once the
        pump is stopped (while running, a batch may be in flight), plus, for
        `to_endpoint`, the packets punted to Python (`flows.punted`)."""
        run, tok = self._use()
        if run is None:
            per = self._last_stats
        else:
            try:
                per = run.core.stats()
            finally:
                run.leave(tok)
        if per_queue:
            return per
        if not per:
            return {}
        total = per[0]
        for s in per[1:]:
            total = _sum(total, s)
        return total

    def inject(self, packet: bytes, to: Union[str, Device, UDPEndpoint, TCPEndpoint] = "device", *,
               queue: int = 0, peer: int = 0) -> None:
        """Send a packet built in Python: into the device (`to="device"` or the
        device; PI and vnet_hdr prefixes are added here) or out of the endpoint
        (`to="endpoint"`: a relay's other device, or UDP peer `peer` through
        queue `queue`'s socket). A TCP stream's framing belongs to its worker,
        so injecting into a TCP endpoint is refused."""
        data = bytes(packet)
        if not data:
            raise ValueError("packet: empty")
        target: Endpoint
        if to == "device" or to is self.device:
            target = self.device
        elif to == "endpoint" or to is self.endpoint:
            target = self.endpoint
        else:
            raise ValueError(f"to={to!r}: expected 'device', 'endpoint', the pump's device or its endpoint")
        if isinstance(target, Device):
            if not 0 <= queue < target.queues:
                raise ValueError(f"queue={queue!r}: expected 0..{target.queues - 1}")
            prefix = b""
            if target.pi:
                if target.mode == "tap":
                    proto = data[12:14] if len(data) >= 14 else b"\0\0"
                else:
                    proto = b"\x86\xdd" if data[0] >> 4 == 6 else b"\x08\x00"
                prefix += b"\0\0" + proto
            prefix += bytes(target.vnet_hdr_size)
            target.write(prefix + data, queue)
            return
        if isinstance(target, TCPEndpoint):
            raise ValueError("to='endpoint': injecting into a TCP stream is not supported "
                             "(its framing belongs to the worker); inject into the device instead")
        if not 0 <= queue < self.device.queues:
            raise ValueError(f"queue={queue!r}: expected 0..{self.device.queues - 1}")
        if not 0 <= peer < self._npeers:
            raise ValueError(f"peer={peer!r}: the endpoint has {self._npeers} peer(s)")
        run, tok = self._use()
        if run is None:
            raise RuntimeError("the pump is not running")
        try:
            run.core.inject_udp(queue, peer, data)
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
