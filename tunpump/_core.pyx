# cython: language_level=3
"""Thin binding over csrc/. Functions raise OSError(errno, "<call>: <reason>");
tunpump.errors turns those into the documented exception types."""

from libc.string cimport strerror
from libc.errno cimport ENOENT

cdef extern from "tp_device.h":
    int tp_device_open_queue(const char *path, const char *name, unsigned flags,
                             char *name_out, const char **failed_step) nogil
    int tp_device_set_vnet_hdr_sz(int fd, int size) nogil
    int tp_device_get_vnet_hdr_sz(int fd, int *size) nogil
    int tp_device_negotiate_offloads(int fd, unsigned wanted, unsigned *got) nogil
    int tp_device_set_queue(int fd, int attach) nogil
    int tp_device_set_persist(int fd, int on) nogil
    int tp_device_set_owner(int fd, unsigned uid) nogil
    int tp_device_set_group(int fd, unsigned gid) nogil
    int tp_device_get_features(int fd, unsigned *features) nogil
    int tp_device_get_iff(int fd, char *name_out, unsigned *flags) nogil

cdef extern from "tp_netns.h":
    int tp_netns_open(const char *name_or_path) nogil
    int tp_netns_enter(int ns_fd, int *saved) nogil
    int tp_netns_restore(int saved) nogil

cdef extern from "tp_compat.h":
    enum:
        IFF_TUN, IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_TUN_EXCL, IFF_MULTI_QUEUE
        IFF_PERSIST, IFF_ATTACH_QUEUE, IFF_DETACH_QUEUE
        TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6

FLAGS = {
    "IFF_TUN": IFF_TUN, "IFF_TAP": IFF_TAP, "IFF_NO_PI": IFF_NO_PI,
    "IFF_VNET_HDR": IFF_VNET_HDR, "IFF_TUN_EXCL": IFF_TUN_EXCL,
    "IFF_MULTI_QUEUE": IFF_MULTI_QUEUE, "IFF_PERSIST": IFF_PERSIST,
    "IFF_ATTACH_QUEUE": IFF_ATTACH_QUEUE, "IFF_DETACH_QUEUE": IFF_DETACH_QUEUE,
}
OFFLOADS = {
    "csum": TUN_F_CSUM, "tso4": TUN_F_TSO4, "tso6": TUN_F_TSO6,
    "tso_ecn": TUN_F_TSO_ECN, "uso4": TUN_F_USO4, "uso6": TUN_F_USO6,
}


cdef int _check(int rc, str call) except -1:
    if rc < 0:
        raise OSError(-rc, f"{call}: {strerror(-rc).decode()}")
    return rc


def open_queue(str path, str name, unsigned flags):
    """Open one queue fd; returns (fd, kernel_name)."""
    cdef char out[16]
    cdef const char *step = NULL
    cdef bytes bpath = path.encode()
    cdef bytes bname = name.encode()
    cdef const char *cpath = bpath
    cdef const char *cname = bname
    cdef int fd
    with nogil:
        fd = tp_device_open_queue(cpath, cname, flags, out, &step)
    if fd < 0:
        _check(fd, (step or b"open").decode())
    return fd, out.decode()


def set_vnet_hdr_sz(int fd, int size):
    _check(tp_device_set_vnet_hdr_sz(fd, size), "TUNSETVNETHDRSZ")


def get_vnet_hdr_sz(int fd):
    cdef int size = 0
    _check(tp_device_get_vnet_hdr_sz(fd, &size), "TUNGETVNETHDRSZ")
    return size


def negotiate_offloads(int fd, unsigned wanted):
    cdef unsigned got = 0
    _check(tp_device_negotiate_offloads(fd, wanted, &got), "TUNSETOFFLOAD")
    return got


def set_queue(int fd, bint attach):
    _check(tp_device_set_queue(fd, attach), "TUNSETQUEUE")


def set_persist(int fd, bint on):
    _check(tp_device_set_persist(fd, on), "TUNSETPERSIST")


def set_owner(int fd, unsigned uid):
    _check(tp_device_set_owner(fd, uid), "TUNSETOWNER")


