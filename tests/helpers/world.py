"""The pump tests' world: namespaces n1 and n2, optionally joined by a veth
underlay (198.18.10.1/24 <-> .2, fd00:10::1/64 <-> ::2), and a device in
each (a: tpua in n1, b: tpub in n2) with inner addresses 198.18.11.1 <-> .2
and fd00:11::1 <-> ::2. Everything is removed with the namespaces (the `ns`
fixture), even when a test fails."""
from __future__ import annotations

from typing import Optional, Tuple, Union

from tunpump import Device

from .nettest import Namespaces

Pair = Union[bool, Tuple[bool, bool]]


def _pair(v: Pair) -> Tuple[bool, bool]:
    return (v, v) if isinstance(v, bool) else (bool(v[0]), bool(v[1]))


class World:
    """`vnet` and `pi` are one flag for both devices or a pair (a, b).
    `underlay=False` makes no veth (a relay needs none); `mtu=None` keeps the
    device's default; `make_b=False` leaves tpub to the test (simpletun);
    `a_kw` / `b_kw` are more Device arguments (offloads=...) for a / b."""

    def __init__(self, ns: Namespaces, mtu: Optional[int] = 1400, queues: int = 1, vnet: Pair = False,
                 mode: str = "tun", make_b: bool = True, underlay: bool = True, pi: Pair = False,
                 a_kw: Optional[dict] = None, b_kw: Optional[dict] = None) -> None:
        self.ns = ns
        self.a: Optional[Device] = None
        self.b: Optional[Device] = None
        ns.on_cleanup(self.close)
        self.n1, self.n2 = ns.make(), ns.make()
        if underlay:
            va, vb = ns.veth(self.n1, self.n2, "198.18.10.1/24", "198.18.10.2/24")
            ns.run(self.n1, "ip", "addr", "add", "fd00:10::1/64", "dev", va, "nodad")
            ns.run(self.n2, "ip", "addr", "add", "fd00:10::2/64", "dev", vb, "nodad")
        vnets, pis = _pair(vnet), _pair(pi)
        self.a = self._dev(self.n1, "tpua", 1, mtu, mode,
                           {"queues": queues, "vnet_hdr": vnets[0], "pi": pis[0], **(a_kw or {})})
        if make_b:
            self.b = self._dev(self.n2, "tpub", 2, mtu, mode,
                               {"queues": queues, "vnet_hdr": vnets[1], "pi": pis[1], **(b_kw or {})})

    @staticmethod
    def _dev(n, name, i, mtu, mode, kw):
        d = Device(name, mode, netns=n, **kw)
        other = 3 - i
        link = d.link.up()
        if mtu is not None:
            link.set_mtu(mtu)
        if mode == "tun":
            link.add_address(f"198.18.11.{i}/32", peer=f"198.18.11.{other}")
            link.add_address(f"fd00:11::{i}/128", peer=f"fd00:11::{other}", nodad=True)
        else:
            link.add_address(f"198.18.11.{i}/24")
            link.add_address(f"fd00:11::{i}/64", nodad=True)
        return d

    def close(self) -> None:
        for d in (self.a, self.b):
            if d is not None:
                d.close()


def check_traffic(w: World, nbytes: int = 64 << 20, inner=(4, 6)) -> None:
    """Ping across for each inner family, then a TCP transfer checked by SHA-256."""
    for fam in inner:
        dst = "198.18.11.2" if fam == 4 else "fd00:11::2"
        r = w.ns.ping(w.n1, dst)
        assert r.returncode == 0, r.stdout + r.stderr
    dst = "198.18.11.2" if inner[0] == 4 else "fd00:11::2"
    res = w.ns.transfer(w.n1, w.n2, dst, nbytes)
    assert res["received"]["bytes"] == nbytes
    assert res["received"]["sha256"] == res["sent"]["sha256"]


def assert_stats_add_up(stats) -> None:
    """Nothing is lost silently: what came in went out, was dropped with a
    reason, or was punted to Python (a PUNT verdict, a transform's TO_PYTHON)."""
    for direction in ("to_endpoint", "to_device"):
        d = stats.direction(direction)
        assert d.packets_in == d.packets_out + d.dropped + d.punted, (direction, d)


def pair(ns, *, vnet=(False, False), queues=1, pi=(False, False), mode="tun"):
    """The World of a relay: no underlay, the devices' default MTU."""
    w = World(ns, mtu=None, queues=queues, vnet=vnet, pi=pi, mode=mode, underlay=False)
    return w.n1, w.n2, w.a, w.b
