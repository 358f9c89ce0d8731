"""tunctl semantics: the owner of a persistent device attaches to it without
CAP_NET_ADMIN; anyone else is refused with a clear error."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
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


@pytest.fixture
def tun_node():
    # /dev/net/tun is 0600 on this machine; a private node with the usual 0666
    # mode lets an unprivileged process open it without touching /dev. It sits
    # in its own directory under /tmp, which that process can traverse.
    d = tempfile.mkdtemp(prefix="tunpump-")
    os.chmod(d, 0o755)
    node = os.path.join(d, "tun")
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    os.chmod(node, 0o666)
    yield node
    shutil.rmtree(d)


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