def set_group(int fd, unsigned gid):
    _check(tp_device_set_group(fd, gid), "TUNSETGROUP")


def get_features(int fd):
    cdef unsigned features = 0
    _check(tp_device_get_features(fd, &features), "TUNGETFEATURES")
    return features


def get_iff(int fd):
    cdef char out[16]
    cdef unsigned flags = 0
    _check(tp_device_get_iff(fd, out, &flags), "TUNGETIFF")
    return out.decode(), flags


def netns_open(str name_or_path):
    """Open a namespace by name (/run/netns/NAME) or path; returns an fd."""
    cdef bytes b = name_or_path.encode()
    cdef int fd = tp_netns_open(b)
    if fd == -ENOENT:
        raise FileNotFoundError(ENOENT, f"network namespace {name_or_path!r} does not exist")
    return _check(fd, "open netns")


def netns_enter(int ns_fd):
    """Switch the calling thread into ns_fd; returns a token for netns_restore."""
    cdef int saved = -1
    _check(tp_netns_enter(ns_fd, &saved), "setns")
    return saved


def netns_restore(int saved):
    _check(tp_netns_restore(saved), "setns (restore)")


# ---- the pump ---------------------------------------------------------------

from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset, memcpy
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ

cdef extern from "poll.h":
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout) nogil
    enum:
        POLLIN

cdef extern from "unistd.h":
    ssize_t read(int fd, void *buf, size_t count) nogil


cdef int _poll_in(int fd, int timeout_ms) noexcept nogil:
    cdef pollfd p
    p.fd = fd
    p.events = POLLIN
    p.revents = 0
    return poll(&p, 1, timeout_ms)


cdef void _drain(int fd) noexcept nogil:
    cdef uint64_t junk
    read(fd, &junk, 8)

cdef extern from "tp_pump.h":
    enum:
        TP_MAX_BATCH, TP_MAX_WORKERS, TP_MAX_PENDING, TP_KIND_TUN, TP_KIND_UDP, TP_KIND_TCP, TP_DROP__COUNT
    struct tp_fmt:
        int pi
        int vnet_hdr_sz
        int tap
        unsigned offloads
    struct tp_dev_cfg:
        int nfds
        const int *fds
        tp_fmt fmt
    struct tp_sock_cfg:
        int family
        unsigned char local_addr[16]
        unsigned local_port
        int has_remote
        int nremotes
        unsigned char remote_addr[16][16]
        unsigned remote_port[16]
        int listen
        int learn_peer
        int sock_buf
        int netns_fd
        unsigned max_frame
    struct tp_ctl_cfg:
        int enabled
        int events
        unsigned table_size
        long long idle_ns
        long long decision_ns
        unsigned char default_verdict
        unsigned pending_limit
    struct tp_pump_cfg:
        int nworkers
        int batch
        tp_dev_cfg dev
        int kind
        tp_dev_cfg peer_dev
        tp_sock_cfg sock
        tp_ctl_cfg ctl
    struct tp_dir_stats:
        uint64_t pkts_in, bytes_in, pkts_out, bytes_out
        uint64_t batches, read_calls, write_calls
        uint64_t read_bytes, write_bytes
        uint64_t gso_split, gso_passed, gro_built, gso_fallbacks
        uint64_t drops[12]
    struct tp_worker_stats:
        tp_dir_stats dir[2]
        uint64_t wakeups, connects, disconnects, protocol_errors, peer_learned
        uint64_t flows_new, flows_evicted, flows_active, verdicts, decision_timeouts, events_lost, punted
    struct tp_flow_key:
        pass
    struct tp_event:
        unsigned char type
        unsigned char reason
        unsigned short worker
        int flow
        unsigned gen
        int err
        unsigned len
        tp_flow_key key
        uint64_t packets, bytes
        long long age_ns
        const char *where
        unsigned char addr[16]
        unsigned short port
        unsigned char family
    struct tp_pump:
        pass
    const char *tp_drop_names[]
    int tp_pump_start(const tp_pump_cfg *cfg, tp_pump **out, const char **err) nogil
    int tp_pump_stop(tp_pump *p) nogil
    int tp_pump_wait(tp_pump *p, int timeout_ms) nogil
    int tp_pump_error(const tp_pump *p, int *worker, const char **where) nogil
    int tp_pump_nworkers(const tp_pump *p) nogil
    void tp_pump_stats(const tp_pump *p, int worker, tp_worker_stats *out) nogil
    void tp_pump_free(tp_pump *p) nogil
    int tp_pump_event_fd(const tp_pump *p) nogil
    const tp_event *tp_pump_next_event(tp_pump *p, int *worker, const unsigned char **data) nogil
    void tp_pump_event_done(tp_pump *p, int worker, int type) nogil
    int tp_pump_verdict(tp_pump *p, int worker, int flow, unsigned gen, int verdict, int route,
                        unsigned ttl_ms) nogil
    void tp_pump_kick(tp_pump *p) nogil
    int tp_pump_inject_udp(tp_pump *p, int worker, int route, const unsigned char *data, size_t len) nogil
    enum:
        TP_EV_FLOW, TP_EV_PACKET, TP_EV_EVICTED, TP_EV_PEER_UP, TP_EV_PEER_DOWN, TP_EV_ERROR
        TP_VERDICT_FORWARD, TP_VERDICT_DROP, TP_VERDICT_PUNT, TP_VERDICT_ROUTE

