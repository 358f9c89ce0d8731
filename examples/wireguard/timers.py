"""WireGuard's session timers (whitepaper section 6, wireguard-go's
device/timers.go and constants.go), as a pure decision function: given a
peer's state and the data path's counters at `now`, what to do.

The C data path records, per peer, when it last sent / received an
authenticated packet and since when data waits for an answer; the control
plane polls those and calls `PeerTimers.due()` every tick."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import List, Optional

INITIATE, KEEPALIVE, GIVE_UP, EXPIRE = "initiate", "keepalive", "give_up", "expire"


@dataclass
class Timers:
    """The protocol's constants (seconds / messages). Shorten them in tests."""
    rekey_after_messages: int = 2**60
    reject_after_messages: int = 2**64 - 2**13 - 1
    rekey_after_time: float = 120.0
    reject_after_time: float = 180.0
    rekey_attempt_time: float = 90.0
    rekey_timeout: float = 5.0
    rekey_jitter: float = 0.334
    keepalive_timeout: float = 10.0
    cookie_lifetime: float = 120.0
    initiation_rate: float = 0.02     # a peer's initiations closer than this are ignored (flood)

    def __post_init__(self) -> None:
        if not 0 < self.rekey_after_time < self.reject_after_time:
            raise ValueError(f"rekey_after_time={self.rekey_after_time}: must be > 0 and below "
                             f"reject_after_time={self.reject_after_time}")
        if not 0 < self.rekey_after_messages < self.reject_after_messages < 2**64:
            raise ValueError("rekey_after_messages < reject_after_messages < 2**64 required")
        for name in ("rekey_attempt_time", "rekey_timeout", "keepalive_timeout", "cookie_lifetime"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be > 0")


@dataclass
class Counters:
    """One peer's data-path counters (seconds on the monotonic clock; 0: never)."""
    last_tx: float = 0.0               # any authenticated packet sent (data or keepalive)
    last_rx: float = 0.0               # any authenticated packet received
    rx_unanswered: float = 0.0         # first data received since we last sent anything
    tx_unanswered: float = 0.0         # first data sent since we last received anything
    tx_data: int = 0                   # data packets sent (grows: data went out since the last tick)
    rx_data: int = 0
    send_counter: int = 0              # the current session's next nonce


class PeerTimers:
    """One peer's handshake and keepalive schedule."""

    def __init__(self, t: Timers, persistent_keepalive: float = 0.0, rng: Optional[random.Random] = None) -> None:
        self.t = t
        self.persistent = persistent_keepalive
        self.rng = rng or random.Random()
        self.attempt_since: Optional[float] = None   # first initiation of the current attempt
        self.retry_at: Optional[float] = None
        self.last_initiation = -1e18
        self.session_at: Optional[float] = None       # the newest session's birth
        self.initiator = False
        self.last_minute_sent = False
        self._seen = Counters()
        self._acted_rx = self._acted_tx = self._persist_at = 0.0

    @property
    def handshaking(self) -> bool:
        return self.attempt_since is not None

    def may_initiate(self, now: float) -> bool:
        """At most one initiation per REKEY_TIMEOUT (retries come from due())."""
        return not self.handshaking and now - self.last_initiation >= self.t.rekey_timeout

    def initiation_sent(self, now: float) -> None:
        if self.attempt_since is None:
            self.attempt_since = now
        self.last_initiation = now
        self.retry_at = now + self.t.rekey_timeout + self.rng.uniform(0, self.t.rekey_jitter)

    def session_started(self, now: float, initiator: bool) -> None:
        self.session_at, self.initiator = now, initiator
        self.last_minute_sent = False
        if initiator:
            self.attempt_since = self.retry_at = None

    def session_usable(self, now: float) -> bool:
        return self.session_at is not None and now - self.session_at < self.t.reject_after_time

    def due(self, now: float, c: Counters) -> List[str]:
        t, out = self.t, []
        sent = c.tx_data > self._seen.tx_data
        received = c.rx_data > self._seen.rx_data
        self._seen = c
        if self.retry_at is not None and self.attempt_since is not None and now >= self.retry_at:
            if now - self.attempt_since >= t.rekey_attempt_time:
                self.attempt_since = self.retry_at = None
                out.append(GIVE_UP)
            else:
                out.append(INITIATE)
        elif not self.handshaking and self.session_at is not None:
            age = now - self.session_at
            if sent and ((self.initiator and age >= t.rekey_after_time) or c.send_counter >= t.rekey_after_messages):
                out.append(INITIATE)     # keep the key fresh (sending)
            elif received and self.initiator and not self.last_minute_sent and \
                    age >= t.reject_after_time - t.keepalive_timeout - t.rekey_timeout:
                self.last_minute_sent = True
                out.append(INITIATE)     # keep the key fresh (receiving)
        if c.tx_unanswered and c.tx_unanswered != self._acted_tx and \
                now - c.tx_unanswered >= t.keepalive_timeout + t.rekey_timeout:
            self._acted_tx = c.tx_unanswered     # once per silence, as wireguard-go's timer
            if not self.handshaking and INITIATE not in out:
                out.append(INITIATE)
        if c.rx_unanswered and c.rx_unanswered != self._acted_rx and now - c.rx_unanswered >= t.keepalive_timeout:
            self._acted_rx = c.rx_unanswered
            out.append(KEEPALIVE)
        if self.persistent and now - max(c.last_tx, c.last_rx, self._persist_at) >= self.persistent:
            self._persist_at = now
            if KEEPALIVE not in out:
                out.append(KEEPALIVE)
        if self.session_at is not None and now - self.session_at >= 3 * t.reject_after_time:
            self.session_at = None
            out.append(EXPIRE)           # zero every key of the peer
        return out
