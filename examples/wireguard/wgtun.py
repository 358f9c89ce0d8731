"""wgtun: a WireGuard-compatible tunnel on tunpump's public API.

    python examples/wireguard/wgtun.py CONFIG --dev NAME      # run (foreground)
    python examples/wireguard/wgtun.py show NAME              # like `wg show`

The data path is tunpump plus the `wgdata` transform (C, this directory);
this file is the control plane: handshakes (noise.py), timers (timers.py),
and the device. See README.md."""
from __future__ import annotations

import argparse
import base64
import collections
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import noise  # noqa: E402
import timers as tm  # noqa: E402
import wgconfig  # noqa: E402
import wgdata  # noqa: E402
from tunpump import Device, Packet, PeerMoved, Pump, UDPEndpoint  # noqa: E402

log = logging.getLogger("wgtun")
RUN_DIR = "/run/wgtun"          # show sockets, one per device
DEFAULT_MTU = 1420
STAGED_MAX = 128                # packets held per peer while a handshake runs (wireguard-go: 128)
KEEPALIVE = b""                 # wgdata sends an empty transport message for an empty packet


class Peer:
    def __init__(self, index: int, cfg: wgconfig.PeerConfig, timers: tm.Timers) -> None:
        self.index, self.cfg = index, cfg
        self.timers = tm.PeerTimers(timers, cfg.persistent_keepalive)
        self.endpoint = cfg.endpoint
        self.staged: collections.deque = collections.deque(maxlen=STAGED_MAX)
        self.handshake: Optional[noise.Initiated] = None
        self.cookie: Optional[bytes] = None
        self.cookie_at = 0.0
        self.last_stamp = b""          # the greatest TAI64N timestamp seen (replay check)
        self.last_init_rx = -1e18
        self.last_handshake: Optional[float] = None   # wall clock, for show
        self.indices: collections.deque = collections.deque(maxlen=3)
        self.flush = False
        self.counters: Dict[str, int] = {}