KIND_TUN, KIND_UDP, KIND_TCP = TP_KIND_TUN, TP_KIND_UDP, TP_KIND_TCP
VERDICT_FORWARD, VERDICT_DROP, VERDICT_PUNT, VERDICT_ROUTE = (
    TP_VERDICT_FORWARD, TP_VERDICT_DROP, TP_VERDICT_PUNT, TP_VERDICT_ROUTE)
MAX_BATCH = TP_MAX_BATCH
MAX_PENDING = TP_MAX_PENDING
DROP_REASONS = tuple(tp_drop_names[i].decode() for i in range(TP_DROP__COUNT))


cdef int *_int_array(list values) except NULL:
    cdef int *arr = <int *>malloc(sizeof(int) * max(1, len(values)))
    if arr == NULL:
        raise MemoryError()
    for i, v in enumerate(values):
        arr[i] = v
    return arr


cdef dict _dir_dict(tp_dir_stats *d):
    return {
        "packets_in": d.pkts_in, "bytes_in": d.bytes_in,
        "packets_out": d.pkts_out, "bytes_out": d.bytes_out,
        "batches": d.batches, "read_calls": d.read_calls, "write_calls": d.write_calls,
        "read_bytes": d.read_bytes, "write_bytes": d.write_bytes,
        "gso_split": d.gso_split, "gso_passed": d.gso_passed, "gro_built": d.gro_built,
        "gso_fallbacks": d.gso_fallbacks,
        "drops": {DROP_REASONS[i]: d.drops[i] for i in range(TP_DROP__COUNT)},
    }


