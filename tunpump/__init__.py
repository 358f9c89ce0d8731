"""tunpump: pump packets between TUN/TAP devices, UDP and TCP at kernel speed.

The forwarding path is C worker threads; Python configures and decides.
"""
from .control import Flow, FlowEvicted, PeerDown, PeerUp, StatsTick, Verdict, WorkerError
from .device import Device
from .errors import (DeviceConflictError, PrivilegeError, PumpError, SuperPacketError,
                     TunpumpError, TunUnavailableError)
from .endpoint import TCPEndpoint, UDPEndpoint
from .link import Link
from .pump import Pump

__version__ = "0.1.0"

__all__ = [
    "Device", "Link", "Pump", "UDPEndpoint", "TCPEndpoint",
    "Flow", "Verdict", "FlowEvicted", "PeerUp", "PeerDown", "StatsTick", "WorkerError",
    "TunpumpError", "TunUnavailableError", "PrivilegeError", "DeviceConflictError", "PumpError",
    "SuperPacketError",
]
