# Included by tunpump/_core.pyx (one module, split by job like csrc/): TUN/TAP device ioctls and network namespaces (csrc/os).

def open_queue(str path, str name, unsigned flags):
    """Open one queue fd; returns (fd, kernel_name)."""
    cdef char out[C_IFNAMSIZ]
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
    cdef char out[C_IFNAMSIZ]
    cdef unsigned flags = 0
    _check(tp_device_get_iff(fd, out, &flags), "TUNGETIFF")
    return out.decode(), flags


def netns_open(str name_or_path):
    """Open a namespace by name (/run/netns/NAME) or path; returns an fd."""
    cdef bytes b = name_or_path.encode()
    cdef int fd = tp_netns_open(b)
    if fd == -ENOENT:
        exc = FileNotFoundError(ENOENT, f"network namespace {name_or_path!r} does not exist")
        exc.step = "open netns"
        raise exc
    return _check(fd, "open netns")


def netns_enter(int ns_fd):
    """Switch the calling thread into ns_fd; returns a token for netns_restore."""
    cdef int saved = -1
    _check(tp_netns_enter(ns_fd, &saved), "setns")
    return saved


def netns_restore(int saved):
    _check(tp_netns_restore(saved), "setns (restore)")


