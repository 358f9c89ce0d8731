"""TUN and TAP devices: create or attach, queues, vnet_hdr and offloads,
persistence and ownership (tunctl), introspection, and packet I/O."""
from __future__ import annotations

import errno
import grp
import os
import pwd
import select
import socket
import weakref
from typing import Dict, FrozenSet, Iterable, List, Optional, Union

from . import _core
from .aio import PacketStream
from .aio import recv as aio_recv
from .aio import send as aio_send
from .errors import DeviceConflictError, TunpumpError, device_error
from .link import Link, off_loop
from .netns import entered
from .netns import exists as netns_exists
from .prefix import PI_SIZE, READ_SIZE
from .prefix import build as build_prefix
from .prefix import check_flag as check_prefix_flag
from .prefix import strip as strip_prefix

MAX_QUEUES = 256  # the kernel's MAX_TAP_QUEUES
IFNAMSIZ = _core.IFNAMSIZ
MODES = ("tun", "tap")
OFFLOAD_NAMES = ("csum", "tso4", "tso6", "tso_ecn", "uso4", "uso6")
DEFAULT_OFFLOADS = ("csum", "tso4", "tso6", "uso4", "uso6")
VNET_HDR_SIZES = (10, 12)

_FEATURE_NAMES = {v: k for k, v in _core.FLAGS.items()}


def _flag_names(value: int) -> FrozenSet[str]:
    return frozenset(name for bit, name in _FEATURE_NAMES.items() if value & bit)


def _offload_bits(offloads: Union[bool, Iterable[str]]) -> int:
    if offloads is True:
        names: Iterable[str] = DEFAULT_OFFLOADS
    elif offloads is False or offloads is None:
        names = ()
    elif isinstance(offloads, str):
        raise TypeError(f"offloads={offloads!r}: expected True, False or a set of names from {OFFLOAD_NAMES}")
    else:
        names = list(offloads)
    bits = 0
    for n in names:
        if n not in _core.OFFLOADS:
            raise ValueError(f"offloads: unknown offload {n!r}; allowed: {', '.join(OFFLOAD_NAMES)}")
        bits |= _core.OFFLOADS[n]
    if bits & ~_core.OFFLOADS["csum"] and not bits & _core.OFFLOADS["csum"]:
        raise ValueError(f"offloads={sorted(names)!r}: segmentation offloads need 'csum' too")
    return bits


def offload_names(bits: int) -> FrozenSet[str]:
    return frozenset(n for n, b in _core.OFFLOADS.items() if bits & b)


def _uid(value: Union[int, str], arg: str) -> int:
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return pwd.getpwnam(value).pw_uid if arg == "owner" else grp.getgrnam(value).gr_gid
        except KeyError:
            raise ValueError(f"{arg}={value!r}: no such {'user' if arg == 'owner' else 'group'}") from None
    raise ValueError(f"{arg}={value!r}: expected a non-negative id or a name")


def _existing(name: str) -> Optional[dict]:
    """The TUN/TAP details of the device called `name` in this thread's
    namespace, or None when there is none (or `name` is a pattern)."""
    if "%" in name:
        return None
    try:
        socket.if_nametoindex(name)
    except OSError:
        return None
    try:
        return Link(name).tun_info()
    except TunpumpError:   # gone in between
        return None


def _check_attach(name: str, have: dict, mode: str, pi: bool, multi_queue: bool, vnet_hdr: bool) -> None:
    """Refuse to attach to an existing device with other flags. The kernel
    itself refuses another mode or multi_queue, but for vnet_hdr and pi it
    either rewrites the device's flags (a device with no queue open, e.g. a
    persistent one) or ignores the caller's (a multi-queue device with
    queues open); both would leave the caller or the device's other users
    with the wrong packet prefix."""
    want = {"mode": mode, "multi_queue": multi_queue, "vnet_hdr": vnet_hdr, "pi": pi}
    diffs = [f"it has {k}={have[k]!r}, asked {k}={want[k]!r}" for k in want if have[k] != want[k]]
    if diffs:
        raise DeviceConflictError(
            errno.EINVAL, f"cannot attach to {name!r}: a device of that name exists with other flags "
                          f"({'; '.join(diffs)}); attach with its flags, or delete it first")