class Tunnel:
    """The device, the pump and the control plane of one WireGuard interface."""

    def __init__(self, config: wgconfig.Config, dev: str, *, timers: Optional[tm.Timers] = None,
                 netns: Optional[str] = None, tick: float = 0.05) -> None:
        self.cfg, self.name, self.tick = config, dev, tick
        self.t = timers or tm.Timers()
        self.static = noise.Static(config.private_key)
        self.peers = [Peer(i, p, self.t) for i, p in enumerate(config.peers)]
        self.by_key = {p.cfg.public_key: p for p in self.peers}
        self.pending: Dict[int, Peer] = {}     # our initiations' sender indices
        self.sessions: Dict[int, Peer] = {}    # our sessions' local indices
        self.rejected: collections.Counter = collections.Counter()
        self.mtu = config.mtu or DEFAULT_MTU
        self.lock = threading.RLock()          # on_punt (tunpump's control thread) vs ticks
        self.stopping = threading.Event()
        self.transform = wgdata.Transform(self._blob())
        self.device = Device(dev, "tun", netns=netns, vnet_hdr=True)
        try:
            self._setup_link()
            self.pump = Pump(self.device, self._endpoint(netns), transform=self.transform,
                             on_punt=self._on_punt, on_event=self._on_event, punt_ring=256)
        except BaseException:
            self.device.close()
            raise

    def _blob(self) -> bytes:
        if not 1 <= len(self.peers) <= wgdata.MAX_PEERS:
            raise ValueError(f"config: 1 to {wgdata.MAX_PEERS} [Peer] sections, got {len(self.peers)}")
        entries = [struct.pack("<BBBx16s", p.index, net.version, net.prefixlen, net.network_address.packed)
                   for p in self.peers for net in p.cfg.allowed_ips]
        return struct.pack("<4sIIIQQ", b"WGT1", self.mtu, len(self.peers), len(entries),
                           int(self.t.reject_after_time * 1e9), self.t.reject_after_messages) + b"".join(entries)

    def _endpoint(self, netns: Optional[str]) -> UDPEndpoint:
        """One dual-stack socket for every peer; peers get their address from
        Pump.set_peer (at start from Endpoint, later from handshakes and roaming)."""
        return UDPEndpoint(("::", self.cfg.listen_port or 0), [], netns=netns)

    def _setup_link(self) -> None:
        link = self.device.link
        link.set_mtu(self.mtu)
        for a in self.cfg.addresses:
            link.add_address(str(a), nodad=a.version == 6)
        link.up()
        from pyroute2 import IPRoute, NetlinkError     # tunpump's own dependency
        with IPRoute() as ipr:   # routes for AllowedIPs outside the addresses' subnets, as wg-quick adds
            for p in self.peers:
                for net in p.cfg.allowed_ips:
                    if net.prefixlen == 0 or any(a.network == net for a in self.cfg.addresses):
                        continue   # a default route needs wg-quick's policy routing: not done here
                    try:
                        ipr.route("add", dst=str(net), oif=link.ifindex)
                    except NetlinkError as exc:
                        if exc.code != 17:   # EEXIST
                            raise

    # ---- handshakes (tunpump's control thread) ----------------------------------

    def _on_punt(self, packets: List[Packet]) -> None:
        now = time.monotonic()
        with self.lock:
            for p in packets:
                try:
                    if p.direction == "to_endpoint":
                        self._stage(self.peers[p.peer], p.data, now)
                    elif p.data[0] == noise.INITIATION:
                        self._initiation(p, now)
                    elif p.data[0] == noise.RESPONSE:
                        self._response(p, now)
                    else:
                        self._cookie(p.data, now)
                except noise.HandshakeError as exc:
                    self.rejected[str(exc)] += 1
                    log.debug("handshake message from %s rejected: %s", p.source, exc)

    def _stage(self, peer: Peer, data: bytes, now: float) -> None:
        if data != KEEPALIVE:
            peer.staged.append(data)
        if peer.timers.may_initiate(now):
            self._initiate(peer, now)

    def _initiate(self, peer: Peer, now: float) -> None:
        if peer.endpoint is None:
            return   # no Endpoint and never heard from: it has to call us first
        if peer.handshake:
            self.pending.pop(peer.handshake.sender, None)
        cookie = self._cookie_for(peer, now)
        sender = noise.new_index(self.pending.keys() | self.sessions.keys())
        msg, peer.handshake = self.static.initiation(peer.cfg.public_key, peer.cfg.preshared_key, sender, cookie)
        self.pending[sender] = peer
        peer.timers.initiation_sent(now)
        if self._send_handshake(peer, msg, "initiation"):
            log.debug("peer %d: handshake initiation sent", peer.index)

    def _send_handshake(self, peer: Peer, msg: bytes, what: str) -> bool:
        """Send a handshake message; a refused send (a firewall's EPERM, no
        route, a full socket) is as if it was lost: the initiator's retry
        timer recovers, as wireguard-go does."""
        try:
            self.pump.inject(msg, "endpoint", peer=peer.index)
            return True
        except OSError as exc:
            log.warning("peer %d: handshake %s not sent: %s (the retry timer tries again)", peer.index, what, exc)
            return False

    def _cookie_for(self, peer: Peer, now: float) -> Optional[bytes]:
        """The peer's cookie while fresh: our messages to it then carry mac2."""
        return peer.cookie if peer.cookie and now - peer.cookie_at < self.t.cookie_lifetime else None

    def _initiation(self, p: Packet, now: float) -> None:
        c = self.static.consume_initiation(p.data, self.by_key.__contains__)
        peer = self.by_key[c.peer_public]
        if c.timestamp <= peer.last_stamp:
            raise noise.HandshakeError("initiation replayed (timestamp not newer)")
        if now - peer.last_init_rx < self.t.initiation_rate:
            raise noise.HandshakeError("initiations too fast (flood)")
        peer.last_stamp, peer.last_init_rx = c.timestamp, now
        sender = noise.new_index(self.pending.keys() | self.sessions.keys())
        cookie = self._cookie_for(peer, now)
        msg, keys = self.static.response(c, peer.cfg.preshared_key, sender, cookie)
        self._install(peer, keys, now)   # posted before the response leaves: the keys are there first
        self._move(peer, p.source)
        self._send_handshake(peer, msg, "response")

    def _response(self, p: Packet, now: float) -> None:
        peer = self.pending.get(noise.receiver_index(p.data))
        if peer is None or peer.handshake is None:
            raise noise.HandshakeError("response to no initiation of ours")
        keys = self.static.consume_response(p.data, peer.handshake)
        del self.pending[peer.handshake.sender]
        peer.handshake = None
        self._move(peer, p.source)
        self._install(peer, keys, now)
        peer.flush = True          # next tick: staged packets, or a keepalive to confirm the session

    def _move(self, peer: Peer, address) -> None:
        """A handshake authenticated `address` as the peer's: send to it from now on."""
        if address != peer.endpoint:
            self.pump.set_peer(peer.index, address)   # returns once the worker applied it
            if peer.endpoint:
                log.info("peer %d moved to %s:%d", peer.index, *address)
            peer.endpoint = address

    def _on_event(self, event: object) -> None:
        if isinstance(event, PeerMoved):   # a data packet authenticated from a new address
            with self.lock:
                self.peers[event.peer].endpoint = event.address
            log.info("peer %d roamed to %s:%d", event.peer, *event.address)

    def _cookie(self, data: bytes, now: float) -> None:
        peer = self.pending.get(noise.receiver_index(data))
        if peer is None or peer.handshake is None:
            raise noise.HandshakeError("cookie reply to no initiation of ours")
        peer.cookie = noise.consume_cookie_reply(data, peer.cfg.public_key, peer.handshake.mac1)
        peer.cookie_at = now
        log.info("peer %d is under load: cookie received, the next initiation carries mac2", peer.index)

    def _install(self, peer: Peer, keys: noise.Keys, now: float) -> None:
        self.pump.transform_control(struct.pack("<cBBxII32s32s", b"I", peer.index, keys.initiator,
                                                keys.local_index, keys.remote_index, keys.send, keys.recv))
        if len(peer.indices) == peer.indices.maxlen:
            self.sessions.pop(peer.indices[0], None)
        peer.indices.append(keys.local_index)
        self.sessions[keys.local_index] = peer
        peer.timers.session_started(now, keys.initiator)
        peer.last_handshake = time.time()
        log.info("peer %d (%s): handshake complete as %s, session %08x", peer.index,
                 base64.b64encode(peer.cfg.public_key).decode()[:8],
                 "initiator" if keys.initiator else "responder", keys.local_index)

    # ---- timers (the tick thread) -----------------------------------------------

    def _poll(self) -> None:
        per_peer, _ = wgdata.counters(self.transform)
        now = time.monotonic()
        with self.lock:
            for peer, values in zip(self.peers, per_peer):
                c = peer.counters = dict(zip(wgdata.COUNTERS, values))
                counters = tm.Counters(c["last_tx_ns"] / 1e9, c["last_rx_ns"] / 1e9, c["rx_unanswered_ns"] / 1e9,
                                       c["tx_unanswered_ns"] / 1e9, c["tx_data"], c["rx_data"], c["send_counter"])
                if peer.flush:
                    self._flush(peer)
                for action in peer.timers.due(now, counters):
                    self._act(peer, action, now)

    def _flush(self, peer: Peer) -> None:
        peer.flush = False
        if not peer.staged:
            peer.staged.append(KEEPALIVE)   # confirms a new session to the responder
        while peer.staged:
            try:
                self.pump.inject(peer.staged[0], "endpoint", peer=peer.index, through_transform=True)
            except BlockingIOError:
                peer.flush = True   # the worker's ring is full: the rest next tick
                return
            peer.staged.popleft()

    def _act(self, peer: Peer, action: str, now: float) -> None:
        if action == tm.INITIATE:
            self._initiate(peer, now)
        elif action == tm.KEEPALIVE:
            if peer.timers.session_usable(now):
                peer.staged.append(KEEPALIVE)   # sent now, or next tick if the worker's ring is full
                self._flush(peer)
            elif peer.timers.may_initiate(now):
                self._initiate(peer, now)
        elif action == tm.GIVE_UP:
            log.warning("peer %d: no handshake answer within %g s; dropping %d staged packets", peer.index,
                        self.t.rekey_attempt_time, len(peer.staged))
            peer.staged.clear()
            if peer.handshake:
                self.pending.pop(peer.handshake.sender, None)
                peer.handshake = None
        elif action == tm.EXPIRE:
            log.info("peer %d: no new session for %g s; keys zeroed", peer.index, 3 * self.t.reject_after_time)
            self.pump.transform_control(b"C" + bytes([peer.index]))
            peer.staged.clear()

    # ---- running ----------------------------------------------------------------

    def start(self) -> "Tunnel":
        self.pump.start()
        for p in self.peers:
            if p.endpoint:
                self.pump.set_peer(p.index, p.endpoint)
        threading.Thread(target=self._ticks, name="wgtun-timers", daemon=True).start()
        for p in self.peers:
            if p.cfg.persistent_keepalive:   # like wireguard-go: a keepalive (hence a handshake) at once
                with self.lock:
                    self._initiate(p, time.monotonic())
        return self

    def _ticks(self) -> None:
        while not self.stopping.wait(self.tick):
            try:
                self._poll()
            except Exception:
                if self.stopping.is_set():
                    return
                log.exception("timer tick failed")

    def close(self) -> None:
        self.stopping.set()
        self.pump.stop()
        self.device.close()

    def show(self) -> str:
        """The state, as `wg show` prints it."""
        b64 = base64.b64encode
        out = [f"interface: {self.name}", f"  public key: {b64(self.static.public).decode()}",
               f"  listening port: {self.pump.local_address(0)[1]}"]
        st = self.pump.stats()   # wgdata's reasons are named "wireguard_<reason>" there
        drops = collections.Counter(st.to_endpoint.drops) + collections.Counter(st.to_device.drops)
        if drops:
            out.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
        if self.rejected:
            out.append("  handshakes rejected: " + ", ".join(f"{k} ({v})" for k, v in self.rejected.items()))
        for p in self.peers:
            c = p.counters
            out += ["", f"peer: {b64(p.cfg.public_key).decode()}"]
            if p.endpoint:
                out.append(f"  endpoint: {p.endpoint[0] if ':' not in p.endpoint[0] else '[' + p.endpoint[0] + ']'}"
                           f":{p.endpoint[1]}")
            out.append("  allowed ips: " + (", ".join(map(str, p.cfg.allowed_ips)) or "(none)"))
            if p.last_handshake:
                out.append(f"  latest handshake: {int(time.time() - p.last_handshake)} seconds ago")
            if c:
                out.append(f"  transfer: {c['rx_bytes']} B received, {c['tx_bytes']} B sent")
            if p.cfg.persistent_keepalive:
                out.append(f"  persistent keepalive: every {p.cfg.persistent_keepalive} seconds")
        return "\n".join(out) + "\n"


