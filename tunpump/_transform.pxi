# Included by tunpump/_core.pyx (one module, split by job like csrc/): transforms
# (tunpump/include/tunpump.h): capsules checked, their names and drop reasons, the built-in Null.

TRANSFORM_CAPSULE = TUNPUMP_TRANSFORM_CAPSULE.decode()
TRANSFORM_ABI = TUNPUMP_TRANSFORM_ABI
TRANSFORM_CONTROL_MAX = TUNPUMP_CONTROL_MAX
DEFAULT_PUNT_RING = TP_DEFAULT_PUNT_RING
MAX_PUNT_RING = TP_MAX_PUNT_RING
# The flags this ABI knows, by name, for error messages (a test checks they
# make up TUNPUMP_ALL_FLAGS, so a new flag cannot be left out).
TRANSFORM_FLAGS = {"NEEDS_SEGMENTS": TUNPUMP_NEEDS_SEGMENTS, "UNKNOWN_SOURCES": TUNPUMP_UNKNOWN_SOURCES,
                   "AUTHENTICATED": TUNPUMP_AUTHENTICATED, "IN_PLACE_TO_DEVICE": TUNPUMP_IN_PLACE_TO_DEVICE,
                   "GATHER_TO_ENDPOINT": TUNPUMP_GATHER_TO_ENDPOINT}
TRANSFORM_ALL_FLAGS = TUNPUMP_ALL_FLAGS


cdef const tunpump_transform *_transform_ptr(capsule) except NULL:
    """The transform a capsule holds, checked: its name spells the ABI."""
    cdef const tunpump_transform *t
    if not PyCapsule_CheckExact(capsule):
        raise TypeError(f"transform={capsule!r}: expected a PyCapsule named {TRANSFORM_CAPSULE!r}")
    if not PyCapsule_IsValid(capsule, TUNPUMP_TRANSFORM_CAPSULE):
        name = PyCapsule_GetName(capsule)
        raise ValueError(f"transform: a capsule named {(name or b'(none)').decode(errors='replace')!r}; "
                         f"this tunpump takes {TRANSFORM_CAPSULE!r} (ABI {TRANSFORM_ABI})")
    t = <const tunpump_transform *>PyCapsule_GetPointer(capsule, TUNPUMP_TRANSFORM_CAPSULE)
    if t.ops == NULL or t.ops.batch == NULL:
        raise ValueError("transform: the capsule's ops table is NULL or has no batch function")
    if t.ops.abi != TUNPUMP_TRANSFORM_ABI:
        raise ValueError(f"transform: built for ABI version {t.ops.abi}, this tunpump speaks "
                         f"{TRANSFORM_ABI} (rebuild it against tunpump.get_include())")
    if t.ops.flags & ~TUNPUMP_ALL_FLAGS:
        known = ", ".join(f"{name}={value:#x}" for name, value in TRANSFORM_FLAGS.items())
        raise ValueError(f"transform: unknown flags {t.ops.flags:#x} (ABI {TRANSFORM_ABI} knows {known})")
    _transform_drop_names(t)
    return t


cdef str _transform_name(const tunpump_transform *t):
    return (t.ops.name or b"?").decode(errors="replace")


cdef tuple _transform_drop_reasons(const tunpump_transform *t):
    """The transform's own drop reasons, checked: at most
    TUNPUMP_MAX_DROP_REASONS names of [a-z0-9_], 1 to 31 characters."""
    cdef const char *r
    cdef size_t n
    out = []
    if t.ops.drop_reasons == NULL:
        return ()
    while t.ops.drop_reasons[len(out)] != NULL:
        if len(out) == TUNPUMP_MAX_DROP_REASONS:
            raise ValueError(f"transform {_transform_name(t)!r}: more than {TUNPUMP_MAX_DROP_REASONS} drop "
                             f"reasons (drop_reasons must be NULL-terminated)")
        r = t.ops.drop_reasons[len(out)]
        n = strnlen(r, 32)
        raw = r[:n]
        name = raw.decode("ascii", errors="replace")
        if not 1 <= len(raw) <= 31 or not all(c in _REASON_CHARS for c in name):
            raise ValueError(f"transform {_transform_name(t)!r}: drop_reasons[{len(out)}] = {name[:31]!r}: "
                             f"expected 1 to 31 characters of a-z, 0-9 and '_'")
        out.append(name)
    return tuple(out)


_REASON_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


cdef tuple _transform_drop_names(const tunpump_transform *t):
    """The stats names of the transform's drop reasons: "<name>_<reason>"."""
    name = _transform_name(t)
    return tuple(f"{name}_{r}" for r in _transform_drop_reasons(t))


def transform_info(capsule):
    """(name, flags, has_control) of a transform capsule, checked as start() would."""
    cdef const tunpump_transform *t = _transform_ptr(capsule)
    return (_transform_name(t), t.ops.flags, t.ops.control != NULL)


def transform_drop_reasons(capsule):
    """The transform's own drop reasons (as it names them, without its name)."""
    return _transform_drop_reasons(_transform_ptr(capsule))


def null_transform():
    """A capsule holding the built-in null transform."""
    return PyCapsule_New(<void *>&tp_null_transform, TUNPUMP_TRANSFORM_CAPSULE, NULL)
