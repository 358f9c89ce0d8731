"""The device layer against the real kernel: every option lands, and the
kernel's own report (iproute2's JSON) agrees."""
import errno
import os

import pytest

from helpers.nettest import ip_link_json
from tunpump import DeviceConflictError, Device, TunpumpError, TunUnavailableError
from tunpump.device import list_devices, remove


def info_data(ns, name):
    return ip_link_json(ns, name)["linkinfo"]["info_data"]


@pytest.mark.parametrize("mode", ["tun", "tap"])
@pytest.mark.parametrize("pi", [False, True])
def test_mode_and_pi_land_in_kernel(ns, mode, pi):
    n = ns.make()
    with Device("tp%d", mode, pi=pi, netns=n) as dev:
        assert dev.name == "tp0"  # a fresh namespace: the kernel picks tp0
        data = info_data(n, dev.name)
        assert data["type"] == mode
        assert data["pi"] is pi
        assert data["vnet_hdr"] is False
        assert data["multi_queue"] is False
        assert ("IFF_NO_PI" in dev.flags) is (not pi)
        assert ("IFF_TAP" if mode == "tap" else "IFF_TUN") in dev.flags
        assert dev.ifindex == ip_link_json(n, dev.name)["ifindex"]


@pytest.mark.parametrize("queues", [2, 8])
def test_multi_queue_vnet_hdr(ns, queues):
    n = ns.make()
    with Device("tpmq", queues=queues, vnet_hdr=True, netns=n) as dev:
        data = info_data(n, "tpmq")
        assert data["multi_queue"] is True
        assert data["vnet_hdr"] is True
        assert data["numqueues"] == queues
        assert dev.queues == queues and len(set(dev.fds)) == queues
        assert {"IFF_MULTI_QUEUE", "IFF_VNET_HDR"} <= dev.flags


def test_offloads_requested_and_reported(ns):
    n = ns.make()
    with Device("tpoff", vnet_hdr=True, netns=n) as dev:
        # This kernel (6.x) takes all five; older kernels fall back without USO.
        assert {"csum", "tso4", "tso6"} <= dev.offloads
        assert dev.offloads <= {"csum", "tso4", "tso6", "uso4", "uso6"}
        assert dev.set_offloads(False) == frozenset()
        assert dev.set_offloads({"csum"}) == {"csum"}
    with Device("tpoff2", vnet_hdr=True, offloads=False, netns=n) as dev:
        assert dev.offloads == frozenset()


def test_vnet_hdr_size_is_set(ns):
    from tunpump import _core
    n = ns.make()
    for size in (10, 12):
        with Device("tpvh", vnet_hdr=True, vnet_hdr_size=size, netns=n) as dev:
            assert _core.get_vnet_hdr_sz(dev.fileno()) == size
            assert dev.prefix_size == size


def test_queue_detach_attach(ns):
    n = ns.make()
    with Device("tpq", queues=3, netns=n) as dev:
        dev.detach_queue(1)
        assert info_data(n, "tpq")["numdisabled"] == 1
        assert not dev.queue_attached(1)
        dev.attach_queue(1)
        assert info_data(n, "tpq")["numdisabled"] == 0
        with pytest.raises(ValueError, match="queue=3"):
            dev.detach_queue(3)


def test_persist_owner_group(ns):
    n = ns.make()
    with Device("tpp", "tap", persist=True, owner=65534, group=65533, netns=n):
        pass
    data = info_data(n, "tpp")  # still there after close: persistent
    assert data["persist"] is True
    assert data["user"] in ("nobody", 65534, "65534")
    assert str(data["group"]) in ("65533",) or data["group"]  # named group or id
    assert [d["name"] for d in list_devices(n)] == ["tpp"]
    assert list_devices(n)[0]["owner"] == 65534 and list_devices(n)[0]["group"] == 65533
    remove("tpp", netns=n)
    assert list_devices(n) == []


def test_close_removes_non_persistent(ns):
    n = ns.make()
    dev = Device("tpgone", queues=2, netns=n)
    assert [d["name"] for d in list_devices(n)] == ["tpgone"]
    dev.close()
    assert dev.closed
    assert list_devices(n) == []