cdef class CorePump:
    """The C pump. tunpump.pump.Pump is the Python face; this only marshals."""
    cdef tp_pump *p

    def __cinit__(self):
        self.p = NULL

    def start(self, int kind, int batch, list dev_fds, tuple dev_fmt, list peer_fds=None,
              tuple peer_fmt=None, dict sock=None, dict ctl=None):
        cdef tp_pump_cfg cfg
        cdef const char *err = NULL
        cdef tp_pump *out = NULL
        cdef int rc
        cdef int *dfds = NULL
        cdef int *pfds = NULL
        cdef bytes a
        if self.p != NULL:
            raise RuntimeError("already started")
        memset(&cfg, 0, sizeof(cfg))
        cfg.nworkers = len(dev_fds)
        cfg.batch = batch
        cfg.kind = kind
        dfds = _int_array(dev_fds)
        cfg.dev.nfds = len(dev_fds)
        cfg.dev.fds = dfds
        cfg.dev.fmt.pi, cfg.dev.fmt.vnet_hdr_sz, cfg.dev.fmt.tap, cfg.dev.fmt.offloads = dev_fmt
        cfg.sock.netns_fd = -1
        try:
            if kind == TP_KIND_TUN:
                pfds = _int_array(peer_fds)
                cfg.peer_dev.nfds = len(peer_fds)
                cfg.peer_dev.fds = pfds
                cfg.peer_dev.fmt.pi, cfg.peer_dev.fmt.vnet_hdr_sz, cfg.peer_dev.fmt.tap, cfg.peer_dev.fmt.offloads = peer_fmt
            else:
                cfg.sock.family = sock["family"]
                a = sock["local_addr"]
                memcpy(cfg.sock.local_addr, <const char *>a, len(a))
                cfg.sock.local_port = sock["local_port"]
                remotes = sock.get("remotes") or []
                if len(remotes) > 16:
                    raise ValueError(f"remote: at most 16 peers, got {len(remotes)}")
                if remotes:
                    cfg.sock.has_remote = 1
                    cfg.sock.nremotes = len(remotes)
                    for i, (a, port) in enumerate(remotes):
                        memcpy(cfg.sock.remote_addr[i], <const char *>a, len(a))
                        cfg.sock.remote_port[i] = port
                cfg.sock.listen = sock.get("listen", 0)
                cfg.sock.learn_peer = sock.get("learn_peer", 0)
                cfg.sock.sock_buf = sock.get("sock_buf", 0)
                cfg.sock.netns_fd = sock.get("netns_fd", -1)
                cfg.sock.max_frame = sock.get("max_frame", 65535)
            if ctl:
                cfg.ctl.enabled = ctl.get("enabled", 0)
                cfg.ctl.events = ctl.get("events", 0)
                cfg.ctl.table_size = ctl.get("table_size", 65536)
                cfg.ctl.idle_ns = ctl.get("idle_ns", 60 * 10**9)
                cfg.ctl.decision_ns = ctl.get("decision_ns", 10**9)
                cfg.ctl.default_verdict = ctl.get("default_verdict", TP_VERDICT_FORWARD)
                cfg.ctl.pending_limit = ctl.get("pending_limit", 256)
            with nogil:
                rc = tp_pump_start(&cfg, &out, &err)
        finally:
            free(dfds)
            free(pfds)
        if rc < 0:
            raise OSError(-rc, f"{(err or b'start').decode()}: {strerror(-rc).decode()}")
        self.p = out

    def stop(self):
        if self.p != NULL:
            with nogil:
                tp_pump_stop(self.p)

    def wait(self, int timeout_ms):
        """True when a worker ended on its own within timeout_ms."""
        cdef int r = 0
        if self.p == NULL:
            return False
        with nogil:
            r = tp_pump_wait(self.p, timeout_ms)
        return bool(r)

    def error(self):
        """None, or (worker, errno, where) of the first worker that failed."""
        cdef int worker = -1
        cdef const char *where = NULL
        cdef int err
        if self.p == NULL:
            return None
        err = tp_pump_error(self.p, &worker, &where)
        if err == 0:
            return None
        return worker, -err, (where or b"?").decode()

    def stats(self):
        """Per-worker counters, read without stopping the workers."""
        cdef tp_worker_stats st
        out = []
        if self.p == NULL:
            return out
        for i in range(tp_pump_nworkers(self.p)):
            tp_pump_stats(self.p, i, &st)
            out.append({
                "to_endpoint": _dir_dict(&st.dir[0]),
                "to_device": _dir_dict(&st.dir[1]),
                "wakeups": st.wakeups, "connects": st.connects,
                "disconnects": st.disconnects, "protocol_errors": st.protocol_errors,
                "peers_learned": st.peer_learned,
                "flows": {"new": st.flows_new, "evicted": st.flows_evicted, "active": st.flows_active,
                          "verdicts": st.verdicts, "decision_timeouts": st.decision_timeouts,
                          "events_lost": st.events_lost, "punted": st.punted},
            })
        return out

    def wait_events(self, int timeout_ms):
        """Wait up to timeout_ms for workers' events (GIL released); True if any."""
        cdef int fd, n
        cdef uint64_t junk
        if self.p == NULL:
            return False
        fd = tp_pump_event_fd(self.p)
        with nogil:
            n = _poll_in(fd, timeout_ms)
            if n > 0:
                _drain(fd)
        return n > 0

    def dispatch(self, handler, int max_events=4096):
        """Hand waiting events to handler (see tunpump.control), post the
        verdicts it returns and wake the workers. Returns the number handled."""
        cdef const tp_event *ev
        cdef const unsigned char *data = NULL
        cdef int worker = 0, n = 0, rc, tries
        cdef int etype
        if self.p == NULL:
            return 0
        try:
            while n < max_events:
                ev = tp_pump_next_event(self.p, &worker, &data)
                if ev == NULL:
                    break
                etype = ev.type
                if etype == TP_EV_FLOW:
                    key = (<const char *>&ev.key)[:sizeof(tp_flow_key)]
                    verdict, route, ttl_ms = handler.on_flow(worker, ev.flow, ev.gen, key, ev.packets, ev.bytes)
                    tries = 0
                    while True:
                        rc = tp_pump_verdict(self.p, worker, ev.flow, ev.gen, verdict, route, ttl_ms)
                        if rc != -11 or tries > 1000:   # -EAGAIN: the worker's ring is full
                            break
                        tp_pump_kick(self.p)
                        tries += 1
                elif etype == TP_EV_PACKET:
                    view = PyMemoryView_FromMemory(<char *>data, ev.len, PyBUF_READ)
                    key = (<const char *>&ev.key)[:sizeof(tp_flow_key)]
                    try:
                        handler.on_packet(worker, view, ev.flow, key, ev.packets, ev.bytes)
                    finally:
                        view.release()
                elif etype == TP_EV_EVICTED:
                    key = (<const char *>&ev.key)[:sizeof(tp_flow_key)]
                    handler.on_evicted(worker, ev.flow, ev.gen, key, ev.packets, ev.bytes, ev.reason,
                                       ev.age_ns)
                elif etype == TP_EV_PEER_UP or etype == TP_EV_PEER_DOWN:
                    handler.on_peer(worker, etype == TP_EV_PEER_UP, ev.family,
                                    (<const char *>ev.addr)[:16], ev.port)
                elif etype == TP_EV_ERROR:
                    handler.on_error(worker, -ev.err, (ev.where or b"?").decode())
                if self.p == NULL:   # a callback closed the pump: its rings are gone
                    return n
                tp_pump_event_done(self.p, worker, etype)
                n += 1
        finally:
            if self.p != NULL:
                tp_pump_kick(self.p)
        return n

    def inject_udp(self, int worker, int route, const unsigned char[::1] data):
        cdef int rc
        if self.p == NULL:
            raise RuntimeError("the pump is not running")
        rc = tp_pump_inject_udp(self.p, worker, route, &data[0] if len(data) else NULL, len(data))
        _check(rc, "inject (UDP sendto)")

    def close(self):
        cdef tp_pump *p = self.p
        if p != NULL:
            with nogil:
                tp_pump_free(p)
            self.p = NULL

    def __dealloc__(self):
        if self.p != NULL:
            with nogil:
                tp_pump_free(self.p)
            self.p = NULL


