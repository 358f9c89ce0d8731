"""What a running tunnel or relay does, for people: its pump's events and
counters turned into log lines (logger "tunpump"), a stats line, and one
snapshot that the status socket and the metrics endpoint both serve.

Nothing here is on the forwarding path: events arrive on the pump's control
thread and counters are read when asked (or every poll of the CLI loop)."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .control import FlowEvicted, PeerDown, PeerUp, StatsTick, WorkerError
from .stats import Stats

log = logging.getLogger("tunpump")

DIRECTIONS = ("to_endpoint", "to_device")


class RateLimit:
    """At most one message per `interval` seconds per key; says how many were
    held back when it lets the next one through."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: Dict[str, float] = {}
        self._held: Dict[str, int] = {}

    def __call__(self, key: str, level: int, msg: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        held = self._held.pop(key, 0)
        self._last[key] = now
        if held:
            msg += f" ({held} similar message(s) held back)"
        log.log(level, msg, *args)


def top_drops(drops: Dict[str, int], n: int = 3) -> List[Tuple[str, int]]:
    """The `n` largest non-zero drop reasons, largest first."""
    return sorted(((k, v) for k, v in drops.items() if v), key=lambda kv: (-kv[1], kv[0]))[:n]


def _drops(stats: Optional[Stats]) -> Dict[str, int]:
    return dict(stats.drops) if stats is not None else {}


def _diff(a: Dict[str, int], b: Dict[str, int]) -> Dict[str, int]:
    return {k: v - a.get(k, 0) for k, v in b.items()}


class Monitor:
    """Watches one pump: pass `monitor.on_event` as the pump's on_event and
    call `poll()` now and then (the CLI does, every 0.2 s)."""

    def __init__(self, pump, *, kind: str, name: str, offloads: Dict[str, List[str]],
                 config: Optional[Dict[str, Any]] = None) -> None:
        self.pump = pump
        self.kind = kind
        self.name = name
        self.offloads = offloads
        self.config = dict(config or {})
        self.started = time.time()
        self._t0 = time.monotonic()
        self.peers: Dict[Tuple[int, str, int], Dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._limit = RateLimit()
        self._last: Optional[Stats] = None

    # -- events (on the pump's control thread) ----------------------------------
    def on_event(self, ev: Any) -> None:
        if isinstance(ev, PeerUp):
            self._peer(ev.queue, ev.address, True)
        elif isinstance(ev, PeerDown):
            self._peer(ev.queue, ev.address, False)
        elif isinstance(ev, WorkerError):
            gone = " (the device is gone)" if ev.device_gone else ""
            self._limit(f"err{ev.queue}", logging.ERROR, "queue %d: worker error in %s: errno %d%s",
                        ev.queue, ev.where, ev.errno, gone)
        elif isinstance(ev, (FlowEvicted, StatsTick)):
            pass

    def _peer(self, queue: int, addr: Tuple[str, int], up: bool) -> None:
        now = time.time()
        with self._lock:
            known = [k for k, p in self.peers.items() if k[0] == queue and p["up"]]
            key = (queue, addr[0], addr[1])
            rec = self.peers.setdefault(key, {"queue": queue, "address": f"{addr[0]}:{addr[1]}",
                                              "up": False, "since": now, "ups": 0})
            was_up = rec["up"]
            rec["up"], rec["since"] = up, now
            if up:
                rec["ups"] += 1
        if up:
            relearned = [k for k in known if k != key]
            if relearned:
                old = relearned[0]
                with self._lock:
                    self.peers[old]["up"] = False
                self._limit(f"peer{queue}", logging.INFO, "queue %d: peer re-learned: %s:%d (was %s:%d)",
                            queue, addr[0], addr[1], old[1], old[2])
            elif rec["ups"] > 1:
                self._limit(f"peer{queue}", logging.INFO, "queue %d: peer %s:%d up again (reconnected)",
                            queue, addr[0], addr[1])
            else:
                log.info("queue %d: peer %s:%d up", queue, addr[0], addr[1])
        elif was_up:
            self._limit(f"down{queue}", logging.WARNING, "queue %d: peer %s:%d down%s", queue, addr[0],
                        addr[1], self._down_reason())

    def _down_reason(self) -> str:
        st = self.pump.stats()
        if st.protocol_errors:
            return f" ({st.protocol_errors} framing error(s) so far: a bad frame closes the connection)"
        return " (connection closed or refused; reconnecting)"

    # -- counters (the CLI's loop) -------------------------------------------------
    def poll(self) -> None:
        """Log what the counters say changed: UDP_SEGMENT fallbacks, drops."""
        cur = self.pump.stats()
        prev, self._last = self._last, cur
        if prev is None:
            return
        fb = sum(cur.direction(d).gso_fallbacks - prev.direction(d).gso_fallbacks for d in DIRECTIONS)
        if fb > 0:
            self._limit("gso_fallback", logging.WARNING,
                        "the kernel refused UDP_SEGMENT: %d batch(es) sent one datagram at a time", fb)
        new = {k: v for k, v in _diff(_drops(prev), _drops(cur)).items() if v}
        if new:
            self._limit("drops", logging.INFO, "drops: %s",
                        ", ".join(f"{k} {v}" for k, v in top_drops(new, 5)))

    def snapshot(self) -> Dict[str, Any]:
        """Everything `status` shows, JSON-ready."""
        per = self.pump.stats(per_queue=True)
        total = self.pump.stats()
        with self._lock:
            peers = [dict(p) for p in self.peers.values()]
        return {
            "name": self.name, "kind": self.kind, "device": self.pump.device.name,
            "endpoint": repr(self.pump.endpoint), "pid": os.getpid(),
            "started": self.started, "uptime": round(time.monotonic() - self._t0, 3),
            "offloads": self.offloads, "config": self.config,
            "total": total.to_dict(), "queues": [q.to_dict() for q in per], "drops": _drops(total),
            "peers": peers,
        }


def stats_line(prev: Optional[Stats], cur: Stats, secs: float) -> str:
    """Rates since `prev` (None: since the start) for each direction and the
    interval's drops by reason (the top three)."""
    parts = []
    for key, label in (("to_endpoint", "dev->ep"), ("to_device", "ep->dev")):
        a = prev.direction(key) if prev is not None else None
        b = cur.direction(key)
        pk = b.packets_out - (a.packets_out if a else 0)
        by = b.bytes_out - (a.bytes_out if a else 0)
        parts.append(f"{label} {pk / secs / 1e3:8.1f} kpps {by * 8 / secs / 1e9:7.3f} Gbit/s")
    d = _diff(_drops(prev), _drops(cur))
    total = sum(d.values())
    top = top_drops(d)
    detail = f" ({', '.join(f'{k} {v}' for k, v in top)})" if top else ""
    return " | ".join(parts) + f" | drops {total}{detail}"


def summary_line(total: Stats, secs: float) -> str:
    """The exit summary: packets and bytes per direction, drops by reason."""
    parts = []
    for key, label in (("to_endpoint", "dev->ep"), ("to_device", "ep->dev")):
        t = total.direction(key)
        parts.append(f"{label} {t.packets_out} packets {t.bytes_out} bytes")
    drops = _drops(total)
    top = top_drops(drops, 5)
    detail = f" ({', '.join(f'{k} {v}' for k, v in top)})" if top else ""
    return "total: " + " | ".join(parts) + f" | drops {sum(drops.values())}{detail} | {secs:.1f} s"
