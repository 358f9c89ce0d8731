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
