"""Pump: forwards between a device and an endpoint on C worker threads."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List, Optional, Union

from . import _core
from .device import Device
from .endpoint import TCPEndpoint, UDPEndpoint
from .errors import PumpError

Endpoint = Union[Device, UDPEndpoint, TCPEndpoint]
DEFAULT_BATCH = 64


def _fmt(dev: Device) -> tuple:
    return (int(dev.pi), dev.vnet_hdr_size, int(dev.mode == "tap"), dev._offload_bits)


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
    """

    def __init__(self, device: Device, endpoint: Endpoint, *, batch: int = DEFAULT_BATCH) -> None:
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
        self.device = device
        self.endpoint = endpoint
        self.batch = batch
        self._core: Optional[_core.CorePump] = None
        self._lock = threading.Lock()
        self._stop_requested = False
        self._last_stats: List[dict] = []

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
            try:
                if isinstance(ep, Device):
                    core.start(_core.KIND_TUN, self.batch, fds, _fmt(self.device), ep.fds, _fmt(ep))
                else:
                    cfg = ep.sock_cfg(len(fds))
                    if ep.netns:
                        netns_fd = _core.netns_open(ep.netns)
                        cfg["netns_fd"] = netns_fd
                    kind = _core.KIND_UDP if isinstance(ep, UDPEndpoint) else _core.KIND_TCP
                    core.start(kind, self.batch, fds, _fmt(self.device), sock=cfg)
            except OSError as exc:
                raise PumpError(exc.errno, f"starting the pump: {exc.strerror} "
                                           f"(endpoint {ep!r})") from None
            finally:
                if netns_fd >= 0:
                    os.close(netns_fd)
            self._core = core
            self._stop_requested = False
            return self

    def stop(self) -> None:
        """Stop the workers (within a second even under load), join them and
        close the sockets the pump opened. Safe to call more than once, from
        another thread, or from a signal handler while run() waits."""
        self._stop_requested = True
        with self._lock:
            core, self._core = self._core, None
            if core is None:
                return
            core.stop()
            self._last_stats = core.stats()
            core.close()

    def run(self) -> None:
        """Start if needed and block until stop() or a worker error."""
        if self._core is None:
            self.start()
        core = self._core
        try:
            while not self._stop_requested and core is self._core:
                if core.wait(200):
                    err = core.error()
                    if err is not None:
                        worker, code, where = err
                        raise PumpError(code, f"worker {worker} ({where}): {os.strerror(code)}")
        finally:
            self.stop()

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
        For each direction, packets_in == packets_out + sum(drops) once the
        pump is stopped (while running, a batch may be in flight)."""
        core = self._core
        per = core.stats() if core is not None else self._last_stats
        if per_queue:
            return per
        if not per:
            return {}
        total = per[0]
        for s in per[1:]:
            total = _sum(total, s)
        return total

    def __enter__(self) -> "Pump":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:
            pass