# ---- offload kernels, exposed for tests and tools ---------------------------

cdef extern from "tp_vnet.h":
    enum:
        TP_VNET_MAX_SEGS, TP_VNET_HDR_ROOM, TP_GRO_TCP, TP_GRO_UDP
        TP_VNET_EMALFORMED, TP_VNET_ETOOMANY, TP_VNET_EUNSUPPORTED
    struct tp_vnet_hdr:
        unsigned char flags
        unsigned char gso_type
        unsigned short hdr_len
        unsigned short gso_size
        unsigned short csum_start
        unsigned short csum_offset
    struct tp_seg:
        unsigned char *hdr
        unsigned hdr_len
        unsigned char *data
        unsigned len
    struct tp_gro_pkt:
        unsigned char *data
        unsigned len
    struct tp_gro_unit:
        int first
        int last
        int count
        tp_vnet_hdr vh
    void tp_vnet_hdr_read(const unsigned char *p, tp_vnet_hdr *h) nogil
    void tp_vnet_hdr_write(unsigned char *p, const tp_vnet_hdr *h, int size) nogil
    uint64_t tp_csum_add(uint64_t sum, const void *data, size_t len) nogil
    unsigned short tp_csum_fold(uint64_t sum) nogil
    int tp_vnet_split(const tp_vnet_hdr *h, unsigned char *pkt, unsigned len, int l2,
                      unsigned char *scratch, tp_seg *segs, int max_segs) nogil
    int tp_gro_coalesce(tp_gro_pkt *pkts, int n, int l2, unsigned what, int *next,
                        unsigned *skip, tp_gro_unit *units) nogil

