# Included by tunpump/_core.pyx (one module, split by job like csrc/): the pump (csrc/pump): CorePump.

cdef extern from "poll.h":
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout) nogil
    enum:
        POLLIN

cdef extern from "<string.h>":
    size_t strnlen(const char *s, size_t maxlen) nogil

cdef extern from "unistd.h":
    ssize_t read(int fd, void *buf, size_t count) nogil

cdef extern from "sys/socket.h":
    enum:
        AF_INET


cdef int _poll_in(int fd, int timeout_ms) noexcept nogil:
    cdef pollfd p
    p.fd = fd
    p.events = POLLIN
    p.revents = 0
    return poll(&p, 1, timeout_ms)


cdef void _drain(int fd) noexcept nogil:
    cdef uint64_t junk
    read(fd, &junk, sizeof(junk))


cdef int *_int_array(list values) except NULL:
    cdef int *arr = <int *>malloc(sizeof(int) * max(1, len(values)))
    if arr == NULL:
        raise MemoryError()
    for i, v in enumerate(values):
        arr[i] = v
    return arr


cdef void _set_fmt(tp_fmt *f, tuple fmt) except *:
    f.pi, f.vnet_hdr_sz, f.tap, f.offloads = fmt


cdef void _copy_addr(unsigned char *dst, Py_ssize_t room, bytes a, str what) except *:
    if len(a) > room:
        raise ValueError(f"{what}: {len(a)} address bytes, at most {room}")
    memcpy(dst, <const char *>a, len(a))


cdef void _set_sock(tp_sock_cfg *s, dict sock) except *:
    s.family = sock["family"]
    _copy_addr(s.local_addr, sizeof(s.local_addr), sock["local_addr"], "local_addr")
    s.local_port = sock["local_port"]
    remotes = sock.get("remotes") or []
    if len(remotes) > TP_MAX_PEERS:
        raise ValueError(f"remote: at most {TP_MAX_PEERS} peers, got {len(remotes)}")
    if remotes:
        s.has_remote = 1
        s.nremotes = len(remotes)
        for i, (a, port) in enumerate(remotes):
            _copy_addr(s.remote_addr[i], sizeof(s.remote_addr[i]), a, f"remotes[{i}]")
            s.remote_port[i] = port
    s.listen = sock.get("listen", 0)
    s.learn_peer = sock.get("learn_peer", 0)
    s.sock_buf = sock.get("sock_buf", 0)
    s.netns_fd = sock.get("netns_fd", -1)
    s.max_frame = sock.get("max_frame", 65535)
    s.peer_timeout_ns = sock.get("peer_timeout_ns", 0)


cdef void _set_ctl(tp_ctl_cfg *c, dict ctl) except *:
    c.enabled = ctl.get("enabled", 0)
    c.events = ctl.get("events", 0)
    c.table_size = ctl.get("table_size", 65536)
    c.idle_ns = ctl.get("idle_ns", 60 * 10**9)
    c.decision_ns = ctl.get("decision_ns", 10**9)
    c.default_verdict = ctl.get("default_verdict", TP_VERDICT_FORWARD)
    c.pending_limit = ctl.get("pending_limit", 256)
    c.punt_ring = ctl.get("punt_ring", TP_DEFAULT_PUNT_RING)


cdef dict _dir_dict(tp_dir_stats *d, tuple xf_reasons):
    out = {
        "packets_in": d.pkts_in, "bytes_in": d.bytes_in,
        "packets_out": d.pkts_out, "bytes_out": d.bytes_out,
        "batches": d.batches, "read_calls": d.read_calls, "write_calls": d.write_calls,
        "read_bytes": d.read_bytes, "write_bytes": d.write_bytes,
        "gso_split": d.gso_split, "gso_passed": d.gso_passed, "gro_built": d.gro_built,
        "gso_fallbacks": d.gso_fallbacks, "punted": d.punted,
        "drops": {DROP_REASONS[i]: d.drops[i] for i in range(TP_DROP__COUNT)},
    }
    for i, name in enumerate(xf_reasons):   # the transform's own: "<transform>_<reason>"
        out["drops"][name] = d.xf_drops[i]
    return out