def _serve_show(tunnel: Tunnel) -> socket.socket:
    """`wgtun.py show NAME` connects to /run/wgtun/NAME.sock and reads the state."""
    os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
    path = os.path.join(RUN_DIR, f"{tunnel.name}.sock")
    if os.path.exists(path):
        os.unlink(path)   # stale: creating the device succeeded, so the name is ours
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return   # closed at exit
            with conn:
                conn.sendall(tunnel.show().encode())
    threading.Thread(target=serve, name="wgtun-show", daemon=True).start()
    return srv


def show(name: str) -> int:
    path = os.path.join(RUN_DIR, f"{name}.sock")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            sys.stdout.write(b"".join(iter(lambda: s.recv(65536), b"")).decode())
            return 0
    except OSError as exc:
        print(f"wgtun show {name}: no running wgtun for that device ({path}: {exc.strerror})", file=sys.stderr)
        return 1


def _timer(text: str):
    name, _, value = text.partition("=")
    if name not in tm.Timers.__dataclass_fields__:
        raise argparse.ArgumentTypeError(f"{name}: not a timer ({', '.join(tm.Timers.__dataclass_fields__)})")
    return name, (int(value) if "messages" in name else float(value))


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["show"]:
        if len(argv) != 2:
            print("usage: wgtun.py show DEVICE", file=sys.stderr)
            return 2
        return show(argv[1])
    ap = argparse.ArgumentParser(prog="wgtun.py", description="A WireGuard-compatible tunnel on tunpump.")
    ap.add_argument("config", nargs="?", help="wg-quick configuration file")
    ap.add_argument("--dev", required=True, help="the TUN device to create")
    ap.add_argument("--show", action="store_true", help="print a running tunnel's state (like `wg show`)")
    ap.add_argument("--timer", action="append", type=_timer, default=[], metavar="NAME=VALUE",
                    help="override a protocol timer (tests): e.g. rekey_after_time=2")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.show:
        return show(args.dev)
    if not args.config:
        ap.error("CONFIG is required (or --show)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        cfg = wgconfig.load(args.config)
        timers = tm.Timers(**dict(args.timer))
        tunnel = Tunnel(cfg, args.dev, timers=timers)
    except (OSError, ValueError) as exc:
        print(f"wgtun: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    tunnel.start()
    srv = _serve_show(tunnel)
    log.info("%s up: %d peer(s), MTU %d", args.dev, len(tunnel.peers), tunnel.mtu)
    try:
        while not stop.wait(0.5):
            err = tunnel.pump.error()
            if err is not None:
                log.error("%s", err)
                return 1
    finally:
        srv.close()
        os.unlink(os.path.join(RUN_DIR, f"{args.dev}.sock"))
        tunnel.close()
        log.info("%s down", args.dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
