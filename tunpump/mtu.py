"""The tunnel MTU: the underlay's MTU toward the peer minus what the
encapsulation adds, so that no packet the tunnel carries is fragmented."""
from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any, Dict, Optional, Tuple

from .errors import TunpumpError
from .link import netlink, route_mtu

log = logging.getLogger("tunpump")

IP_HEADER = {4: 20, 6: 40}
L4_HEADER = {"udp": 8, "tcp": 20}
FRAMING = {"udp": 0, "tcp": 2}   # simpletun's 2-byte length before each packet on TCP
FALLBACK_UNDERLAY_MTU = 1500


def overhead(version: int, proto: str, transform_overhead: int = 0) -> int:
    """Bytes the tunnel adds to each packet on the underlay: IP header, UDP
    or TCP header, framing, and a transform's own overhead (e.g. a cipher's
    nonce and tag)."""
    if version not in IP_HEADER:
        raise ValueError(f"version={version!r}: expected 4 or 6")
    if proto not in L4_HEADER:
        raise ValueError(f"proto={proto!r}: expected 'udp' or 'tcp'")
    if isinstance(transform_overhead, bool) or not isinstance(transform_overhead, int) or transform_overhead < 0:
        raise ValueError(f"transform_overhead={transform_overhead!r}: expected bytes >= 0")
    return IP_HEADER[version] + L4_HEADER[proto] + FRAMING[proto] + transform_overhead


def _local_mtu(local: str, netns: Optional[str], exclude: Optional[str]) -> Tuple[int, str]:
    """The MTU of the interface holding `local`, or for a wildcard address the
    smallest MTU of the namespace's other up interfaces (the peer may come
    in on any of them)."""
    wildcard = ipaddress.ip_address(local).is_unspecified
    with netlink(netns) as ipr:
        links = {m["index"]: m for m in ipr.get_links()}
        if not wildcard:
            for a in ipr.get_addr():
                if (a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")) == local and a["index"] in links:
                    m = links[a["index"]]
                    return int(m.get_attr("IFLA_MTU")), f"{m.get_attr('IFLA_IFNAME')}, which holds {local}"
    best: Optional[Tuple[int, str]] = None
    for m in links.values():
        name = m.get_attr("IFLA_IFNAME")
        if name == exclude or name == "lo" or not m["flags"] & 1:
            continue
        cand = (int(m.get_attr("IFLA_MTU")), f"{name}, the smallest of the up interfaces")
        best = cand if best is None or cand < best else best
    if best is None:
        return FALLBACK_UNDERLAY_MTU, "assumed: no interface is up"
    return best


def tunnel_mtu(proto: str, local: Tuple[str, int], remote: Optional[Tuple[str, int]], *,
               netns: Optional[str] = None, exclude: Optional[str] = None,
               transform_overhead: int = 0) -> Dict[str, Any]:
    """The default MTU for a tunnel device: the route toward `remote` (inside
    `netns`, where the endpoint's sockets live) or, without a known peer, the
    interface of `local`; minus overhead(). Returns {"mtu", "underlay_mtu",
    "via", "overhead"}."""
    host = remote[0] if remote is not None else local[0]
    version = ipaddress.ip_address(host).version
    ovh = overhead(version, proto, transform_overhead)
    if remote is not None:
        try:
            r = route_mtu(remote[0], netns)
            under, via = r["mtu"], f"route to {remote[0]} via {r['ifname']}"
        except TunpumpError as exc:
            log.warning("no route to %s (%s): packets for the peer are dropped until one exists",
                        remote[0], os.strerror(exc.errno or 101))
            under, via = FALLBACK_UNDERLAY_MTU, "assumed: no route to the peer"
    else:
        under, via = _local_mtu(local[0], netns, exclude)
    # 576: the least every IPv4 host must accept; a smaller underlay is a misconfiguration
    return {"mtu": max(576, min(65535, under - ovh)), "underlay_mtu": under, "via": via, "overhead": ovh}
