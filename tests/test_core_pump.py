"""The binding's pump object (tunpump._core.CorePump) across threads and
callbacks, on fake devices (no root). Regressions of issue 12, bugs 2 and 11;
tests/test_sanitizers.py runs them under ASan as well."""
import pytest
import threading

from helpers.fakedev import FakeDevice, fmt
from helpers.packets import udp_packet
from tunpump import _core

CTL = {"enabled": 1, "events": 1, "table_size": 64, "idle_ns": 10**9, "decision_ns": 10**9,
       "default_verdict": _core.VERDICT_FORWARD, "pending_limit": 16}


def relay(ctl=None):
    a, b = FakeDevice("fa"), FakeDevice("fb")
    core = _core.CorePump()
    core.start(_core.KIND_TUN, 64, a.fds, fmt(a), b.fds, fmt(b), ctl=ctl)
    return core, a, b


def test_close_while_other_threads_use_the_pump():
    """close() frees the pump while stats(), error(), wait() and wait_events()
    run on other threads: none of them may touch freed memory (before the
    fix, close() freed it with the GIL released while self.p still pointed
    at it; ASan: heap-use-after-free in tp_pump_stats)."""
    for _ in range(20):
        core, a, b = relay(ctl={"events": 1})
        go, done = threading.Event(), threading.Event()
        errors = []

        def hammer(call):
            go.wait()
            try:
                while not done.is_set():
                    call()
                for _ in range(10):   # and after close: harmless answers
                    call()
            except BaseException as exc:
                errors.append(exc)

        calls = [core.stats, core.error, lambda: core.wait(1), lambda: core.wait_events(1)]
        threads = [threading.Thread(target=hammer, args=(c,)) for c in calls + [core.stats]]
        for t in threads:
            t.start()
        a.send(udp_packet("198.18.11.1", "198.18.11.2", 40000, 7000, b"x"))
        go.set()
        core.stop()
        core.close()
        done.set()
        for t in threads:
            t.join(10)
        assert not errors, errors
        assert core.stats() == [] and core.error() is None and not core.wait(1)
        a.close()
        b.close()


class _Closer:
    """A handler whose callback closes the pump it is called from."""

    def __init__(self, core):
        self.core = core
        self.flows = 0

    def on_flow(self, queue, flow_id, gen, key, packets, nbytes):
        self.flows += 1
        self.core.close()
        return _core.VERDICT_FORWARD, 0, 0

    def on_packet(self, *args):
        pass

    def on_evicted(self, *args):
        pass

    def on_peer(self, *args):
        pass

    def on_error(self, *args):
        pass


def test_dispatch_survives_a_callback_that_closes_the_pump():
    """Regression: dispatch() posted the verdict through the pump that on_flow
    had just closed (a NULL / freed pointer)."""
    core, a, b = relay(ctl=CTL)
    try:
        for port in (7000, 7001, 7002):   # three flows: three events waiting
            a.send(udp_packet("198.18.11.1", "198.18.11.2", 40000, port, b"x"))
        handler = _Closer(core)
        for _ in range(100):
            if core.wait_events(50) or handler.flows:
                if core.dispatch(handler) == 0 and handler.flows:
                    break
        assert handler.flows == 1            # nothing more was handed out after the close
        assert core.dispatch(handler) == 0 and core.stats() == []
    finally:
        core.close()
        a.close()
        b.close()


def test_flow_key_is_decoded_by_the_binding():
    key = _core.flow_key(udp_packet("198.18.11.1", "198.18.11.2", 40000, 7000, b"x"))
    assert isinstance(key, _core.FlowKey)
    assert (key.kind, key.version, key.protocol, key.sport, key.dport) == ("ip", 4, 17, 40000, 7000)
    assert key.src[:4] == bytes([198, 18, 11, 1]) and key.dst[:4] == bytes([198, 18, 11, 2])


def test_errors_carry_the_failing_step():
    try:
        _core.set_persist(-1, True)
    except OSError as exc:
        assert exc.step == "TUNSETPERSIST"
        assert str(exc.strerror).startswith("TUNSETPERSIST: ")
    else:
        raise AssertionError("TUNSETPERSIST on fd -1 succeeded")
    try:
        _core.open_queue("/nonexistent/tun", "tpq0", _core.FLAGS["IFF_TUN"])
    except FileNotFoundError as exc:
        assert exc.step == "open"
    else:
        raise AssertionError("opening a missing tun path succeeded")


def test_limits_come_from_c():
    assert _core.MAX_PEERS == 16 and _core.MAX_BATCH == 256 and _core.IFNAMSIZ == 16
    assert _core.VNET_HDR_LEN == 10 and _core.MAX_PENDING == 4096
    assert _core.DROP_REASONS[:3] == ("enobufs", "too_big", "malformed")
    assert "too_many_segments" in _core.DROP_REASONS
    from tunpump import UDPEndpoint, Verdict
    import pytest
    with pytest.raises(ValueError, match=f"0 to {_core.MAX_PEERS} peers"):
        UDPEndpoint(("198.18.0.1", 1), [("198.18.0.2", 1)] * (_core.MAX_PEERS + 1))
    with pytest.raises(ValueError, match=f"from 0 to {_core.MAX_PEERS - 1}"):
        Verdict.route(_core.MAX_PEERS)



def test_flow_key_bytes_decode_with_a_length_check():
    """Events carry a key's raw bytes and Flow decodes them on first use
    (test_control's callbacks read them); the decoder checks the length."""
    from tunpump import Flow
    key = _core.flow_key(udp_packet("198.18.11.1", "198.18.11.2", 40000, 7000, b"x"))
    flow = Flow(0, 1, key)
    assert flow.dport == 7000 and flow.sport == 40000 and flow.src == "198.18.11.1"
    with pytest.raises(ValueError, match="raw: 3 bytes, a flow key is"):
        _core.decode_flow_key(b"abc")


def test_inject_after_stop_never_sends_on_a_reused_fd():
    """stop() on one thread while inject() runs on another: inject must never
    reach sendto on a closed fd, or on the fd number the kernel hands out
    next. The endpoints' sockets now stay open until the pump is freed, and
    an inject after stop() is refused with ESHUTDOWN. Before the fix, stop()
    closed the UDP socket and the next socket made took its number, so the
    inject below went out through that stranger (here a unix socket: it
    failed with another errno; on a UDP socket it would have been sent)."""
    import errno
    import socket

    from tunpump.endpoint import UDPEndpoint

    dev = FakeDevice("fu")
    # bound, never sending: the remote is only configuration (nothing is injected before stop)
    ep = UDPEndpoint(("127.0.0.1", 0), ("127.0.0.1", 9))
    core = _core.CorePump()
    core.start(_core.KIND_UDP, 64, dev.fds, fmt(dev), sock=ep.sock_cfg(1))
    core.stop()
    stranger = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for inject in (lambda: core.inject_udp(0, 0, b"x"),
                       lambda: core.inject_udp_addr(0, socket.AF_INET, bytes([127, 0, 0, 1]), 9, b"x")):
            with pytest.raises(OSError) as exc:
                inject()
            assert exc.value.errno == errno.ESHUTDOWN, exc.value
        stranger[1].setblocking(False)
        with pytest.raises(BlockingIOError):
            stranger[1].recv(10)          # nothing went out through the socket that took a freed number
    finally:
        core.close()
        for s in stranger:
            s.close()
        dev.close()