cdef dict _worker_dict(tp_worker_stats *st, tuple xf_reasons):
    return {
        "to_endpoint": _dir_dict(&st.dir[0], xf_reasons),
        "to_device": _dir_dict(&st.dir[1], xf_reasons),
        "wakeups": st.wakeups, "connects": st.connects,
        "disconnects": st.disconnects, "protocol_errors": st.protocol_errors,
        "peers_learned": st.peer_learned, "refused_connections": st.refused_connections,
        "peers_moved": st.peers_moved, "roams_refused": st.roams_refused,
        "flows": {"new": st.flows_new, "evicted": st.flows_evicted, "active": st.flows_active,
                  "verdicts": st.verdicts, "decision_timeouts": st.decision_timeouts,
                  "events_lost": st.events_lost, "punted": st.punted},
    }


cdef class CorePump:
    """The C pump. tunpump.pump.Pump is the Python face; this only marshals.

    Any thread may call any method, close() included: a method takes the
    pump (`_acquire`, under the GIL) for as long as it uses it, and close()
    only detaches it; the last user frees it. So stats() or inject() racing
    close() never touch freed memory, and a callback run by dispatch() may
    close the pump."""
    cdef tp_pump *p
    cdef tp_pump *dead     # closed while in use: freed by the last user
    cdef int users
    cdef object transform  # the capsule the workers' cfg.xf points into: kept while they may run
    cdef tuple xf_reasons  # the transform's drop reasons as stats names them

    def __cinit__(self):
        self.p = NULL
        self.dead = NULL
        self.users = 0
        self.xf_reasons = ()

    cdef tp_pump *_acquire(self) noexcept:
        if self.p != NULL:
            self.users += 1
        return self.p

    cdef void _release(self) noexcept:
        cdef tp_pump *dead
        self.users -= 1
        if self.users == 0 and self.dead != NULL:
            dead, self.dead = self.dead, NULL
            with nogil:
                tp_pump_free(dead)

    def start(self, int kind, int batch, list dev_fds, tuple dev_fmt, list peer_fds=None,
              tuple peer_fmt=None, dict sock=None, dict ctl=None, transform=None):
        cdef tp_pump_cfg cfg
        cdef const char *err = NULL
        cdef tp_pump *out = NULL
        cdef int rc
        cdef int *dfds = NULL
        cdef int *pfds = NULL
        if self.p != NULL or self.dead != NULL:
            raise RuntimeError("already started")
        memset(&cfg, 0, sizeof(cfg))
        cfg.nworkers = len(dev_fds)
        cfg.batch = batch
        cfg.kind = kind
        cfg.sock.netns_fd = -1
        _set_fmt(&cfg.dev.fmt, dev_fmt)
        try:
            dfds = _int_array(dev_fds)
            cfg.dev.nfds = len(dev_fds)
            cfg.dev.fds = dfds
            if kind == TP_KIND_TUN:
                pfds = _int_array(peer_fds)
                cfg.peer_dev.nfds = len(peer_fds)
                cfg.peer_dev.fds = pfds
                _set_fmt(&cfg.peer_dev.fmt, peer_fmt)
            else:
                _set_sock(&cfg.sock, sock)
            if ctl:
                _set_ctl(&cfg.ctl, ctl)
            if transform is not None:
                cfg.xf = _transform_ptr(transform)
                self.xf_reasons = _transform_drop_names(cfg.xf)
            with nogil:
                rc = tp_pump_start(&cfg, &out, &err)
        finally:
            free(dfds)
            free(pfds)
        if rc < 0:
            raise _error(-rc, (err or b"start").decode())
        self.p = out
        self.transform = transform

    def stop(self):
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            return
        try:
            with nogil:
                tp_pump_stop(p)
        finally:
            self._release()

    def wait(self, int timeout_ms):
        """True when a worker ended on its own within timeout_ms."""
        cdef int r = 0
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            return False
        try:
            with nogil:
                r = tp_pump_wait(p, timeout_ms)
        finally:
            self._release()
        return bool(r)

    def error(self):
        """None, or (worker, errno, where) of the first worker that failed."""
        cdef int worker = -1
        cdef const char *where = NULL
        cdef int err
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            return None
        try:
            err = tp_pump_error(p, &worker, &where)
            if err == 0:
                return None
            return worker, -err, (where or b"?").decode()
        finally:
            self._release()

    def stats(self):
        """Per-worker counters, read without stopping the workers."""
        cdef tp_worker_stats st
        cdef tp_pump *p = self._acquire()
        out = []
        if p == NULL:
            return out
        try:
            for i in range(tp_pump_nworkers(p)):
                tp_pump_stats(p, i, &st)
                out.append(_worker_dict(&st, self.xf_reasons))
        finally:
            self._release()
        return out

    def wait_events(self, int timeout_ms):
        """Wait up to timeout_ms for workers' events (GIL released); True if any."""
        cdef int fd, n
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            return False
        try:
            fd = tp_pump_event_fd(p)
            with nogil:
                n = _poll_in(fd, timeout_ms)
                if n > 0:
                    _drain(fd)
        finally:
            self._release()
        return n > 0

    def dispatch(self, handler, int max_events=4096):
        """Hand waiting events to handler (see tunpump.control), post the
        verdicts it returns and wake the workers. Returns the number handled.
        A callback may close the pump: nothing of it is used afterwards."""
        cdef tp_pump *p = self._acquire()
        cdef int n = 0
        if p == NULL:
            return 0
        try:
            while n < max_events and self._dispatch_one(p, handler):
                n += 1
        finally:
            if self.p == p:
                tp_pump_kick(p)
            self._release()
        return n

    cdef bint _dispatch_one(self, tp_pump *p, handler) except -1:
        """Hand one event to handler; False when none is waiting or a
        callback closed the pump (its rings, and the event, are gone)."""
        cdef const uint8_t *data = NULL
        cdef int worker = 0
        cdef const tp_event *ev = tp_pump_next_event(p, &worker, &data)
        cdef int etype
        cdef int32_t flow
        cdef uint32_t gen
        if ev == NULL:
            return False
        etype, flow, gen = ev.type, ev.flow, ev.gen
        if etype == TP_EV_FLOW:
            verdict, route, ttl_ms = handler.on_flow(worker, flow, gen, _flow_key_raw(&ev.key), ev.packets, ev.bytes)
            if self.p != p:
                return False
            _post_verdict(p, worker, flow, gen, verdict, route, ttl_ms)
        elif etype == TP_EV_PACKET:
            view = PyMemoryView_FromMemory(<char *>data, ev.len, PyBUF_READ)
            try:
                handler.on_packet(worker, view, flow, _flow_key_raw(&ev.key), ev.packets, ev.bytes)
            finally:
                view.release()
        elif etype == TP_EV_EVICTED:
            handler.on_evicted(worker, flow, gen, _flow_key_raw(&ev.key), ev.packets, ev.bytes, ev.reason,
                               ev.age_ns)
        elif etype == TP_EV_PEER_UP or etype == TP_EV_PEER_DOWN:
            handler.on_peer(worker, etype == TP_EV_PEER_UP, ev.family,
                            (<const char *>ev.addr)[:sizeof(ev.addr)], ev.port)
        elif etype == TP_EV_PEER_MOVED:
            handler.on_peer_moved(worker, ev.peer, ev.family, (<const char *>ev.addr)[:sizeof(ev.addr)], ev.port)
        elif etype == TP_EV_ERROR:
            handler.on_error(worker, -ev.err, (ev.where or b"?").decode())
        elif etype == TP_EV_PUNT:
            handler.on_punt(worker, ev.dir, ev.peer, flow, ev.family,
                            (<const char *>ev.addr)[:sizeof(ev.addr)], ev.port, (<const char *>data)[:ev.len])
        if self.p != p:
            return False
        tp_pump_event_done(p, worker, etype)
        return True

    def inject_udp(self, int worker, int peer, const unsigned char[::1] data):
        cdef int rc
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            raise RuntimeError("the pump is not running")
        try:
            rc = tp_pump_inject_udp(p, worker, peer, &data[0] if len(data) else NULL, len(data))
        finally:
            self._release()
        _check(rc, "inject (UDP sendto)")

    def inject_udp_addr(self, int worker, int family, bytes addr, unsigned port,
                        const unsigned char[::1] data):
        """Send data through worker's UDP socket to (addr, port)."""
        cdef int rc
        cdef unsigned char a[16]
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            raise RuntimeError("the pump is not running")
        try:
            memset(a, 0, sizeof(a))
            _copy_addr(a, sizeof(a), addr, "address")
            rc = tp_pump_inject_udp_addr(p, worker, family, a, port, &data[0] if len(data) else NULL, len(data))
        finally:
            self._release()
        _check(rc, "inject (UDP sendto)")

    def inject_transform(self, int worker, int peer, const unsigned char[::1] data):
        """Queue data for the endpoint through the transform on worker."""
        cdef int rc
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            raise RuntimeError("the pump is not running")
        try:
            # Under the GIL: one producer at a time on each worker's ring.
            rc = tp_pump_inject_transform(p, worker, peer, &data[0] if len(data) else NULL, len(data))
        finally:
            self._release()
        _check(rc, "inject (through the transform)")

    def transform_control(self, int worker, const unsigned char[::1] msg):
        """Post msg to the transform's control() on worker (-1: all)."""
        cdef int rc
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            raise RuntimeError("the pump is not running")
        try:
            # Under the GIL: the message rings have one producer at a time.
            rc = tp_pump_transform_control(p, worker, &msg[0] if len(msg) else NULL, len(msg))
        finally:
            self._release()
        _check(rc, "transform control")

    def set_peer(self, int idx, int family, bytes addr, unsigned port):
        """Post peer idx's new address (addr b"": remove it) to every worker;
        peers_pending() says when they applied it."""
        cdef int rc
        cdef unsigned char a[16]
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            raise RuntimeError("the pump is not running")
        try:
            memset(a, 0, sizeof(a))
            _copy_addr(a, sizeof(a), addr, "address")
            # Under the GIL: one producer at a time on each worker's ring.
            rc = tp_pump_set_peer(p, idx, family, a if len(addr) else NULL, port)
        finally:
            self._release()
        _check(rc, "set peer")

    def peers_pending(self):
        """Workers that have not applied every peer change yet."""
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            return 0
        try:
            return tp_pump_peers_pending(p)
        finally:
            self._release()

    def get_peer(self, int worker, int idx):
        """(family, address bytes, port) of worker's peer idx now, or None."""
        cdef int rc, family = 0
        cdef unsigned port = 0
        cdef uint8_t a[16]
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            raise RuntimeError("the pump is not running")
        try:
            rc = tp_pump_get_peer(p, worker, idx, &family, a, &port)
        finally:
            self._release()
        if rc == -ENOENT:
            return None
        _check(rc, "get peer")
        return family, (<const char *>a)[:4 if family == AF_INET else 16], port

    def local_addr(self, int worker):
        """(family, address bytes, port) worker's UDP socket is bound to."""
        cdef int rc, family = 0
        cdef unsigned port = 0
        cdef uint8_t a[16]
        cdef tp_pump *p = self._acquire()
        if p == NULL:
            raise RuntimeError("the pump is not running")
        try:
            rc = tp_pump_local_addr(p, worker, &family, a, &port)
        finally:
            self._release()
        _check(rc, "getsockname")
        return family, (<const char *>a)[:4 if family == AF_INET else 16], port

    def close(self):
        """Stop and free the pump (at once, or when the last method still
        using it on another thread returns). Idempotent."""
        cdef tp_pump *p = self.p
        self.p = NULL
        if p == NULL:
            return
        if self.users > 0:
            self.dead = p
            return
        with nogil:
            tp_pump_free(p)

    def __dealloc__(self):
        # No method is running: each holds a reference to self.
        if self.p != NULL:
            with nogil:
                tp_pump_free(self.p)
            self.p = NULL
        if self.dead != NULL:
            with nogil:
                tp_pump_free(self.dead)
            self.dead = NULL


cdef void _post_verdict(tp_pump *p, int worker, int32_t flow, uint32_t gen, int verdict, int route,
                        uint32_t ttl_ms) noexcept:
    cdef int tries = 0
    # -EAGAIN: the worker's verdict ring is full; wake it and retry a while.
    while tp_pump_verdict(p, worker, flow, gen, verdict, route, ttl_ms) == -EAGAIN and tries <= 1000:
        tp_pump_kick(p)
        tries += 1
