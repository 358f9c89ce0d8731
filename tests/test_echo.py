"""The seeds' echo example for real: the kernel in a namespace pings through a
device, and a Python loop on the device API answers."""
import threading

import pytest

from helpers.packets import echo_reply_v4, echo_reply_v6, tap_echo_reply
from tunpump import Device


def answer(dev, reply_fn, stop):
    answered = 0
    while not stop.is_set():
        try:
            pkt = dev.read(timeout=0.1)
        except TimeoutError:
            continue
        reply = reply_fn(pkt)
        if reply:
            dev.write(reply)
            answered += 1
    return answered


def run_echo(ns, mode, reply_fn, family):
    n = ns.make()
    with Device("tpecho", mode, netns=n) as dev:
        link = dev.link.up()
        if mode == "tun":
            link.add_address("198.18.0.1/32", peer="198.18.0.2")
            link.add_address("fd00::1/128", peer="fd00::2", nodad=True)
        else:
            link.add_address("198.18.0.1/24")
            link.add_address("fd00::1/64", nodad=True)
        stop = threading.Event()
        t = threading.Thread(target=answer, args=(dev, reply_fn, stop), daemon=True)
        t.start()
        try:
            target = "198.18.0.2" if family == 4 else "fd00::2"
            res = ns.ping(n, target, count=3)
        finally:
            stop.set()
            t.join(5)
        assert res.returncode == 0, res.stdout + res.stderr
        assert " 0% packet loss" in res.stdout


@pytest.mark.parametrize("family", [4, 6])
def test_tun_echo(ns, family):
    run_echo(ns, "tun", lambda p: echo_reply_v4(p) or echo_reply_v6(p), family)


@pytest.mark.parametrize("family", [4, 6])
def test_tap_echo_answers_arp_and_nd(ns, family):
    run_echo(ns, "tap", tap_echo_reply, family)


def test_pi_header_on_read(ns):
    """Without IFF_NO_PI every packet starts with flags and an EtherType."""
    n = ns.make()
    with Device("tppi", pi=True, netns=n) as dev:
        dev.link.up().add_address("198.18.0.1/32", peer="198.18.0.2")
        ns.run(n, "ping", "-c", "1", "-W", "1", "198.18.0.2")
        pkt = dev.read(timeout=2)
        while pkt[4] >> 4 != 4:  # skip anything that is not our IPv4 echo
            pkt = dev.read(timeout=2)
        assert pkt[:4] == b"\x00\x00\x08\x00"
        assert pkt[4 + 9] == 1  # ICMP
