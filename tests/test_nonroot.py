"""tunctl semantics: the owner of a persistent device attaches to it without
CAP_NET_ADMIN; anyone else is refused with a clear error."""
import subprocess
import sys
import textwrap

import pytest

from tunpump import Device
from tunpump.device import remove

NOBODY = 65534

ATTACH = textwrap.dedent("""
    import os, sys
    from tunpump import Device, PrivilegeError
    tun_path, name, uid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # drops every capability
    try:
        with Device(name, "tap", tun_path=tun_path) as dev:
            print("attached", dev.name, dev.queues)
    except PrivilegeError as exc:
        print("refused", exc.errno, exc)
""")


def attach_as(ns_name, tun_path, name, uid):
    cmd = ["ip", "netns", "exec", ns_name, sys.executable, "-c", ATTACH, tun_path, name, str(uid)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("owner_kind", ["owner", "group"])
def test_owner_attaches_without_cap_net_admin(ns, tun_node, owner_kind):
    n = ns.make()
    kwargs = {"owner": NOBODY} if owner_kind == "owner" else {"group": NOBODY}
    with Device("tpown", "tap", persist=True, netns=n, **kwargs):
        pass
    try:
        res = attach_as(n, tun_node, "tpown", NOBODY)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("attached tpown 1"), res.stdout + res.stderr
    finally:
        remove("tpown", netns=n)


def test_stranger_is_refused(ns, tun_node):
    n = ns.make()
    with Device("tpstr", "tap", persist=True, owner=NOBODY - 1, netns=n):
        pass
    try:
        res = attach_as(n, tun_node, "tpstr", NOBODY)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("refused 1 "), res.stdout + res.stderr
        assert "CAP_NET_ADMIN" in res.stdout
    finally:
        remove("tpstr", netns=n)


def test_creating_needs_cap_net_admin(ns, tun_node):
    n = ns.make()
    res = attach_as(n, tun_node, "tpnew", NOBODY)
    assert res.stdout.startswith("refused 1 "), res.stdout + res.stderr
    assert "CAP_NET_ADMIN" in res.stdout