class Device:
    """A TUN or TAP device with one open fd per queue.

    Creates the device when the name is free, or attaches to an existing one
    whose mode, multi_queue, vnet_hdr and pi match (anything else raises
    DeviceConflictError and leaves the device as it was); ``exclusive=True``
    insists on creating. A constructor that fails leaves nothing behind: a
    device it made persistent is removed. Closing the last fd of a
    non-persistent device removes it.

    All fds are O_NONBLOCK and O_CLOEXEC: the pump needs non-blocking fds, and
    :meth:`read` waits with poll, so Python callers still get blocking reads.
    """

    def __init__(
        self,
        name: str = "tp%d",
        mode: str = "tun",
        *,
        queues: int = 1,
        multi_queue: Optional[bool] = None,
        vnet_hdr: bool = False,
        vnet_hdr_size: int = 12,
        offloads: Union[bool, Iterable[str]] = True,
        pi: bool = False,
        exclusive: bool = False,
        persist: Optional[bool] = None,
        owner: Optional[Union[int, str]] = None,
        group: Optional[Union[int, str]] = None,
        netns: Optional[str] = None,
        tun_path: str = "/dev/net/tun",
    ) -> None:
        self._fds: List[int] = []
        if not isinstance(name, str) or not name:
            raise ValueError(f"name={name!r}: expected a non-empty interface name or pattern like 'tp%d'")
        if len(name.encode()) > IFNAMSIZ - 1:
            raise ValueError(f"name={name!r}: {len(name.encode())} bytes, interface names are at most 15 bytes")
        if "/" in name or any(c.isspace() for c in name):
            raise ValueError(f"name={name!r}: interface names cannot hold '/' or white space")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected 'tun' or 'tap'")
        if isinstance(queues, bool) or not isinstance(queues, int) or not 1 <= queues <= MAX_QUEUES:
            raise ValueError(f"queues={queues!r}: expected an integer from 1 to {MAX_QUEUES}")
        if multi_queue is None:
            multi_queue = queues > 1
        if queues > 1 and not multi_queue:
            raise ValueError(f"queues={queues}: more than one queue needs multi_queue=True")
        if vnet_hdr_size not in VNET_HDR_SIZES:
            raise ValueError(f"vnet_hdr_size={vnet_hdr_size!r}: expected 10 or 12")
        wanted = _offload_bits(offloads) if vnet_hdr else 0
        if not vnet_hdr and offloads not in (True, False, None) and _offload_bits(offloads):
            raise ValueError("offloads: need vnet_hdr=True (the kernel describes offloaded packets in that header)")

        uid = _uid(owner, "owner") if owner is not None else None   # before anything is made
        gid = _uid(group, "group") if group is not None else None

        if netns is not None and not netns_exists(netns):
            raise FileNotFoundError(errno.ENOENT, f"netns={netns!r}: no such network namespace")

        self.mode = mode
        self.pi = bool(pi)
        self.multi_queue = bool(multi_queue)
        self.vnet_hdr = bool(vnet_hdr)
        self.vnet_hdr_size = vnet_hdr_size if vnet_hdr else 0
        self.netns = netns
        self.tun_path = tun_path
        self._offload_bits = 0

        flags = _core.FLAGS["IFF_TUN" if mode == "tun" else "IFF_TAP"]
        if not pi:
            flags |= _core.FLAGS["IFF_NO_PI"]
        if multi_queue:
            flags |= _core.FLAGS["IFF_MULTI_QUEUE"]
        if vnet_hdr:
            flags |= _core.FLAGS["IFF_VNET_HDR"]
        self._flags = flags

        step = "open"
        self.name = name
        self._users: Dict[int, "weakref.ref"] = {}
        existing: Optional[dict] = None
        persist_changed = False
        try:
            with entered(netns):
                existing = _existing(name)
                if existing is not None and not exclusive:
                    _check_attach(name, existing, mode, self.pi, self.multi_queue, self.vnet_hdr)
                for q in range(queues):
                    qflags = flags | (_core.FLAGS["IFF_TUN_EXCL"] if exclusive and q == 0 else 0)
                    try:
                        fd, self.name = _core.open_queue(tun_path, self.name, qflags)
                    except OSError as exc:
                        step = getattr(exc, "step", "open")   # the binding names the failed call
                        raise
                    self._fds.append(fd)
                step = "TUNGETIFF"
                self._check_flags_in_force()
                step = "configure"
                if vnet_hdr:
                    step = "TUNSETVNETHDRSZ"
                    _core.set_vnet_hdr_sz(self._fds[0], vnet_hdr_size)
                    step = "TUNSETOFFLOAD"
                    self._offload_bits = _core.negotiate_offloads(self._fds[0], wanted)
                if persist is not None:
                    step = "TUNSETPERSIST"
                    _core.set_persist(self._fds[0], persist)
                    persist_changed = bool(persist) != bool(existing and existing["persist"])
                if uid is not None:
                    step = "TUNSETOWNER"
                    _core.set_owner(self._fds[0], uid)
                if gid is not None:
                    step = "TUNSETGROUP"
                    _core.set_group(self._fds[0], gid)
                self.ifindex = socket.if_nametoindex(self.name)
        except OSError as exc:
            self._undo_persist(persist_changed, existing)
            self.close()
            if isinstance(exc, TunpumpError):
                raise
            raise device_error(exc, name=name, path=tun_path, step=step,
                               exclusive=exclusive) from None
        except BaseException:
            self._undo_persist(persist_changed, existing)
            self.close()
            raise

    def _undo_persist(self, changed: bool, existing: Optional[dict]) -> None:
        """A failed constructor leaves the device's persistence as it found
        it: a device it made persistent goes away with its fds."""
        if changed and self._fds:
            try:
                _core.set_persist(self._fds[0], bool(existing and existing["persist"]))
            except OSError:
                pass

    def _check_flags_in_force(self) -> None:
        """Refuse an attach whose flags the kernel did not apply: a new queue
        of a multi-queue device that already has queues keeps the device's
        flags whatever the caller asked. TUNGETIFF reports the device's
        flags, except bit 0x1000 (IFF_NO_PI, shared with IFF_NOFILTER): PI
        was compared before attaching (_check_attach)."""
        got = _core.get_iff(self._fds[0])[1]
        bits = (("mode", _core.FLAGS["IFF_TAP"]), ("multi_queue", _core.FLAGS["IFF_MULTI_QUEUE"]),
                ("vnet_hdr", _core.FLAGS["IFF_VNET_HDR"]))
        have: Dict[str, object] = {k: bool(got & b) for k, b in bits}
        have["mode"] = "tap" if have["mode"] else "tun"
        want = {"mode": self.mode, "multi_queue": self.multi_queue, "vnet_hdr": self.vnet_hdr}
        diffs = [f"it has {k}={have[k]!r}, asked {k}={want[k]!r}" for k in want if have[k] != want[k]]
        if diffs:
            raise DeviceConflictError(
                errno.EINVAL, f"cannot attach to {self.name!r}: the kernel kept the device's own "
                              f"flags ({'; '.join(diffs)}); attach with its flags")

    # -- introspection -------------------------------------------------
    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.queues} queue(s)"
        return f"<Device {self.name!r} {self.mode} {state}>"

    @property
    def closed(self) -> bool:
        return not self._fds

    @property
    def queues(self) -> int:
        return len(self._fds)

    @property
    def fds(self) -> List[int]:
        return list(self._fds)

    def fileno(self, queue: int = 0) -> int:
        return self._fds[self._check_queue(queue)]

    @property
    def offloads(self) -> FrozenSet[str]:
        """The offloads the kernel accepted and that are in force."""
        return offload_names(self._offload_bits)

    @property
    def prefix_size(self) -> int:
        """Bytes before each packet on read and write: PI (4) + vnet_hdr."""
        return (PI_SIZE if self.pi else 0) + self.vnet_hdr_size

    @property
    def flags(self) -> FrozenSet[str]:
        """The device's flags as TUNGETIFF reports them. TUNGETIFF reuses bit
        0x1000 for IFF_NOFILTER (no socket filter on this fd), which is the
        same bit as IFF_NO_PI, so that bit comes from how the device was
        opened (the kernel rejects an attach whose PI flag differs)."""
        raw = _core.get_iff(self.fileno())[1] & ~_core.FLAGS["IFF_NO_PI"] & ~_core.FLAGS["IFF_DETACH_QUEUE"]
        if not self.pi:
            raw |= _core.FLAGS["IFF_NO_PI"]
        return _flag_names(raw)

    @property
    def features(self) -> FrozenSet[str]:
        """What this kernel's TUN driver supports (TUNGETFEATURES)."""
        return _flag_names(_core.get_features(self.fileno()))

    @property
    def link(self) -> Link:
        """Netlink configuration of this device (up, MTU, addresses, netns)."""
        return Link(self.name, self.netns)

    def info(self) -> dict:
        return {
            "name": self.name, "ifindex": self.ifindex, "mode": self.mode,
            "queues": self.queues, "multi_queue": self.multi_queue, "pi": self.pi,
            "vnet_hdr": self.vnet_hdr, "vnet_hdr_size": self.vnet_hdr_size,
            "offloads": sorted(self.offloads), "flags": sorted(self.flags),
            "netns": self.netns,
        }

    # -- queue and tunctl control --------------------------------------
    def _check_queue(self, queue: int) -> int:
        if self.closed:
            raise ValueError("I/O operation on a closed device")
        if isinstance(queue, bool) or not isinstance(queue, int) or not 0 <= queue < len(self._fds):
            raise ValueError(f"queue={queue!r}: expected 0..{len(self._fds) - 1}")
        return queue

    def _ioctl(self, fn, step: str, *args) -> None:
        try:
            fn(*args)
        except OSError as exc:
            raise device_error(exc, name=self.name, path=self.tun_path, step=step) from None

    def detach_queue(self, queue: int) -> None:
        """Stop the kernel from using this queue (TUNSETQUEUE IFF_DETACH_QUEUE)."""
        q = self._check_queue(queue)
        self._ioctl(_core.set_queue, "TUNSETQUEUE", self._fds[q], False)

    def attach_queue(self, queue: int) -> None:
        q = self._check_queue(queue)
        self._ioctl(_core.set_queue, "TUNSETQUEUE", self._fds[q], True)

    def queue_attached(self, queue: int) -> bool:
        """Whether the kernel uses this queue (TUNGETIFF on its fd)."""
        fd = self._fds[self._check_queue(queue)]
        return not _core.get_iff(fd)[1] & _core.FLAGS["IFF_DETACH_QUEUE"]

    def set_persist(self, on: bool = True) -> None:
        """Keep the device after the last fd closes (tunctl -p / -d)."""
        self._ioctl(_core.set_persist, "TUNSETPERSIST", self.fileno(), on)

    def set_owner(self, owner: Union[int, str]) -> None:
        self._ioctl(_core.set_owner, "TUNSETOWNER", self.fileno(), _uid(owner, "owner"))

    def set_group(self, group: Union[int, str]) -> None:
        self._ioctl(_core.set_group, "TUNSETGROUP", self.fileno(), _uid(group, "group"))

    def set_offloads(self, offloads: Union[bool, Iterable[str]]) -> FrozenSet[str]:
        """Change the offloads (vnet_hdr devices only); returns those in force."""
        if not self.vnet_hdr:
            raise ValueError("offloads: the device has no vnet_hdr, so it can have no offloads")
        bits = _offload_bits(offloads)
        try:
            self._offload_bits = _core.negotiate_offloads(self.fileno(), bits)
        except OSError as exc:
            raise device_error(exc, name=self.name, path=self.tun_path, step="TUNSETOFFLOAD") from None
        return self.offloads

    def move_to_netns(self, netns: str) -> None:
        """Move the device into another namespace; its fds keep working."""
        self.link.move_to_netns(netns)
        self.netns = netns
        with entered(netns):
            self.ifindex = socket.if_nametoindex(self.name)

    # -- packet I/O ----------------------------------------------------
    def read(self, queue: int = 0, timeout: Optional[float] = None, *, prefix: bool = True) -> bytes:
        """Read one packet. With ``prefix=True`` (the default) it comes as the
        kernel hands it over, after the device's PI and vnet_hdr prefix if it
        has them; ``prefix=False`` returns the bare packet (see
        tunpump.prefix.strip: a partial checksum is completed, a GSO
        super-packet raises SuperPacketError carrying the whole frame).
        Blocks up to `timeout` seconds (None: forever); raises TimeoutError
        when nothing arrived. Pump.inject() takes the same `prefix` argument
        but defaults to the bare packet: inject(dev.read(), prefix=True) or
        inject(dev.read(prefix=False))."""
        fd = self._fds[self._check_queue(queue)]
        check_prefix_flag(prefix)
        while True:
            try:
                frame = os.read(fd, READ_SIZE)
                return frame if prefix else strip_prefix(frame, pi=self.pi, vnet_hdr_size=self.vnet_hdr_size)
            except BlockingIOError:
                pass
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(None if timeout is None else max(0, int(timeout * 1000))):
                raise TimeoutError(errno.ETIMEDOUT, f"no packet on {self.name} queue {queue} within {timeout} s")

    def write(self, packet: bytes, queue: int = 0, *, prefix: bool = True) -> int:
        """Write one packet. With ``prefix=True`` (the default) `packet` starts
        with the device's PI / vnet_hdr prefix if it has them; with
        ``prefix=False`` it is bare and a plain prefix is put before it (PI
        with the packet's EtherType, a vnet_hdr without GSO: its checksums
        must be complete). Returns the bytes of `packet` written."""
        fd = self._fds[self._check_queue(queue)]
        data = packet if check_prefix_flag(prefix) else self._framed(packet)
        return os.write(fd, data) - (len(data) - len(packet))

    def _framed(self, packet: bytes) -> bytes:
        """A bare packet with this device's plain prefix before it."""
        if not isinstance(packet, (bytes, bytearray, memoryview)):
            raise TypeError(f"packet: expected bytes, bytearray or memoryview, not {type(packet).__name__}")
        if not self.prefix_size:
            return packet
        return build_prefix(packet, mode=self.mode, pi=self.pi, vnet_hdr_size=self.vnet_hdr_size) + bytes(packet)

    def packets(self, queue: int = 0, *, prefix: bool = True, buffer: int = 64) -> PacketStream:
        """asyncio: this queue's packets as an async iterator, read with the
        running loop's reader callback::

            async for packet in dev.packets(queue=0): ...

        `prefix` as in read(). At most `buffer` packets are read ahead of the
        consumer; then the loop stops reading the queue (the kernel queues,
        then drops, as for any slow reader) until half have been taken.
        Closing the device ends the iteration; ``async with`` (or aclose(),
        or leaving the loop) removes the reader."""
        self._check_queue(queue)
        return PacketStream(self, queue, prefix=prefix, buffer=buffer)

    async def recv(self, queue: int = 0, *, prefix: bool = True) -> bytes:
        """asyncio: the next packet of this queue (`prefix` as in read()).
        Cancelling it loses no packet. ValueError if the device is closed."""
        self._check_queue(queue)
        return await aio_recv(self, queue, prefix)

    async def send(self, packet: bytes, queue: int = 0, *, prefix: bool = True) -> int:
        """asyncio: write one packet (`prefix` as in write()), waiting for the
        queue to take it when the kernel says EAGAIN. Concurrent sends on a
        queue go out in call order; a cancelled send writes nothing."""
        self._check_queue(queue)
        data = packet if check_prefix_flag(prefix) else self._framed(packet)
        return await aio_send(self, queue, data) - (len(data) - len(packet))

    # -- lifetime ------------------------------------------------------
    def _add_user(self, user) -> None:
        """`user` (a running pump, or an event loop's reader/writer on a
        queue: tunpump.aio) reads and writes this device's fds until it calls
        _remove_user; close() stops it first."""
        self._users[id(user)] = weakref.ref(user)

    def _remove_user(self, user) -> None:
        self._users.pop(id(user), None)

    def close(self) -> None:
        """Close every queue fd. A non-persistent device goes away with the
        last. Pumps still running on the device are stopped first (as by
        their stop()), so no worker is left on a closed fd number that a new
        device could reuse."""
        for ref in list(getattr(self, "_users", {}).values()):
            user = ref()
            if user is not None:
                user.stop()
        fds, self._fds = getattr(self, "_fds", []), []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@off_loop