VNET_MAX_SEGS = TP_VNET_MAX_SEGS
_VNET_ERRORS = {TP_VNET_EMALFORMED: "malformed", TP_VNET_ETOOMANY: "too many segments",
                TP_VNET_EUNSUPPORTED: "unsupported"}


def checksum(const unsigned char[::1] data):
    """The Internet checksum (RFC 1071) of data, as an int in network order."""
    cdef unsigned short folded = ~tp_csum_fold(tp_csum_add(0, &data[0] if len(data) else NULL, len(data)))
    cdef unsigned char *b = <unsigned char *>&folded
    return (b[0] << 8) | b[1]


def vnet_split(bytes vnet_hdr, bytes packet, int l2=0):
    """Split a packet read from a vnet_hdr device into wire packets (list of
    bytes). Raises ValueError("malformed" | "too many segments" | "unsupported")."""
    cdef tp_vnet_hdr h
    cdef bytearray pkt = bytearray(packet)
    cdef unsigned char[::1] view = pkt
    cdef bytearray scratch = bytearray(TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM)
    cdef unsigned char[::1] sview = scratch
    cdef tp_seg segs[64]
    cdef int n
    if len(vnet_hdr) < 10:
        raise ValueError("vnet_hdr: need at least 10 bytes")
    if len(packet) == 0:
        raise ValueError("packet: empty")
    tp_vnet_hdr_read(<const unsigned char *><const char *>vnet_hdr, &h)
    n = tp_vnet_split(&h, &view[0], len(pkt), l2, &sview[0], segs, TP_VNET_MAX_SEGS)
    if n < 0:
        raise ValueError(_VNET_ERRORS.get(n, str(n)))
    out = []
    for i in range(n):
        hdr = bytes(segs[i].hdr[:segs[i].hdr_len]) if segs[i].hdr != NULL else b""
        out.append(hdr + bytes(segs[i].data[:segs[i].len]))
    return out


def gro_coalesce(list packets, int l2=0, bint tcp=True, bint udp=True):
    """Coalesce packets (list of bytes, arrival order). Returns a list of
    (vnet_hdr_bytes_10, packet_bytes): super-packets carry a GSO header, the
    rest a zero header."""
    cdef int n = len(packets)
    cdef tp_gro_pkt *pk = <tp_gro_pkt *>malloc(sizeof(tp_gro_pkt) * max(1, n))
    cdef int *nxt = <int *>malloc(sizeof(int) * max(1, n))
    cdef unsigned *skip = <unsigned *>malloc(sizeof(unsigned) * max(1, n))
    cdef tp_gro_unit *units = <tp_gro_unit *>malloc(sizeof(tp_gro_unit) * max(1, n))
    cdef unsigned char hdr[10]
    cdef unsigned char[::1] v
    cdef int nunits, i, k
    bufs = [bytearray(p) for p in packets]
    try:
        if pk == NULL or nxt == NULL or skip == NULL or units == NULL:
            raise MemoryError()
        for i in range(n):
            if len(bufs[i]) == 0:
                raise ValueError(f"packets[{i}]: empty")
            v = bufs[i]
            pk[i].data = &v[0]
            pk[i].len = len(bufs[i])
        nunits = tp_gro_coalesce(pk, n, l2, (TP_GRO_TCP if tcp else 0) | (TP_GRO_UDP if udp else 0),
                                 nxt, skip, units)
        out = []
        for i in range(nunits):
            tp_vnet_hdr_write(hdr, &units[i].vh, 10)
            k = units[i].first
            body = bytes(bufs[k])
            k = nxt[k]
            while k >= 0:
                body += bytes(bufs[k][skip[k]:])
                k = nxt[k]
            out.append((bytes(hdr[:10]), body))
        return out
    finally:
        free(pk)
        free(nxt)
        free(skip)
        free(units)


