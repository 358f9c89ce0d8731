"""The seeds' echo example for real: the kernel in a namespace pings through a
device, and a Python responder on the asyncio API (Device.packets / send)
answers. The README's example itself runs here too."""
import asyncio
import os
import re
import select
import signal

import pytest

from helpers.nettest import sh
from helpers.packets import echo_reply_v4, echo_reply_v6, tap_echo_reply
from tunpump import Device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_echo_example() -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```python\n(# echo\.py[^\n]*\n.*?)```", text, re.S)
    assert len(blocks) == 1, "README.md should hold one ```python block starting with '# echo.py'"
    return blocks[0]


def test_readme_echo_example(ns):
    """README's echo.py, run as written inside a namespace: ping gets every
    reply, Ctrl-C ends it cleanly and the device goes with it."""
    n = ns.make()
    p = ns.python(n, "-c", readme_echo_example(), cwd=ROOT)
    ready, _, _ = select.select([p.stdout], [], [], 30)
    assert ready, "the example did not start within 30 s"
    line = p.stdout.readline()
    assert "answering pings to 198.18.0.2 on tpecho" in line, line + p.stderr.read()
    res = ns.ping(n, "198.18.0.2", count=3)
    assert res.returncode == 0 and " 0% packet loss" in res.stdout, res.stdout + res.stderr
    p.send_signal(signal.SIGINT)   # by PID: the process this test started
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert sh("ip", "-n", n, "link", "show", "tpecho", check=False).returncode != 0


async def respond(dev, reply_fn):
    """An echo responder on bare packets, whatever the device's prefix."""
    answered = 0
    async for packet in dev.packets(prefix=False):
        reply = reply_fn(packet)
        if reply:
            await dev.send(reply, prefix=False)
            answered += 1
    return answered


def run_echo(ns, mode, reply_fn, family, **dev_args):
    n = ns.make()
    with Device("tpecho", mode, netns=n, **dev_args) as dev:
        link = dev.link.up()
        if mode == "tun":
            link.add_address("198.18.0.1/32", peer="198.18.0.2")
            link.add_address("fd00::1/128", peer="fd00::2", nodad=True)
        else:
            link.add_address("198.18.0.1/24")
            link.add_address("fd00::1/64", nodad=True)
        target = "198.18.0.2" if family == 4 else "fd00::2"

        async def main():
            responder = asyncio.ensure_future(respond(dev, reply_fn))
            ping = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", n, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-w", "10", target,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await ping.communicate()
            dev.close()                      # ends the responder's iteration
            return ping.returncode, out.decode() + err.decode(), await responder

        code, out, answered = asyncio.run(asyncio.wait_for(main(), 30))
        assert code == 0 and " 0% packet loss" in out, out
        assert answered >= 3


# offloads=False: a GSO super-packet can never come, so prefix=False always applies
PREFIXES = [{}, {"pi": True}, {"vnet_hdr": True, "offloads": False}, {"pi": True, "vnet_hdr": True}]


@pytest.mark.parametrize("dev_args", PREFIXES, ids=["plain", "pi", "vnet", "pi+vnet"])
@pytest.mark.parametrize("family", [4, 6])
def test_tun_echo(ns, family, dev_args):
    run_echo(ns, "tun", lambda p: echo_reply_v4(p) or echo_reply_v6(p), family, **dev_args)


@pytest.mark.parametrize("dev_args", PREFIXES[:2], ids=["plain", "pi"])
@pytest.mark.parametrize("family", [4, 6])
def test_tap_echo_answers_arp_and_nd(ns, family, dev_args):
    run_echo(ns, "tap", tap_echo_reply, family, **dev_args)


def test_pi_header_on_read(ns):
    """Without IFF_NO_PI every packet starts with flags and an EtherType;
    prefix=False takes it off."""
    n = ns.make()
    with Device("tppi", pi=True, netns=n) as dev:
        dev.link.up().add_address("198.18.0.1/32", peer="198.18.0.2")
        ns.run(n, "ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.0.2")
        pkt = dev.read(timeout=2)
        while pkt[4] >> 4 != 4:  # skip anything that is not our IPv4 echo
            pkt = dev.read(timeout=2)
        assert pkt[:4] == b"\x00\x00\x08\x00"
        assert pkt[4 + 9] == 1  # ICMP
        bare = dev.read(timeout=2, prefix=False)
        while bare[0] >> 4 != 4:
            bare = dev.read(timeout=2, prefix=False)
        assert bare[9] == 1 and len(bare) == len(pkt) - 4