def test_fds_are_cloexec_and_nonblocking(ns):
    import fcntl
    n = ns.make()
    with Device("tpfd", queues=2, netns=n) as dev:
        for fd in dev.fds:
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK


def test_features_reports_kernel_support(ns):
    n = ns.make()
    with Device("tpft", netns=n) as dev:
        assert {"IFF_TUN", "IFF_TAP", "IFF_NO_PI", "IFF_VNET_HDR", "IFF_MULTI_QUEUE"} <= dev.features


def test_read_timeout(ns):
    n = ns.make()
    with Device("tprt", netns=n) as dev:
        with pytest.raises(TimeoutError):
            dev.read(timeout=0.05)


# --- errors -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    ({"name": "a" * 16}, "at most 15 bytes"),
    ({"name": ""}, "name=''"),
    ({"mode": "tan"}, "mode='tan'"),
    ({"queues": 0}, "queues=0"),
    ({"queues": 257}, "queues=257"),
    ({"queues": 2, "multi_queue": False}, "multi_queue"),
    ({"vnet_hdr_size": 11}, "vnet_hdr_size=11"),
    ({"vnet_hdr": True, "offloads": {"tso9"}}, "unknown offload 'tso9'"),
    ({"vnet_hdr": True, "offloads": {"tso4"}}, "need 'csum'"),
    ({"offloads": {"csum"}}, "need vnet_hdr"),
])
def test_bad_arguments(kwargs, match):
    # Validation happens before any system call: no privileges needed.
    with pytest.raises(ValueError, match=match):
        Device(**kwargs)


def test_unknown_option():
    with pytest.raises(TypeError, match="colour"):
        Device("tpx", colour="red")


def test_missing_tun_node(tmp_path):
    with pytest.raises(TunUnavailableError) as ei:
        Device("tpx", tun_path=str(tmp_path / "tun"))
    assert ei.value.errno == errno.ENOENT
    assert isinstance(ei.value, FileNotFoundError)
    assert str(tmp_path / "tun") in str(ei.value)


def test_name_in_use_with_other_flags(ns):
    n = ns.make()
    with Device("tpbusy", "tun", netns=n):
        with pytest.raises(DeviceConflictError, match="other flags") as ei:
            Device("tpbusy", "tap", netns=n)
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(DeviceConflictError):
            Device("lo", netns=n)
        # single queue, already open: busy
        with pytest.raises(DeviceConflictError) as ei:
            Device("tpbusy", "tun", netns=n)
        assert ei.value.errno == errno.EBUSY


def test_exclusive_refuses_existing(ns):
    n = ns.make()
    with Device("tpex", queues=2, netns=n):
        with pytest.raises(DeviceConflictError, match="exclusive"):
            Device("tpex", queues=2, exclusive=True, netns=n)
        with Device("tpex", queues=2, netns=n) as more:  # attaching more queues is fine
            assert info_data(n, "tpex")["numqueues"] == 4
            assert more.queues == 2


def test_too_many_queues_from_kernel(ns):
    n = ns.make()
    with Device("tpmany", queues=256, netns=n):
        with pytest.raises(DeviceConflictError, match="256") as ei:
            Device("tpmany", queues=1, multi_queue=True, netns=n)
        assert ei.value.errno == errno.E2BIG


def test_missing_netns():
    with pytest.raises(FileNotFoundError, match="tp-no-such-ns"):
        Device("tpx", netns="tp-no-such-ns")


def test_remove_non_persistent_refused(ns):
    n = ns.make()
    with Device("tpnp", netns=n):
        with pytest.raises(DeviceConflictError, match="not persistent"):
            remove("tpnp", netns=n)
    with pytest.raises(TunpumpError, match="no interface"):
        remove("tpnp", netns=n)


def test_closed_device_io():
    dev = Device.__new__(Device)
    dev._fds = []
    with pytest.raises(ValueError, match="closed"):
        dev.read()
