"""Link configuration over netlink (pyroute2): up/down, MTU, addresses, and
moving an interface to another network namespace. Works for any interface,
not only tunpump's devices."""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import threading
from typing import Any, Callable, Dict, List, Optional, TypeVar, cast

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .errors import PrivilegeError, TunpumpError


def _netlink_error(exc: NetlinkError, what: str) -> OSError:
    code = exc.code
    if code == 1:  # EPERM
        return PrivilegeError(code, f"{what} needs CAP_NET_ADMIN")
    return TunpumpError(code, f"{what} failed: {exc}")


_F = TypeVar("_F", bound=Callable[..., Any])


def off_loop(fn: _F) -> _F:
    """Make a netlink call safe inside a running asyncio loop. pyroute2's
    synchronous API drives an event loop of its own in the calling thread,
    which fails with "This event loop is already running" there; so when this
    thread runs a loop, the call runs in a fresh thread (which starts in this
    thread's network namespace) and this thread waits for it: about a netlink
    round trip, like any blocking call. Outside a loop it runs as is."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return fn(*args, **kwargs)
        box: Dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = fn(*args, **kwargs)
            except BaseException as exc:   # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"tunpump-netlink-{fn.__name__}", daemon=True)
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        return box["result"]
    return cast(_F, wrapper)


def netlink(netns: Optional[str] = None) -> IPRoute:
    """A netlink socket in `netns`. It is made with this thread briefly inside
    the namespace (a socket stays bound to the namespace it was made in),
    rather than with pyroute2's netns= option, which forks a helper process
    for every socket. pyroute2 cannot make one in a thread that runs an
    asyncio loop: call it from a function wrapped in off_loop."""
    from .netns import entered
    with entered(netns):
        return IPRoute()


class Link:
    """A network interface, by name, in a namespace (None: the caller's)."""

    def __init__(self, name: str, netns: Optional[str] = None) -> None:
        self.name = name
        self.netns = netns

    def __repr__(self) -> str:
        return f"Link({self.name!r}, netns={self.netns!r})"

    def _ipr(self) -> IPRoute:
        return netlink(self.netns)

    def _index(self, ipr: IPRoute) -> int:
        found = ipr.link_lookup(ifname=self.name)
        if not found:
            where = f"namespace {self.netns!r}" if self.netns else "this namespace"
            raise TunpumpError(19, f"no interface named {self.name!r} in {where}")
        return found[0]

    @off_loop
    def _set(self, what: str, **kwargs: Any) -> None:
        with self._ipr() as ipr:
            idx = self._index(ipr)
            try:
                ipr.link("set", index=idx, **kwargs)
            except NetlinkError as exc:
                raise _netlink_error(exc, f"{what} on {self.name!r}") from None

    @property
    @off_loop
    def ifindex(self) -> int:
        with self._ipr() as ipr:
            return self._index(ipr)

    def up(self) -> "Link":
        self._set("setting the link up", state="up")
        return self

    def down(self) -> "Link":
        self._set("setting the link down", state="down")
        return self

    def set_mtu(self, mtu: int) -> "Link":
        if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
            raise ValueError(f"mtu={mtu!r}: expected an integer from 68 to 65535")
        self._set("setting the MTU", mtu=mtu)
        return self

    @off_loop
    def add_address(self, address: str, peer: Optional[str] = None, *, nodad: bool = False) -> "Link":
        """Add "ADDR/PREFIX" (IPv4 or IPv6); `peer` is the far end of a
        point-to-point link (TUN), like `ip addr add A peer B`. `nodad` skips
        IPv6 duplicate address detection, so the address is usable at once."""
        try:
            iface = ipaddress.ip_interface(address)
        except ValueError:
            raise ValueError(f"address={address!r}: expected ADDR/PREFIX, e.g. 198.18.0.1/24 or fd00::1/64") from None
        kwargs: Dict[str, Any] = {"address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if peer is not None:
            try:
                p = ipaddress.ip_address(peer.split("/")[0])
            except ValueError:
                raise ValueError(f"peer={peer!r}: expected an IP address") from None
            if p.version != iface.version:
                raise ValueError(f"peer={peer!r}: not the same IP version as address={address!r}")
            # For a point-to-point address IFA_ADDRESS is the peer, IFA_LOCAL ours.
            kwargs = {"local": str(iface.ip), "address": str(p), "prefixlen": iface.network.prefixlen}
        if nodad and iface.version == 6:
            kwargs["flags"] = 0x02  # IFA_F_NODAD
        with self._ipr() as ipr:
            idx = self._index(ipr)
            try:
                ipr.addr("add", index=idx, **kwargs)
            except NetlinkError as exc:
                raise _netlink_error(exc, f"adding address {address} to {self.name!r}") from None
        return self

    @off_loop
    def addresses(self) -> List[str]:
        """The interface's addresses as "ADDR/PREFIX" strings."""
        with self._ipr() as ipr:
            idx = self._index(ipr)
            out = []
            for msg in ipr.get_addr(index=idx):
                addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                out.append(f"{addr}/{msg['prefixlen']}")
            return out

    @off_loop
    def info(self) -> Dict[str, Any]:
        """State, MTU, flags and kind as the kernel reports them."""
        with self._ipr() as ipr:
            idx = self._index(ipr)
            msg = ipr.get_links(idx)[0]
            linkinfo = msg.get_attr("IFLA_LINKINFO")
            kind = linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo else None
            return {
                "name": msg.get_attr("IFLA_IFNAME"),
                "ifindex": idx,
                "state": msg.get_attr("IFLA_OPERSTATE"),
                "up": bool(msg["flags"] & 1),
                "mtu": msg.get_attr("IFLA_MTU"),
                "flags": msg["flags"],
                "kind": kind,
                "txqueues": msg.get_attr("IFLA_NUM_TX_QUEUES"),
            }

    @off_loop
    def tun_info(self) -> Optional[Dict[str, Any]]:
        """TUN/TAP details (IFLA_TUN_*) or None when the link is not TUN/TAP."""
        with self._ipr() as ipr:
            idx = self._index(ipr)
            msg = ipr.get_links(idx)[0]
            linkinfo = msg.get_attr("IFLA_LINKINFO")
            if not linkinfo or linkinfo.get_attr("IFLA_INFO_KIND") != "tun":
                return None
            data = linkinfo.get_attr("IFLA_INFO_DATA")
            get = data.get_attr
            return {
                "name": self.name,
                "ifindex": idx,
                "mode": "tun" if get("IFLA_TUN_TYPE") == 1 else "tap",
                "pi": bool(get("IFLA_TUN_PI")),
                "vnet_hdr": bool(get("IFLA_TUN_VNET_HDR")),
                "persist": bool(get("IFLA_TUN_PERSIST")),
                "multi_queue": bool(get("IFLA_TUN_MULTI_QUEUE")),
                "queues": get("IFLA_TUN_NUM_QUEUES"),
                "disabled_queues": get("IFLA_TUN_NUM_DISABLED_QUEUES"),
                "owner": get("IFLA_TUN_OWNER"),
                "group": get("IFLA_TUN_GROUP"),
                "up": bool(msg["flags"] & 1),
                "mtu": msg.get_attr("IFLA_MTU"),
            }

    def move_to_netns(self, netns: str) -> "Link":
        """Move the interface into namespace `netns` (fds stay valid)."""
        from . import _core
        import os
        fd = _core.netns_open(netns)
        try:
            self._set(f"moving to namespace {netns!r}", net_ns_fd=fd)
        finally:
            os.close(fd)
        self.netns = netns
        return self

    @off_loop
    def delete(self) -> None:
        with self._ipr() as ipr:
            idx = self._index(ipr)
            try:
                ipr.link("del", index=idx)
            except NetlinkError as exc:
                raise _netlink_error(exc, f"deleting {self.name!r}") from None


@off_loop
def route_mtu(dst: str, netns: Optional[str] = None) -> Dict[str, Any]:
    """The path MTU toward `dst` as the routing table sees it, like
    `ip route get DST`: the route's own mtu metric when it has one, else the
    outgoing interface's MTU. Returns {"mtu", "ifname", "ifindex"}; raises
    TunpumpError (ENETUNREACH) when no route leads there."""
    try:
        ipaddress.ip_address(dst)
    except ValueError:
        raise ValueError(f"dst={dst!r}: expected an IP address") from None
    with netlink(netns) as ipr:
        try:
            routes = ipr.route("get", dst=dst)
        except NetlinkError as exc:
            import os
            raise TunpumpError(exc.code, f"no route to {dst}: {os.strerror(exc.code)}") from None
        msg = routes[0]
        oif = msg.get_attr("RTA_OIF")
        metrics = msg.get_attr("RTA_METRICS")
        mtu = metrics.get_attr("RTAX_MTU") if metrics else None
        links = ipr.get_links(oif) if oif else []
        ifname = links[0].get_attr("IFLA_IFNAME") if links else None
        if not mtu:
            mtu = links[0].get_attr("IFLA_MTU") if links else None
    if not mtu:
        raise TunpumpError(101, f"no route to {dst} with a known MTU")
    return {"mtu": int(mtu), "ifname": ifname, "ifindex": oif}


# TUNSETOFFLOAD's flags as the netdev features they turn on (drivers/net/tun.c):
# USO is one feature, set only when both uso4 and uso6 are.
_TUN_FEATURES = (("csum", "tx-checksum-ip-generic"), ("tso4", "tx-tcp-segmentation"),
                 ("tso6", "tx-tcp6-segmentation"), ("tso_ecn", "tx-tcp-ecn-segmentation"),
                 ("uso4", "tx-udp-segmentation"), ("uso6", "tx-udp-segmentation"))


@off_loop
def tun_offloads(name: str, netns: Optional[str] = None) -> List[str]:
    """The offloads in force on TUN/TAP device `name` (tunpump's names:
    csum, tso4, ...), read back from the device's features (ethtool)."""
    from pyroute2.ethtool import Ethtool
    from .netns import entered
    with entered(netns):
        eth = Ethtool()   # its ioctl socket belongs to the namespace it is made in
    try:
        feats = eth.get_features(name).features
    finally:
        eth.close()
    return [n for n, f in _TUN_FEATURES if f in feats and feats[f].enable]


@off_loop
def link_counters(name: str, netns: Optional[str] = None) -> Dict[str, int]:
    """The kernel's interface counters (IFLA_STATS64): packets, bytes, errors
    and drops each way, as `ip -s link` shows them."""
    keys = ("rx_packets", "rx_bytes", "rx_errors", "rx_dropped",
            "tx_packets", "tx_bytes", "tx_errors", "tx_dropped")
    with netlink(netns) as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise TunpumpError(19, f"no interface named {name!r}")
        st = ipr.get_links(found[0])[0].get_attr("IFLA_STATS64") or {}
    return {k: int(st.get(k, 0)) for k in keys}
