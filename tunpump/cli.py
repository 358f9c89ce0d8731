"""Command line: `python -m tunpump {dev,relay,tunnel,bench}`.

`dev` speaks the vocabulary of `ip tuntap` and tunctl."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional, Union

from .errors import TunpumpError


def _dev_add(args: argparse.Namespace) -> int:
    from .device import Device
    with Device(args.name, args.mode, queues=1, multi_queue=args.multi_queue,
                vnet_hdr=args.vnet_hdr, offloads=args.vnet_hdr, pi=args.pi, exclusive=True,
                persist=True, owner=args.user, group=args.group, netns=args.netns) as dev:
        print(dev.name)
    return 0


def _dev_del(args: argparse.Namespace) -> int:
    from .device import remove
    remove(args.name, netns=args.netns)
    return 0


def _dev_show(args: argparse.Namespace) -> int:
    from .device import list_devices
    devs = list_devices(args.netns)
    if args.name:
        devs = [d for d in devs if d["name"] == args.name]
        if not devs:
            print(f"tunpump: no TUN/TAP device named {args.name!r}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(devs, indent=2))
        return 0
    for d in devs:
        flags = [d["mode"]] + [f for f in ("pi", "vnet_hdr", "multi_queue", "persist") if d[f]]
        owner = f" user {d['owner']}" if d["owner"] is not None else ""
        group = f" group {d['group']}" if d["group"] is not None else ""
        state = "UP" if d["up"] else "DOWN"
        print(f"{d['name']}: {' '.join(flags)} queues {d['queues']} mtu {d['mtu']} {state}{owner}{group}")
    return 0


def _rate_line(prev: dict, cur: dict, secs: float) -> str:
    parts = []
    for key, label in (("to_endpoint", "dev->ep"), ("to_device", "ep->dev")):
        a, b = prev.get(key, {}), cur[key]
        pk = b["packets_out"] - a.get("packets_out", 0)
        by = b["bytes_out"] - a.get("bytes_out", 0)
        parts.append(f"{label} {pk / secs / 1e3:8.1f} kpps {by * 8 / secs / 1e9:7.3f} Gbit/s")
    drops = sum(sum(cur[k]["drops"].values()) for k in ("to_endpoint", "to_device"))
    return " | ".join(parts) + f" | drops {drops}"


def _serve(pump, stats_every: Optional[float]) -> int:
    """Run until SIGINT/SIGTERM, printing a stats line every `stats_every` s."""
    import signal
    import threading
    import time
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    pump.start()
    print(f"tunpump: {pump.device.name} <-> {pump.endpoint!r} running; Ctrl-C stops", flush=True)
    try:
        last, t_last = pump.stats(), time.monotonic()
        while not stop.wait(0.2):
            err = pump.error()
            if err is not None:
                raise err
            now = time.monotonic()
            if stats_every and now - t_last >= stats_every:
                cur = pump.stats()
                print(_rate_line(last, cur, now - t_last), flush=True)
                last, t_last = cur, now
    finally:
        pump.stop()
        for s, h in old.items():
            signal.signal(s, h)
    total = pump.stats()
    if stats_every:
        print("total: " + json.dumps({k: total[k]["packets_out"] for k in ("to_endpoint", "to_device")}),
              flush=True)
    return 0


def _relay(args: argparse.Namespace) -> int:
    from .device import Device
    from .pump import Pump
    mode = "tap" if args.tap else "tun"
    with Device(args.dev_a, mode, queues=args.queues, vnet_hdr=args.vnet_hdr, netns=args.netns_a) as a, \
            Device(args.dev_b, mode, queues=args.queues, vnet_hdr=args.vnet_hdr, netns=args.netns_b) as b:
        return _serve(Pump(a, b, batch=args.batch), args.stats)


def _tunnel(args: argparse.Namespace) -> int:
    from .device import Device
    from .endpoint import TCPEndpoint, UDPEndpoint
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
    with Device(args.dev, mode, queues=args.queues, vnet_hdr=args.vnet_hdr) as dev:
        link = dev.link
        if args.mtu:
            link.set_mtu(args.mtu)
        for addr in args.address or []:
            link.add_address(addr, peer=args.peer, nodad=True) if args.peer and mode == "tun" \
                else link.add_address(addr, nodad=True)
        link.up()
        return _serve(Pump(dev, ep, batch=args.batch), args.stats)


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
    relay.add_argument("--vnet-hdr", action="store_true", help="pass offloaded super-packets through")
    relay.add_argument("--netns-a", help="create/attach DEV_A in this namespace")
    relay.add_argument("--netns-b", help="create/attach DEV_B in this namespace")
    relay.add_argument("--batch", type=int, default=64, help="packets per wakeup and direction")
    relay.add_argument("--stats", type=float, metavar="SECONDS", help="print a stats line this often")
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
    tun.add_argument("--mtu", type=int, help="the device's MTU (leave room for the underlay's headers)")
    tun.add_argument("--queues", type=int, default=1, help="worker i uses port PORT+i")
    tun.add_argument("--vnet-hdr", action="store_true",
                     help="offloads: the kernel hands over super-packets; they are split and coalesced in C")
    tun.add_argument("--batch", type=int, default=64, help="packets per wakeup and direction")
    tun.add_argument("--stats", type=float, metavar="SECONDS", help="print a stats line this often")
    tun.set_defaults(func=_tunnel)

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
    for attr in ("user", "group"):
        if hasattr(args, attr):
            setattr(args, attr, _owner_arg(getattr(args, attr)))
    try:
        return args.func(args)
    except (TunpumpError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"tunpump: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
