"""Command line: `python -m tunpump {dev,relay,tunnel,bench}`.

`dev` speaks the vocabulary of `ip tuntap` and tunctl."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

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
    except (TunpumpError, ValueError, FileNotFoundError) as exc:
        print(f"tunpump: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
