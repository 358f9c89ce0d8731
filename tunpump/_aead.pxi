# Included by tunpump/_core.pyx: the built-in AEAD transform's capsule
# (csrc/transform/tp_aead_xf.h). tunpump/transforms.py is its Python face.

AEAD_AVAILABLE = tp_aead_available() == 1
AEAD_KEY_LEN = TP_AEAD_KEY_LEN
AEAD_OVERHEAD = TP_AEAD_OVERHEAD            # bytes each datagram grows by (header + tag)
AEAD_CIPHERS = {"chacha20-poly1305": TP_AEAD_CHACHA20_POLY1305, "aes-256-gcm": TP_AEAD_AES_256_GCM}
AEAD_REKEY = TP_AEAD_XF_REKEY               # control message: [AEAD_REKEY][key id][key]
AEAD_REKEY_LEN = TP_AEAD_XF_REKEY_LEN


def aead_unavailable_reason():
    """Why this build has no AEAD (what to install), or None."""
    cdef const char *r = tp_aead_unavailable_reason()
    return None if r == NULL else r.decode()


cdef void _aead_capsule_free(object capsule) noexcept:
    tp_aead_xf_release(<tunpump_transform *>PyCapsule_GetPointer(capsule, TUNPUMP_TRANSFORM_CAPSULE))


def aead_transform(int cipher, unsigned side, uint64_t grace_ns, unsigned key_id, const unsigned char[::1] key):
    """A capsule of the AEAD transform (arguments checked by tunpump.transforms.AEAD)."""
    cdef tp_aead_xf_cfg cfg
    cdef tunpump_transform *t
    if not tp_aead_available():
        raise RuntimeError(aead_unavailable_reason())
    if key.shape[0] != TP_AEAD_KEY_LEN or side > 1 or key_id > 255:
        raise ValueError("aead_transform: a 32-byte key, side 0 or 1, key id 0..255")
    memset(&cfg, 0, sizeof(cfg))
    cfg.cipher = cipher
    cfg.side = side
    cfg.grace_ns = grace_ns
    cfg.key_id = key_id
    memcpy(cfg.key, &key[0], TP_AEAD_KEY_LEN)
    t = tp_aead_xf_make(&cfg)
    memset(&cfg, 0, sizeof(cfg))   # the capsule's copy is the only one left (wiped when freed)
    if t == NULL:
        raise MemoryError()
    return PyCapsule_New(t, TUNPUMP_TRANSFORM_CAPSULE, _aead_capsule_free)
