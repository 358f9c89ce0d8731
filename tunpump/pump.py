"""Pump: forwards between a device and an endpoint on C worker threads."""
from __future__ import annotations

import errno as _errno
import os
import socket
import threading
import time
import asyncio
import struct
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple, Union

from . import _core
from . import transforms as _transforms
from .control import Control, Event, Flow, Packet, Verdict
from .device import Device
from .endpoint import TCPEndpoint, UDPEndpoint
from .errors import PumpError

Endpoint = Union[Device, UDPEndpoint, TCPEndpoint]
DEFAULT_BATCH = 64


def _fmt(dev: Device) -> tuple:
    return (int(dev.pi), dev.vnet_hdr_size, int(dev.mode == "tap"), dev._offload_bits)


def _inet(address: Any, ep: UDPEndpoint) -> Tuple[int, bytes, int]:
    """(family, raw address, port) of a (host, port) the endpoint's socket can reach."""
    try:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        raw = socket.inet_pton(family, host)
    except (TypeError, ValueError, OSError):
        raise ValueError(f"address={address!r}: expected (IPv4 or IPv6 address, port)") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"address={address!r}: port must be 1..65535")
    ep_family = socket.AF_INET6 if ":" in ep.local[0] else socket.AF_INET
    if family != ep_family:
        raise ValueError(f"address={address!r}: the endpoint's socket is "
                         f"{'IPv6' if ep_family == socket.AF_INET6 else 'IPv4'}")
    return family, raw, port


