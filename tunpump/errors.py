"""Exceptions raised by tunpump.

Errors the kernel reports are OSError subclasses carrying its errno, so code that
already catches OSError / PermissionError / FileNotFoundError keeps working.
Bad arguments raise ValueError or TypeError naming the argument, the value and
what is allowed.
"""
from __future__ import annotations

import errno as _errno


class TunpumpError(OSError):
    """Base class for OS-level errors raised by tunpump."""


class TunUnavailableError(TunpumpError, FileNotFoundError):
    """/dev/net/tun (or the path given as tun_path) is missing."""


class PrivilegeError(TunpumpError, PermissionError):
    """The caller lacks a privilege (CAP_NET_ADMIN, or ownership of the device)."""


class DeviceConflictError(TunpumpError):
    """The name is taken: by a device of another kind, with other flags, or
    (exclusive=True) at all, or a single-queue device already has its reader."""


class PumpError(TunpumpError):
    """A pump worker stopped on an error it could not recover from."""


def device_error(exc: OSError, *, name: str, path: str, step: str, exclusive: bool = False) -> OSError:
    """Turn the OSError of a failed device call into the documented type with a
    message that names the cause."""
    code = exc.errno or 0
    if step == "open" and code in (_errno.ENOENT, _errno.ENODEV, _errno.ENXIO):
        return TunUnavailableError(
            code, f"{path} is missing: load the tun module (modprobe tun) "
                  f"or create the node (mknod {path} c 10 200)")
    if code in (_errno.EPERM, _errno.EACCES):
        if step == "open":
            return PrivilegeError(code, f"no permission to open {path} (needs read/write access to it)")
        return PrivilegeError(
            code, f"{step} on device {name!r} needs CAP_NET_ADMIN "
                  f"(or, to attach to a persistent device, being its owner or in its group)")
    if step == "TUNSETIFF" and code == _errno.EBUSY and exclusive:
        return DeviceConflictError(code, f"device {name!r} already exists (exclusive=True asks for a new one)")
    if step == "TUNSETIFF" and code == _errno.EBUSY:
        return DeviceConflictError(
            code, f"device {name!r} is busy: it is single-queue and already open (one fd at a time)")
    if step == "TUNSETIFF" and code == _errno.EINVAL:
        return DeviceConflictError(
            code, f"cannot attach to {name!r}: a device of that name exists with another kind "
                  f"or other flags (mode, multi_queue, vnet_hdr and pi must match)")
    if code == _errno.E2BIG:
        return DeviceConflictError(code, f"device {name!r} has no room for another queue (the kernel allows 256)")
    return TunpumpError(code, f"{step} on device {name!r} failed: {exc.strerror}")


class SuperPacketError(TunpumpError):
    """A GSO super-packet came where a bare packet was asked for
    (``prefix=False`` on a vnet_hdr device with tso/uso offloads): one bare
    packet cannot stand for it. ``frame`` holds it whole, prefix included,
    so nothing is lost."""

    frame: bytes = b""