def kernel_loop(str kind, object arg, int iterations, bytes vnet_hdr=None):
    """Run one C kernel `iterations` times without returning to Python, for
    micro-benchmarks: kind "checksum" (arg: bytes), "split" (arg: packet,
    with vnet_hdr) or "coalesce" (arg: list of packets; their headers are
    restored before each round, since coalescing rewrites them in place)."""
    cdef tp_vnet_hdr h
    cdef tp_seg segs[64]
    cdef bytearray scratch = bytearray(TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM)
    cdef unsigned char[::1] sv = scratch
    cdef unsigned char[::1] v
    cdef bytearray buf
    cdef int i, k, n, rc = 0
    cdef uint64_t acc = 0
    if iterations < 1:
        raise ValueError(f"iterations={iterations}: expected at least 1")
    if kind == "checksum":
        buf = bytearray(arg)
        v = buf
        for i in range(iterations):
            acc += tp_csum_fold(tp_csum_add(0, &v[0], len(buf)))
        return acc
    if kind == "split":
        buf = bytearray(arg)
        v = buf
        tp_vnet_hdr_read(<const unsigned char *><const char *>vnet_hdr, &h)
        for i in range(iterations):
            rc = tp_vnet_split(&h, &v[0], len(buf), 0, &sv[0], segs, TP_VNET_MAX_SEGS)
        return rc
    if kind == "coalesce":
        n = len(arg)
        bufs = [bytearray(p) for p in arg]
        saved = [bytes(p[:128]) for p in arg]
        pk = <tp_gro_pkt *>malloc(sizeof(tp_gro_pkt) * n)
        nxt = <int *>malloc(sizeof(int) * n)
        skip = <unsigned *>malloc(sizeof(unsigned) * n)
        units = <tp_gro_unit *>malloc(sizeof(tp_gro_unit) * n)
        try:
            for k in range(n):
                v = bufs[k]
                pk[k].data = &v[0]
                pk[k].len = len(bufs[k])
            for i in range(iterations):
                for k in range(n):
                    memcpy(pk[k].data, <const char *>saved[k], len(saved[k]))
                rc = tp_gro_coalesce(pk, n, 0, TP_GRO_TCP | TP_GRO_UDP, nxt, skip, units)
        finally:
            free(pk)
            free(nxt)
            free(skip)
            free(units)
        return rc
    if kind == "flow":
        # parse + hash + lookup of each packet's flow in a table holding them all
        return _flow_loop(arg, iterations)
    if kind == "ring":
        return _ring_loop(int(arg), iterations)
    raise ValueError(f"kind={kind!r}: expected 'checksum', 'split', 'coalesce', 'flow' or 'ring'")


# ---- bench traffic -----------------------------------------------------------

cdef extern from "tp_traffic.h":
    struct tp_traffic_result:
        uint64_t packets
        uint64_t bytes
        uint64_t calls
        double seconds
    int tp_udp_source(int family, const unsigned char *addr, unsigned port, unsigned nports, unsigned size,
                      uint64_t count, double seconds, tp_traffic_result *out) nogil
    int tp_udp_sink(int fd, double seconds, double idle, tp_traffic_result *out) nogil


cdef dict _traffic(tp_traffic_result *r):
    return {"packets": r.packets, "bytes": r.bytes, "calls": r.calls, "seconds": r.seconds}


def udp_source(int family, bytes addr, unsigned port, unsigned size, uint64_t count, double seconds,
               unsigned nports=1):
    """Send up to count datagrams of size bytes for at most seconds (GIL
    released); with nports > 1 they go to nports ports in turn (many flows)."""
    cdef tp_traffic_result r
    cdef const unsigned char *a = <const unsigned char *><const char *>addr
    cdef int rc
    with nogil:
        rc = tp_udp_source(family, a, port, nports, size, count, seconds, &r)
    _check(rc, "udp source")
    return _traffic(&r)


def udp_sink(int fd, double seconds, double idle):
    """Count datagrams on a bound UDP socket (GIL released)."""
    cdef tp_traffic_result r
    cdef int rc
    with nogil:
        rc = tp_udp_sink(fd, seconds, idle, &r)
    _check(rc, "udp sink")
    return _traffic(&r)