def list_devices(netns: Optional[str] = None) -> List[dict]:
    """Every TUN/TAP device in the namespace, as the kernel describes it
    (safe inside a running asyncio loop, like Link's calls)."""
    from .link import netlink
    with netlink(netns) as ipr:
        names = [m.get_attr("IFLA_IFNAME") for m in ipr.get_links()
                 if (m.get_attr("IFLA_LINKINFO") or {}) and
                 m.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "tun"]
    out = []
    for n in names:
        info = Link(n, netns).tun_info()
        if info is not None:
            out.append(info)
    return out


def remove(name: str, netns: Optional[str] = None, tun_path: str = "/dev/net/tun") -> None:
    """Remove a persistent device (tunctl -d): attach with its own flags,
    clear TUNSETPERSIST and close. A non-persistent device goes away with its
    last fd, so for one that is still open this raises DeviceConflictError."""
    info = Link(name, netns).tun_info()
    if info is None:
        raise TunpumpError(errno.ENODEV, f"{name!r} is not a TUN/TAP device")
    if not info["persist"]:
        raise DeviceConflictError(
            errno.EBUSY, f"{name!r} is not persistent: it goes away when its owner closes it")
    dev = Device(name, info["mode"], multi_queue=info["multi_queue"], vnet_hdr=info["vnet_hdr"],
                 pi=info["pi"], offloads=False, netns=netns, tun_path=tun_path)
    try:
        dev.set_persist(False)
    finally:
        dev.close()
