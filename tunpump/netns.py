"""Network namespaces: create, delete, and run a block inside one.

`entered()` switches only the calling thread (setns is per thread), so devices
and sockets made inside the block live in that namespace and keep working after
the block ends, while the rest of the process stays where it was.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

from . import _core


def exists(name: str) -> bool:
    return os.path.exists(_path(name))


def _path(name: str) -> str:
    return name if "/" in name else f"/run/netns/{name}"


def create(name: str) -> None:
    """Create a named namespace (like `ip netns add NAME`)."""
    from pyroute2 import netns as _pr_netns
    _pr_netns.create(name)


def delete(name: str) -> None:
    """Delete a named namespace (like `ip netns del NAME`); missing is fine."""
    from pyroute2 import netns as _pr_netns
    if exists(name):
        _pr_netns.remove(name)


@contextlib.contextmanager
def entered(name: Optional[str]) -> Iterator[None]:
    """Run the block with this thread in namespace `name` (None: stay put)."""
    if name is None:
        yield
        return
    fd = _core.netns_open(name)
    try:
        saved = _core.netns_enter(fd)
    finally:
        os.close(fd)
    try:
        yield
    finally:
        _core.netns_restore(saved)