cdef extern from "tp_flow.h":
    void tp_flow_parse(const unsigned char *p, unsigned len, int l2, tp_flow_key *k) nogil


def flow_key(const unsigned char[::1] packet, bint tap=False):
    """The flow key a worker computes for packet, as the 44 raw bytes
    tunpump.control.Flow decodes (for tests and tools)."""
    cdef tp_flow_key k
    tp_flow_parse(&packet[0] if len(packet) else NULL, len(packet), tap, &k)
    return (<const char *>&k)[:sizeof(tp_flow_key)]


cdef extern from "tp_flow.h":
    struct tp_flow:
        pass
    struct tp_flow_table:
        unsigned count
    int tp_flow_table_init(tp_flow_table *t, unsigned cap) nogil
    void tp_flow_table_free(tp_flow_table *t) nogil
    unsigned tp_flow_hash(const tp_flow_key *k) nogil
    int tp_flow_lookup(tp_flow_table *t, const tp_flow_key *k, unsigned hash) nogil
    int tp_flow_insert(tp_flow_table *t, const tp_flow_key *k, unsigned hash, long long now,
                       tp_flow *old, int *evicted) nogil
    void tp_flow_touch(tp_flow_table *t, int i) nogil

cdef extern from "tp_ring.h":
    struct tp_ring:
        pass
    int tp_ring_init(tp_ring *r, unsigned capacity, unsigned rec_size) nogil
    void tp_ring_free(tp_ring *r) nogil
    void *tp_ring_reserve(tp_ring *r) nogil
    void tp_ring_publish(tp_ring *r) nogil
    void *tp_ring_peek(tp_ring *r) nogil
    void tp_ring_release(tp_ring *r) nogil


def _flow_loop(list packets, int iterations):
    """Look every packet's flow up `iterations` times in a table that holds
    them all (what a worker does per packet); returns the hits."""
    cdef int n = len(packets), i, k, idx, ev
    cdef tp_flow_table t
    cdef tp_flow_key key
    cdef tp_flow old
    cdef unsigned char[::1] v
    cdef uint64_t hits = 0
    cdef tp_gro_pkt *pk = <tp_gro_pkt *>malloc(sizeof(tp_gro_pkt) * max(1, n))
    if pk == NULL:
        raise MemoryError()
    if tp_flow_table_init(&t, max(1, n)) < 0:
        free(pk)
        raise MemoryError()
    bufs = [bytearray(p) for p in packets]
    try:
        for k in range(n):
            v = bufs[k]
            pk[k].data = &v[0]
            pk[k].len = len(bufs[k])
            tp_flow_parse(pk[k].data, pk[k].len, 0, &key)
            if tp_flow_lookup(&t, &key, tp_flow_hash(&key)) < 0:
                tp_flow_insert(&t, &key, tp_flow_hash(&key), 0, &old, &ev)
        with nogil:
            for i in range(iterations):
                for k in range(n):
                    tp_flow_parse(pk[k].data, pk[k].len, 0, &key)
                    idx = tp_flow_lookup(&t, &key, tp_flow_hash(&key))
                    if idx >= 0:
                        tp_flow_touch(&t, idx)
                        hits += 1
    finally:
        tp_flow_table_free(&t)
        free(pk)
    return hits


def _ring_loop(int records, int iterations):
    """Push and pop `records` 128-byte records through an SPSC ring,
    `iterations` times, on one thread; returns the records moved."""
    cdef tp_ring r
    cdef int i, k
    cdef uint64_t moved = 0
    cdef void *slot
    if records < 1 or records > 4096:
        raise ValueError(f"records={records}: expected 1 to 4096")
    if tp_ring_init(&r, 4096, 128) < 0:
        raise MemoryError()
    try:
        for i in range(iterations):
            for k in range(records):
                slot = tp_ring_reserve(&r)
                (<unsigned char *>slot)[0] = <unsigned char>k
                tp_ring_publish(&r)
            for k in range(records):
                slot = tp_ring_peek(&r)
                moved += (<unsigned char *>slot)[0] == <unsigned char>k
                tp_ring_release(&r)
    finally:
        tp_ring_free(&r)
    return moved
