# Included by tunpump/bench/_tools.pyx: the packet kernels (csrc/packet) exposed
# to tests and micro-benchmarks, kept out of the library's binding (tunpump._core).

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
    cdef unsigned char[::1] view
    cdef bytearray scratch = bytearray(TP_VNET_MAX_SEGS * TP_VNET_HDR_ROOM)
    cdef unsigned char[::1] sview = scratch
    cdef tp_seg segs[TP_VNET_MAX_SEGS]
    cdef int n
    if len(vnet_hdr) < <Py_ssize_t>sizeof(virtio_net_hdr):
        raise ValueError(f"vnet_hdr: need at least {sizeof(virtio_net_hdr)} bytes")
    if len(packet) == 0:
        raise ValueError("packet: empty")
    view = pkt
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
    (vnet_hdr_bytes, packet_bytes) with a VNET_HDR_LEN-byte header:
    super-packets carry a GSO header, the rest a zero header."""
    cdef int n = len(packets)
    cdef tp_gro_pkt *pk = <tp_gro_pkt *>malloc(sizeof(tp_gro_pkt) * max(1, n))
    cdef int *nxt = <int *>malloc(sizeof(int) * max(1, n))
    cdef uint32_t *skip = <uint32_t *>malloc(sizeof(uint32_t) * max(1, n))
    cdef tp_gro_unit *units = <tp_gro_unit *>malloc(sizeof(tp_gro_unit) * max(1, n))
    cdef bytearray hdr = bytearray(sizeof(virtio_net_hdr))
    cdef unsigned char[::1] hv = hdr
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
            tp_vnet_hdr_write(&hv[0], &units[i].vh, len(hdr))
            k = units[i].first
            body = bytes(bufs[k])
            k = nxt[k]
            while k >= 0:
                body += bytes(bufs[k][skip[k]:])
                k = nxt[k]
            out.append((bytes(hdr), body))
        return out
    finally:
        free(pk)
        free(nxt)
        free(skip)
        free(units)
