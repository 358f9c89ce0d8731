# Included by tunpump/_core.pyx (one module, split by job like csrc/): the
# flow-key parser (csrc/packet/tp_flow_key.c), decoded by the binding's one
# FlowKey decoder. The other packet kernels are exposed for tests by the
# tools extension (tunpump/bench/_packet.pxi).


def flow_key(const unsigned char[::1] packet, bint tap=False):
    """The FlowKey a worker computes for packet."""
    cdef tp_flow_key k
    tp_flow_parse(&packet[0] if len(packet) else NULL, len(packet), tap, &k)
    return _flow_key(&k)
