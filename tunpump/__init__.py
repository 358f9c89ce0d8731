"""tunpump: pump packets between TUN/TAP devices, UDP and TCP at kernel speed.

The forwarding path is C worker threads; Python configures and decides.
"""

def _check_extension() -> None:
    """A source checkout whose extension was never built in place (say after
    a non-editable `pip install .`, run from the checkout) shadows the
    installed package and fails deep inside with "cannot import name
    '_core' from partially initialized module"; say what to do instead."""
    import importlib.machinery
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    if any(os.path.exists(os.path.join(here, "_core" + suf))
           for suf in importlib.machinery.EXTENSION_SUFFIXES):
        return
    if os.path.exists(os.path.join(here, "_core.pyx")):
        raise ImportError(
            f"tunpump is imported from the source tree {os.path.dirname(here)}, whose compiled "
            f"extension tunpump/_core is not built. Run `pip install -e .` there (it builds it in "
            f"place), or run Python from outside the checkout so the installed tunpump is imported.",
            name="tunpump._core", path=here)


_check_extension()

import os as _os

from .control import Decision, Flow, FlowEvicted, Packet, PeerDown, PeerMoved, PeerUp, StatsTick, Verdict, WorkerError
from .device import Device
from .errors import (DeviceConflictError, PrivilegeError, PumpError, SuperPacketError,
                     TunpumpError, TunUnavailableError)
from .endpoint import TCPEndpoint, UDPEndpoint
from .link import Link
from .pump import Pump
from .stats import DirectionStats, FlowStats, Stats

__version__ = "0.1.0"


def get_include() -> str:
    """The directory holding tunpump.h and tunpump.pxd, the public C API for
    transforms: pass it as include_dirs (C) or include_path (Cython)."""
    return _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "include")


__all__ = [
    "Device", "Link", "Pump", "UDPEndpoint", "TCPEndpoint",
    "Stats", "DirectionStats", "FlowStats",
    "Flow", "Verdict", "Decision", "Packet", "get_include", "FlowEvicted", "PeerUp", "PeerDown", "PeerMoved",
    "StatsTick", "WorkerError",
    "TunpumpError", "TunUnavailableError", "PrivilegeError", "DeviceConflictError", "PumpError",
    "SuperPacketError",
]
