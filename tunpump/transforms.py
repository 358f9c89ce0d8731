"""Transforms: C code run on every packet by the pump's workers (see
docs/transforms.md and tunpump/include/tunpump.h).

`Pump(..., transform=...)` takes either a PyCapsule named
"tunpump.transform.v1" (from any C or Cython module built against
`tunpump.get_include()`), or an object with a `__tunpump_transform__()`
method returning one (the built-ins below, and the way a third-party
transform class should present itself)."""
from __future__ import annotations

from typing import Any, Tuple

from . import _core

CAPSULE_NAME = _core.TRANSFORM_CAPSULE
ABI_VERSION = _core.TRANSFORM_ABI
CONTROL_MAX = _core.TRANSFORM_CONTROL_MAX   # the largest Pump.transform_control message


class Null:
    """Passes every packet unchanged (with TUNPUMP_NEEDS_SEGMENTS, as an
    encrypting transform would): measures what the hook itself costs."""

    def __tunpump_transform__(self) -> Any:
        return _core.null_transform()

    def __repr__(self) -> str:
        return "tunpump.transforms.Null()"


def as_capsule(transform: Any) -> Any:
    """The checked capsule behind `transform` (a capsule, or an object with
    `__tunpump_transform__()`). Raises TypeError / ValueError naming what is
    wrong: not a capsule, a capsule of another name or ABI version."""
    get = getattr(transform, "__tunpump_transform__", None)
    capsule = get() if callable(get) else transform
    try:
        _core.transform_info(capsule)
    except TypeError:
        raise TypeError(f"transform={transform!r}: expected a PyCapsule named {CAPSULE_NAME!r} or an object "
                        f"with a __tunpump_transform__() method returning one") from None
    return capsule


def info(transform: Any) -> tuple:
    """(name, flags, has_control) of a transform."""
    return _core.transform_info(as_capsule(transform))


def drop_reasons(transform: Any) -> Tuple[str, ...]:
    """The transform's own drop reasons (tunpump.h: ops->drop_reasons), as
    it names them; stats() shows each as "<transform name>_<reason>"."""
    return _core.transform_drop_reasons(as_capsule(transform))
