"""tunpump: pump packets between TUN/TAP devices, UDP and TCP at kernel speed.

The forwarding path is C worker threads; Python configures and decides.
"""
import os as _os

from .control import Flow, FlowEvicted, Packet, PeerDown, PeerUp, StatsTick, Verdict, WorkerError
from .device import Device
from .errors import (DeviceConflictError, PrivilegeError, PumpError,
                     TunpumpError, TunUnavailableError)
from .endpoint import TCPEndpoint, UDPEndpoint
from .link import Link
from .pump import Pump

__version__ = "0.1.0"


def get_include() -> str:
    """The directory holding tunpump.h and tunpump.pxd, the public C API for
    transforms: pass it as include_dirs (C) or include_path (Cython)."""
    return _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "include")


__all__ = [
    "Device", "Link", "Pump", "UDPEndpoint", "TCPEndpoint",
    "Flow", "Verdict", "Packet", "get_include", "FlowEvicted", "PeerUp", "PeerDown", "StatsTick", "WorkerError",
    "TunpumpError", "TunUnavailableError", "PrivilegeError", "DeviceConflictError", "PumpError",
]