def _sum(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in a.items():
        out[k] = _sum(v, b[k]) if isinstance(v, dict) else v + b[k]
    return out


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

    Transform (docs/transforms.md): `transform=` a capsule named
    "tunpump.transform.v1" or an object with `__tunpump_transform__()` (such
    as `tunpump.transforms.Null()`) runs C code on every packet in both
    directions, on the workers. Packets it sends to Python arrive in batches
    at `on_punt(list[Packet])`; `punt_ring` packets per queue (a power of
    two, 64 KiB each, default 64) wait for Python, the rest are dropped as
    `punt_full`. With a transform the pump fails closed: `default_verdict`
    defaults to DROP and FORWARD is refused, so nothing leaves untransformed
    because Python was slow. `transform_control(msg)` hands the transform's
    workers a message (new keys) between batches.
    """

    def __init__(self, device: Device, endpoint: Endpoint, *, batch: int = DEFAULT_BATCH,
                 on_flow: Optional[Callable[[Flow], Optional[Verdict]]] = None,
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
            if endpoint.closed:
                raise ValueError("endpoint: the device is closed")
            if endpoint.queues != device.queues:
                raise ValueError(f"endpoint: {endpoint.name} has {endpoint.queues} queues and "
                                 f"{device.name} {device.queues}; a relay pairs queue i with queue i")
        self._transform = None if transform is None else _transforms.as_capsule(transform)
        if default_verdict is None:
            default_verdict = Verdict.FORWARD if transform is None else Verdict.DROP
        elif transform is not None and default_verdict != Verdict.DROP:
            raise ValueError(f"default_verdict={default_verdict!r}: with a transform the pump fails closed "
                             f"(Verdict.DROP), so no packet leaves untransformed because Python was slow")
        if isinstance(punt_ring, bool) or not isinstance(punt_ring, int) or \
                not 1 <= punt_ring <= _core.MAX_PUNT_RING or punt_ring & (punt_ring - 1):
            raise ValueError(f"punt_ring={punt_ring!r}: expected a power of two from 1 to {_core.MAX_PUNT_RING} "
                             f"packets per queue (64 KiB of memory each)")
        if on_punt is not None and transform is None:
            raise ValueError("on_punt: only a transform sends packets to on_punt (PUNT verdicts go to on_packet)")
        for name, cb in (("on_flow", on_flow), ("on_packet", on_packet), ("on_event", on_event),
                         ("on_punt", on_punt)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{name}={cb!r}: expected a callable")
        if isinstance(flow_table_size, bool) or not isinstance(flow_table_size, int) or \
                not 1 <= flow_table_size <= 1 << 24:
            raise ValueError(f"flow_table_size={flow_table_size!r}: expected 1 to {1 << 24} flows per queue")
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
        self._npeers = len(endpoint.peers) if isinstance(endpoint, UDPEndpoint) else 1
        self._core: Optional[_core.CorePump] = None
        self._lock = threading.Lock()
        self._stop_requested = False
        self._last_stats: List[dict] = []
        self._inject_lock = threading.Lock()
        self._injected = {"to_endpoint": 0, "to_device": 0}   # packets Python sent (inject)

    def __repr__(self) -> str:
        return f"<Pump {self.device.name} <-> {self.endpoint!r} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        return self._core is not None

    def start(self) -> "Pump":
        with self._lock:
            if self._core is not None:
                raise RuntimeError("the pump is already running")
            if self.device.closed:
                raise ValueError("device: it is closed")
            core = _core.CorePump()
            ep = self.endpoint
            fds = self.device.fds
            netns_fd = -1
            ctl = dict(self._ctl_cfg, events=int(self._wants_control or bool(self._control.queues)))
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
            self._core = core
            self._stop_requested = False
            if ctl["events"]:
                self._control.start(core)
            return self

    def stop(self) -> None:
        """Stop the workers (within a second even under load), join them and
        close the sockets the pump opened. Safe to call more than once, from
        another thread, or from a signal handler while run() waits."""
        self._stop_requested = True
        if self._control.is_control_thread():
            # Called from a callback: the control thread cannot join itself or
            # free the rings it is reading. Let another thread do the stop.
            self._control.request_stop()
            threading.Thread(target=self.stop, name="tunpump-stop", daemon=True).start()
            return
        with self._lock:
            core, self._core = self._core, None
            if core is None:
                return
            self._control.stop()   # before the workers go: it reads their rings
            core.stop()
            self._last_stats = core.stats()
            core.close()

    def run(self) -> None:
        """Start if needed and block until stop() or a worker error."""
        if self._core is None:
            self.start()
        core: Any = self._core
        assert core is not None
        try:
            while not self._stop_requested:
                if not self._is_current(core):
                    break   # stopped (and maybe restarted) by someone else
                if core.wait(200):
                    err = core.error()
                    if err is not None:
                        worker, code, where = err
                        raise PumpError(code, f"worker {worker} ({where}): {os.strerror(code)}")
        finally:
            self.stop()

    def _is_current(self, core: Any) -> bool:
        return self._core is core

    def error(self) -> Optional[PumpError]:
        """The first worker error while running, or None."""
        core = self._core
        err = core.error() if core is not None else None
        if err is None:
            return None
        worker, code, where = err
        return PumpError(code, f"worker {worker} ({where}): {os.strerror(code)}")

    def stats(self, per_queue: bool = False) -> Any:
        """Counters summed over workers (or a list per queue): for each
        direction (`to_endpoint`, `to_device`) packets and bytes in and out,
        batches, read and write calls, drops by reason; plus wakeups and, for
        TCP/UDP, connects, disconnects, protocol errors and learned peers.
        For each direction, packets_in == packets_out + sum(drops) + punted
        once the pump is stopped (while running, a batch may be in flight);
        `punted` counts packets handed to Python (PUNT verdicts, a
        transform's TO_PYTHON). `injected` (in the summed stats only, as
        Python injects per pump) counts packets Python sent with inject();
        they are not part of packets_in / packets_out."""
        core = self._core
        per = core.stats() if core is not None else self._last_stats
        if per_queue:
            return per
        if not per:
            return {}
        total = per[0]
        for s in per[1:]:
            total = _sum(total, s)
        with self._inject_lock:
            for direction, n in self._injected.items():
                total[direction]["injected"] = n
        return total

    def inject(self, packet: bytes, to: Union[str, Device, UDPEndpoint, TCPEndpoint] = "device", *,
               queue: int = 0, peer: int = 0, address: Optional[Tuple[str, int]] = None,
               through_transform: bool = False) -> None:
        """Send a packet built in Python: into the device (`to="device"` or the
        device; PI and vnet_hdr prefixes are added here) or out of the endpoint
        (`to="endpoint"`: a relay's other device, or through queue `queue`'s
        UDP socket to peer `peer`, or to `address=(host, port)`, such as the
        source of a punted handshake message). Injected packets do not pass
        through the transform: they leave exactly as given; unless
        `through_transform=True` (to="endpoint" only): then `packet` is a
        device packet (an IP packet, or a frame for TAP) that queue `queue`'s
        worker sends through the transform as if the device had sent it
        (Python's own data, a keepalive), counted in packets_in too, past
        the verdicts; BlockingIOError when that worker's 64-packet ring is
        full. Each injected packet is counted in stats() as `injected` of
        its direction (to_device / to_endpoint). A TCP stream's framing
        belongs to its worker, so injecting into a TCP endpoint is refused
        (through the transform it is accepted)."""
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
        if address is not None and not isinstance(target, UDPEndpoint):
            raise ValueError(f"address={address!r}: only for to='endpoint' with a UDP endpoint")
        if through_transform:
            self._inject_through_transform(data, target, queue, peer, address)
            return
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
            self._count_injected("to_device" if target is self.device else "to_endpoint")
            return
        if isinstance(target, TCPEndpoint):
            raise ValueError("to='endpoint': injecting into a TCP stream is not supported "
                             "(its framing belongs to the worker); inject into the device instead")
        core = self._core
        if core is None:
            raise RuntimeError("the pump is not running")
        if not 0 <= queue < self.device.queues:
            raise ValueError(f"queue={queue!r}: expected 0..{self.device.queues - 1}")
        if address is not None:
            family, raw, port = _inet(address, target)
            core.inject_udp_addr(queue, family, raw, port, data)
        else:
            if not 0 <= peer < self._npeers:
                raise ValueError(f"peer={peer!r}: the endpoint has {self._npeers} peer(s)")
            core.inject_udp(queue, peer, data)
        self._count_injected("to_endpoint")

    def _inject_through_transform(self, data: bytes, target: Any, queue: int, peer: int,
                                  address: Any) -> None:
        if self._transform is None:
            raise ValueError("through_transform=True: the pump has no transform")
        if target is self.device or address is not None:
            raise ValueError("through_transform=True: only to='endpoint' with a peer index (no address)")
        if len(data) > 65535:
            raise ValueError(f"packet: {len(data)} bytes, at most 65535")
        core = self._core
        if core is None:
            raise RuntimeError("the pump is not running")
        if not 0 <= queue < self.device.queues:
            raise ValueError(f"queue={queue!r}: expected 0..{self.device.queues - 1}")
        if not 0 <= peer < self._npeers:
            raise ValueError(f"peer={peer!r}: the endpoint has {self._npeers} peer(s)")
        core.inject_transform(queue, peer, data)
        self._count_injected("to_endpoint")

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
        core = self._core
        if core is None:
            raise RuntimeError("the pump is not running")
        try:
            core.transform_control(-1 if queue is None else queue, data)
        except OSError as exc:
            if exc.errno == _errno.ENOTSUP:
                raise RuntimeError("transform_control: this transform has no control function") from None
            raise

    async def events(self) -> AsyncIterator[Event]:
        """Events as an async iterator, for asyncio code:

            async for event in pump.events(): ...

        Create it before start() (or pass on_event) so the workers post events."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        self._control.queues.append((loop, q))
        try:
            while True:
                yield await q.get()
        finally:
            try:
                self._control.queues.remove((loop, q))
            except ValueError:
                pass

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
