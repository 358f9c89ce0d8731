"""Command line: `python -m tunpump {dev,relay,tunnel,status,bench}`.

`dev` speaks the vocabulary of `ip tuntap` and tunctl."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import List, Optional, Union

from .errors import TunpumpError
from .monitor import stats_line, summary_line

log = logging.getLogger("tunpump")


def _dev_add(args: argparse.Namespace) -> int:
    import errno
    from .device import Device
    from .errors import DeviceConflictError
    try:
        dev = Device(args.name, args.mode, queues=1, multi_queue=args.multi_queue,
                     vnet_hdr=args.vnet_hdr, offloads=args.vnet_hdr, pi=args.pi, exclusive=True,
                     persist=True, owner=args.user, group=args.group, netns=args.netns)
    except DeviceConflictError as exc:
        if exc.errno != errno.EBUSY:
            raise
        print(f"tunpump: device {args.name!r} already exists (remove it with: dev del {args.name})",
              file=sys.stderr)
        return 2
    with dev:
        print(dev.name)
    return 0


def _dev_del(args: argparse.Namespace) -> int:
    from .device import remove
    remove(args.name, netns=args.netns)
    return 0


def _dev_show(args: argparse.Namespace) -> int:
    from .device import list_devices
    from .link import link_counters, tun_offloads
    devs = list_devices(args.netns)
    if args.name:
        devs = [d for d in devs if d["name"] == args.name]
        if not devs:
            print(f"tunpump: no TUN/TAP device named {args.name!r}", file=sys.stderr)
            return 1
    for d in devs:
        d["queues"] = d["queues"] or 0   # the kernel omits the count when no queue is attached
        d["offloads"] = tun_offloads(d["name"], args.netns) if d["vnet_hdr"] else []
        d["counters"] = link_counters(d["name"], args.netns)
    if args.json:
        print(json.dumps(devs, indent=2))
        return 0
    for d in devs:
        flags = [d["mode"]] + [f for f in ("pi", "vnet_hdr", "multi_queue", "persist") if d[f]]
        owner = f" user {d['owner']}" if d["owner"] is not None else ""
        group = f" group {d['group']}" if d["group"] is not None else ""
        state = "UP" if d["up"] else "DOWN"
        print(f"{d['name']}: {' '.join(flags)} queues {d['queues']} mtu {d['mtu']} {state}{owner}{group}")
        print(f"    offloads {' '.join(d['offloads']) or 'none'}")
        c = d["counters"]
        print(f"    RX {c['rx_packets']} packets {c['rx_bytes']} bytes {c['rx_errors']} errors "
              f"{c['rx_dropped']} dropped | TX {c['tx_packets']} packets {c['tx_bytes']} bytes "
              f"{c['tx_errors']} errors {c['tx_dropped']} dropped")
    return 0


def _setup_logging(args: argparse.Namespace) -> None:
    """Log lines on stderr: INFO by default (configuration, peers, fallbacks),
    -v adds DEBUG, -q keeps warnings and errors only, -qq errors only."""
    n = (getattr(args, "verbose", 0) or 0) - (getattr(args, "quiet", 0) or 0)
    level = logging.DEBUG if n > 0 else logging.INFO if n == 0 else logging.WARNING if n == -1 else logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log = logging.getLogger("tunpump")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"tunpump: {record.levelname.lower()}: {msg}"
        return f"tunpump: {msg}"


def _open_device(name: str, mode: str, *, queues: int, offloads: bool, netns: Optional[str],
                 tun_path: str):
    """Create the device, or attach to an existing one with its own flags:
    offloads (vnet_hdr) follow the device then, since asking for other flags
    than a persistent device has would be refused."""
    from .device import Device
    from .link import Link
    vnet_hdr, multi_queue, pi = offloads, None, False
    have = None
    if "%" not in name:
        try:
            have = Link(name, netns).tun_info()
        except TunpumpError:
            have = None
    if have is not None:
        if have["mode"] != mode:
            raise ValueError(f"{name}: an existing {have['mode'].upper()} device; "
                             f"{'drop' if mode == 'tap' else 'add'} --tap")
        pi, multi_queue = have["pi"], have["multi_queue"] or queues > 1
        if offloads and not have["vnet_hdr"]:
            log.info("%s exists without vnet_hdr: offloads off (create it with `dev add --vnet-hdr` "
                     "for offloads)", name)
        vnet_hdr = bool(have["vnet_hdr"])
    dev = Device(name, mode, queues=queues, multi_queue=multi_queue, vnet_hdr=vnet_hdr,
                 offloads=offloads and vnet_hdr, pi=pi, netns=netns, tun_path=tun_path)
    if vnet_hdr:
        missing = sorted({"uso4", "uso6"} - dev.offloads) if offloads else []
        log.info("%s: offloads %s%s", dev.name, " ".join(sorted(dev.offloads)) or "none",
                 f" (the kernel refused {' '.join(missing)}: UDP goes to the device one datagram at a time)"
                 if missing else "")
    else:
        log.info("%s: offloads off", dev.name)
    return dev


def _offloads_in_force(*devs) -> dict:
    return {d.name: sorted(d.offloads) for d in devs}


def _configure(dev, *, mtu: Optional[int], explicit_mtu: bool, addresses: List[str],
               peer: Optional[str]) -> None:
    """Apply MTU, addresses and link up, skipping whatever is already in
    place (so the owner of a persistent device that root configured needs
    no CAP_NET_ADMIN)."""
    from .errors import PrivilegeError
    link = dev.link
    info = link.info()
    applied = []
    if mtu is not None and info["mtu"] != mtu:
        try:
            link.set_mtu(mtu)
            applied.append(f"mtu {mtu}")
        except PrivilegeError:
            if explicit_mtu:
                raise
            log.warning("%s: keeping MTU %d (the default would be %d; changing it needs CAP_NET_ADMIN)%s",
                        dev.name, info["mtu"], mtu,
                        ": larger packets are fragmented on the underlay" if info["mtu"] > mtu else "")
    have = set(link.addresses())
    for addr in addresses:
        if addr in have or (peer and _local_of(addr) in {_local_of(a) for a in have}):
            log.debug("%s: address %s already there", dev.name, addr)
            continue
        if peer and dev.mode == "tun":
            link.add_address(addr, peer=peer, nodad=True)
        else:
            link.add_address(addr, nodad=True)
        applied.append(f"address {addr}" + (f" peer {peer}" if peer and dev.mode == "tun" else ""))
    if not info["up"]:
        link.up()
        applied.append("up")
    log.info("%s: %s", dev.name, ", ".join(applied) if applied else "configuration already in place")


def _local_of(cidr: str) -> str:
    return cidr.split("/")[0]


def _serve(pump, args: argparse.Namespace, monitor) -> int:
    """Run until SIGINT/SIGTERM: a stats line every --stats seconds, the
    status socket, the metrics endpoint, log lines from the monitor."""
    import signal
    import threading
    import time
    from .status import StatusError, StatusServer
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    status = metrics_server = None
    if not args.no_status:
        try:
            status = StatusServer(args.name or pump.device.name, monitor.snapshot).start()
        except StatusError as exc:   # the tunnel runs on; only `status` cannot see it
            log.warning("%s; `status` will not see this process", exc)
    try:
        if args.metrics:
            from . import metrics
            metrics_server = metrics.serve(args.metrics, monitor.snapshot)
            log.info("metrics on http://%s/metrics", args.metrics)
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t_start = time.monotonic()
        pump.start()
        print(f"tunpump: {pump.device.name} <-> {pump.endpoint!r} running; Ctrl-C stops", flush=True)
        try:
            last, t_last = pump.stats(), time.monotonic()
            while not stop.wait(0.2):
                err = pump.error()
                if err is not None:
                    raise err
                monitor.poll()
                now = time.monotonic()
                if args.stats and now - t_last >= args.stats:
                    cur = pump.stats()
                    print(stats_line(last, cur, now - t_last), flush=True)
                    last, t_last = cur, now
        finally:
            pump.stop()
            for s, h in old.items():
                signal.signal(s, h)
        print(summary_line(pump.stats(), time.monotonic() - t_start), flush=True)
        return 0
    finally:
        if metrics_server is not None:
            metrics_server[0].shutdown()
            metrics_server[0].server_close()
        if status is not None:
            status.close()


def _relay(args: argparse.Namespace) -> int:
    from .monitor import Monitor
    from .pump import Pump
    mode = "tap" if args.tap else "tun"
    offloads = not args.no_offloads
    with _open_device(args.dev_a, mode, queues=args.queues, offloads=offloads, netns=args.netns_a,
                      tun_path=args.tun_path) as a, \
            _open_device(args.dev_b, mode, queues=args.queues, offloads=offloads, netns=args.netns_b,
                         tun_path=args.tun_path) as b:
        mon = Monitor(None, kind="relay", name=args.name or a.name, offloads=_offloads_in_force(a, b))
        mon.pump = Pump(a, b, batch=args.batch, on_event=mon.on_event)
        return _serve(mon.pump, args, mon)


def _tunnel(args: argparse.Namespace) -> int:
    from .endpoint import TCPEndpoint, UDPEndpoint
    from .monitor import Monitor
    from .mtu import tunnel_mtu
    from .pump import Pump
    mode = "tap" if args.tap else "tun"
    ep: Union[TCPEndpoint, UDPEndpoint]
    if (args.remote and not args.listen) or (args.peer_timeout is not None and (args.tcp or not args.listen)):
        raise ValueError("--remote: only with --listen (a client's peer is --connect); --peer-timeout: only with --udp --listen")
    if args.tcp:
        ep = (TCPEndpoint.listen(args.listen, remote=args.remote) if args.listen else TCPEndpoint.connect(args.connect))
    elif args.listen:
        ep = UDPEndpoint(args.listen, args.remote, peer_timeout=args.peer_timeout)
    else:
        ep = UDPEndpoint(args.local or ("0.0.0.0", 0), args.connect)
    aead = _aead_of(args)
    with _open_device(args.dev, mode, queues=args.queues, offloads=not args.no_offloads, netns=None,
                      tun_path=args.tun_path) as dev:
        derived = tunnel_mtu("tcp" if args.tcp else "udp", ep.local, ep.remote, exclude=dev.name,
                             transform_overhead=aead.OVERHEAD if aead else 0)
        if mode == "tap":
            derived["mtu"] -= 14   # the Ethernet header rides inside the tunnel too
        mtu = args.mtu or derived["mtu"]
        if args.mtu and args.mtu > derived["mtu"]:
            log.warning("--mtu %d is larger than %d (underlay MTU %d, %s, minus %d bytes of encapsulation): "
                        "packets that size are fragmented on the underlay", args.mtu, derived["mtu"],
                        derived["underlay_mtu"], derived["via"], derived["overhead"])
        elif not args.mtu:
            log.info("%s: MTU %d (underlay MTU %d, %s, minus %d bytes of encapsulation)", dev.name,
                     mtu, derived["underlay_mtu"], derived["via"],
                     derived["overhead"] + (14 if mode == "tap" else 0))
        if not args.no_configure:
            _configure(dev, mtu=mtu, explicit_mtu=bool(args.mtu), addresses=args.address or [],
                       peer=args.peer)
        mon = Monitor(None, kind="tunnel", name=args.name or dev.name, offloads=_offloads_in_force(dev),
                      config={"mtu": dev.link.info()["mtu"], "derived_mtu": derived["mtu"]})
        mon.pump = Pump(dev, ep, batch=args.batch, on_event=mon.on_event, transform=aead)
        return _serve(mon.pump, args, mon)


def _aead_of(args: argparse.Namespace):
    """--key-file: the AEAD transform (the server is side 1, the client 0), or None."""
    from .keyfile import read_key_file
    from .transforms import AEAD
    if args.key_file is None:
        if args.cipher is not None:
            raise ValueError(f"--cipher {args.cipher}: only with --key-file (the pre-shared key)")
        return None
    aead = AEAD(read_key_file(args.key_file), args.cipher or "chacha20-poly1305", side=1 if args.listen else 0)
    log.info("encrypted with %s under the pre-shared key in %s (no handshake, no forward secrecy)",
             aead.cipher, args.key_file)
    return aead


def _status(args: argparse.Namespace) -> int:
    from .status import StatusError, available, format_status, query, run_dirs
    names = [args.name] if args.name else available()
    if not names:
        print(f"tunpump: no running tunnel or relay (nothing in {' or '.join(run_dirs())})", file=sys.stderr)
        return 1
    out = []
    for n in names:
        try:
            out.append(query(n))
        except StatusError as exc:
            if args.name:
                raise
            log.debug("%s", exc)   # a stale socket while listing all: skip it
    if args.json:
        print(json.dumps(out[0] if args.name else out, indent=2))
    else:
        print("\n\n".join(format_status(st) for st in out))
    return 0 if out else 1


def _bench(args: argparse.Namespace) -> int:
    from . import bench
    try:
        return bench.run(args)
    except bench.BenchError as exc:
        print(f"tunpump bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntunpump bench: interrupted; everything it made was removed", file=sys.stderr)
        return 130


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="fewer log lines (-q warnings, -qq errors)")


def _run_options(p: argparse.ArgumentParser) -> None:
    """What `tunnel` and `relay` share."""
    p.add_argument("--no-offloads", action="store_true",
                   help="no vnet_hdr and no kernel offloads (they are on by default where the kernel has them)")
    p.add_argument("--vnet-hdr", action="store_true", help=argparse.SUPPRESS)   # the old opt-in; now the default
    p.add_argument("--batch", type=int, default=64, help="packets per wakeup and direction")
    p.add_argument("--stats", type=float, metavar="SECONDS", help="print a stats line this often")
    p.add_argument("--name", help="the status socket's name (default: the (first) device's name)")
    p.add_argument("--no-status", action="store_true", help="no status socket")
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics on http://HOST:PORT/metrics")
    p.add_argument("--tun-path", default="/dev/net/tun", metavar="PATH",
                   help="the TUN clone device (like tunctl -f)")
    _log_options(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tunpump", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="create, delete and list TUN/TAP devices (like ip tuntap)")
    dsub = dev.add_subparsers(dest="dev_command", required=True, metavar="ACTION")
    add = dsub.add_parser("add", help="create a persistent device")
    add.add_argument("name", help="device name, or a pattern such as tp%%d")
    add.add_argument("--mode", choices=("tun", "tap"), default="tun")
    add.add_argument("--multi-queue", action="store_true", help="IFF_MULTI_QUEUE")
    add.add_argument("--vnet-hdr", action="store_true", help="IFF_VNET_HDR")
    add.add_argument("--pi", action="store_true", help="keep the 4-byte packet information header")
    add.add_argument("--user", help="owner: user name or uid (may attach without CAP_NET_ADMIN)")
    add.add_argument("--group", help="group name or gid (members may attach)")
    add.add_argument("--netns", help="create it inside this network namespace")
    add.set_defaults(func=_dev_add)
    rm = dsub.add_parser("del", help="delete a persistent device")
    rm.add_argument("name")
    rm.add_argument("--netns")
    rm.set_defaults(func=_dev_del)
    show = dsub.add_parser("show", help="list TUN/TAP devices")
    show.add_argument("name", nargs="?")
    show.add_argument("--json", action="store_true")
    show.add_argument("--netns")
    show.set_defaults(func=_dev_show)

    relay = sub.add_parser("relay", help="forward between two devices, queue i to queue i")
    relay.add_argument("dev_a")
    relay.add_argument("dev_b")
    relay.add_argument("--queues", type=int, default=1)
    relay.add_argument("--tap", action="store_true", help="TAP devices (Ethernet frames)")
    relay.add_argument("--netns-a", help="create/attach DEV_A in this namespace")
    relay.add_argument("--netns-b", help="create/attach DEV_B in this namespace")
    _run_options(relay)
    relay.set_defaults(func=_relay)

    tun = sub.add_parser("tunnel", help="a device tunnelled over UDP or TCP")
    tun.add_argument("--dev", required=True, help="device name or pattern")
    tun.add_argument("--tap", action="store_true", help="a TAP device (Ethernet frames)")
    kind = tun.add_mutually_exclusive_group(required=True)
    kind.add_argument("--udp", action="store_true")
    kind.add_argument("--tcp", action="store_true", help="simpletun framing (2-byte length)")
    role = tun.add_mutually_exclusive_group(required=True)
    role.add_argument("--listen", metavar="ADDR:PORT",
                      help="server: TCP listens; UDP binds and takes the first sender as its peer")
    role.add_argument("--connect", metavar="ADDR:PORT", help="client: the server's address")
    tun.add_argument("--remote", metavar="ADDR[:PORT]", help="with --listen, the only peer: UDP a fixed peer, not learnt; TCP "
                     "refuses other clients (without it, anyone who reaches the port takes the tunnel over)")
    tun.add_argument("--peer-timeout", type=float, metavar="SECONDS",
                     help="UDP --listen: a new client replaces a peer silent this long (default 30)")
    tun.add_argument("--local", metavar="ADDR:PORT", help="UDP with --connect: the local address")
    tun.add_argument("--address", action="append", metavar="CIDR", help="address for the device (repeatable)")
    tun.add_argument("--peer", help="TUN: the far end of the point-to-point link")
    tun.add_argument("--mtu", type=int, help="the device's MTU (default: the underlay's MTU toward the peer "
                                            "minus the encapsulation; a larger one is warned about)")
    tun.add_argument("--queues", type=int, default=1, help="worker i uses port PORT+i")
    tun.add_argument("--key-file", metavar="FILE",
                     help="encrypt and authenticate every packet with the pre-shared 32-byte key in FILE (64 hex "
                          "digits or base64; mode 600): the same file on both ends. No handshake, no forward "
                          "secrecy. Make one: (umask 077; openssl rand -hex 32 > FILE)")
    tun.add_argument("--cipher", choices=("chacha20-poly1305", "aes-256-gcm"),
                     help="with --key-file: the AEAD (default chacha20-poly1305; aes-256-gcm is faster on CPUs "
                          "with AES instructions); both ends must agree")
    tun.add_argument("--no-configure", action="store_true",
                     help="leave the link as it is (no MTU, addresses or up): root configured it")
    _run_options(tun)
    tun.set_defaults(func=_tunnel)

    st = sub.add_parser("status", help="counters of a running tunnel or relay (from another shell)")
    st.add_argument("name", nargs="?", help="its --name (default: its device's name); all when omitted")
    st.add_argument("--json", action="store_true")
    _log_options(st)
    st.set_defaults(func=_status)

    from . import bench
    b = sub.add_parser("bench", help="benchmark tunpump against baselines, in namespaces it makes")
    bench.build_parser(b)
    b.set_defaults(func=_bench)
    return p


def _owner_arg(value: Optional[str]):
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    for attr in ("user", "group"):
        if hasattr(args, attr):
            setattr(args, attr, _owner_arg(getattr(args, attr)))
    try:
        return args.func(args)
    except (TunpumpError, ValueError, TypeError, FileNotFoundError, OSError, RuntimeError) as exc:
        print(f"tunpump: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
