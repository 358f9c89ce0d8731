# cython: language_level=3
"""Thin binding over csrc/ (declared in tunpump/_capi.pxd): what the library
uses, nothing else (the bench's loops live in tunpump.bench._tools).

Failed calls raise OSError(errno, "<step>: <reason>") with the failing step
also in its `step` attribute; tunpump.errors turns those into the documented
exception types. Limits (MAX_BATCH, MAX_PEERS, ...) are C's, exported here."""

from collections import namedtuple

from libc.errno cimport ENOENT, EAGAIN
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset, memcpy, strerror
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_READ
from cpython.pycapsule cimport (PyCapsule_CheckExact, PyCapsule_IsValid, PyCapsule_GetName,
                                PyCapsule_GetPointer, PyCapsule_New)

from tunpump._capi cimport *

# ---- constants and limits, from C ----------------------------------------------

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
KIND_TUN, KIND_UDP, KIND_TCP = TP_KIND_TUN, TP_KIND_UDP, TP_KIND_TCP
VERDICT_FORWARD, VERDICT_DROP, VERDICT_PUNT, VERDICT_ROUTE = (
    TP_VERDICT_FORWARD, TP_VERDICT_DROP, TP_VERDICT_PUNT, TP_VERDICT_ROUTE)
EVICT_IDLE, EVICT_FULL = TP_EVICT_IDLE, TP_EVICT_FULL
MAX_BATCH = TP_MAX_BATCH
MAX_WORKERS = TP_MAX_WORKERS
MAX_PEERS = TP_MAX_PEERS
MAX_PENDING = TP_MAX_PENDING
MAX_FLOW_TABLE = TP_FLOW_TABLE_MAX   # flows per queue
IFNAMSIZ = C_IFNAMSIZ           # an interface name with its NUL
VNET_HDR_LEN = sizeof(virtio_net_hdr)
VNET_MAX_SEGS = TP_VNET_MAX_SEGS
DROP_REASONS = tuple(tp_drop_names[i].decode() for i in range(TP_DROP__COUNT))

# A flow key as the workers compute it (tp_flow_key), decoded here only:
# kind ("ip", "fragment", "arp", "nd", "other"), IP version, protocol, ports
# (ICMP echo: the id in both), VLAN, EtherType, and the addresses as 16 raw
# bytes each (IPv4: the first 4).
FlowKey = namedtuple("FlowKey", "kind version protocol sport dport vlan ethertype src dst")
_FLOW_KINDS = {TP_FLOW_IP: "ip", TP_FLOW_FRAGMENT: "fragment", TP_FLOW_ARP: "arp",
               TP_FLOW_ND: "nd", TP_FLOW_OTHER: "other", TP_FLOW_UNPARSED: "unparsed"}


cdef object _flow_key(const tp_flow_key *k):
    return FlowKey(_FLOW_KINDS.get(k.cls, "other"), k.ip_version, k.proto, k.sport, k.dport, k.vlan,
                   k.ethertype, (<const char *>k.src)[:sizeof(k.src)], (<const char *>k.dst)[:sizeof(k.dst)])


cdef bytes _flow_key_raw(const tp_flow_key *k):
    """The key as the worker wrote it: events carry these bytes and Flow
    decodes them only when a callback looks (most look at one field, or none)."""
    return (<const char *>k)[:sizeof(tp_flow_key)]


def decode_flow_key(const unsigned char[::1] raw):
    """The FlowKey in `raw`, a key's bytes as events carry them."""
    if raw.shape[0] != sizeof(tp_flow_key):
        raise ValueError(f"raw: {raw.shape[0]} bytes, a flow key is {sizeof(tp_flow_key)}")
    return _flow_key(<const tp_flow_key *>&raw[0])


# ---- errors --------------------------------------------------------------------

cdef object _error(int err, str step):
    """OSError(err, "step: reason") (the errno picks the subclass, such as
    PermissionError) carrying the failing step as .step."""
    exc = OSError(err, f"{step}: {strerror(err).decode()}")
    exc.step = step
    return exc


cdef int _check(int rc, str step) except -1:
    if rc < 0:
        raise _error(-rc, step)
    return rc


include "_device.pxi"
include "_pump.pxi"
include "_transform.pxi"
include "_packet.pxi"
include "_aead.pxi"
