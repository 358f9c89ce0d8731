"""asyncio packet I/O on a device's queues: Device.packets() (an async
iterator), Device.recv() and Device.send(), built on the running loop's
add_reader / add_writer callbacks over the queues' non-blocking fds.

Per queue and event loop one _QueueIO owns the fd's callbacks: its reader
fills a bounded buffer that the queue's streams and recv() calls share (each
packet goes to one of them, like two tasks reading one socket), and send()
calls wait their turn in a FIFO for writability. It is one of the device's
users, so Device.close() stops it: the callbacks go, waiting readers end and
waiting senders get ValueError, before the fds close.
"""
from __future__ import annotations

import asyncio
import collections
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Deque, Dict, Optional, Tuple

from .prefix import READ_SIZE
from .prefix import check_flag as check_prefix_flag
from .prefix import strip as strip_prefix

if TYPE_CHECKING:
    from .device import Device

READS_PER_WAKEUP = 64        # caps one reader callback, so one busy queue cannot starve the loop
STOP_WAIT = 1.0              # Device.close() from another thread waits this long for the loop to let go
MAX_BUFFER = 65536

_registry: "weakref.WeakKeyDictionary[Any, Dict[Tuple[int, asyncio.AbstractEventLoop], _QueueIO]]" = \
    weakref.WeakKeyDictionary()


def _closed_error(io: "_QueueIO") -> ValueError:
    return ValueError(f"I/O operation on a closed device ({io.name} queue {io.queue})")


class _Turn:
    """A send() waiting in its queue's FIFO."""
    __slots__ = ("fut",)

    def __init__(self) -> None:
        self.fut: Optional[asyncio.Future] = None


def _wake(fut: Optional[asyncio.Future]) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class _QueueIO:
    """One queue's fd in one event loop. Every method but stop() runs in the
    loop's thread."""

    def __init__(self, device: "Device", queue: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = device.fileno(queue)
        self.name = device.name
        self.queue = queue
        self.loop = loop
        self.thread = threading.get_ident()
        self.device = weakref.ref(device)
        self.buffer: Deque[bytes] = collections.deque()
        self.limit = 64
        self.readers = 0             # open streams and waiting recv() calls: read while > 0
        self.getters: Deque[asyncio.Future] = collections.deque()
        self.senders: Deque[_Turn] = collections.deque()
        self.reading = False
        self.writing = False
        self.closed = False          # the device closed: everything ends
        self.eof = False             # the fd reads 0 bytes or failed: reading ends
        self.error: Optional[OSError] = None

    # -- reading -------------------------------------------------------------
    def _update_reader(self) -> None:
        """Read while someone wants packets and the buffer has room; once
        full, wait until it is half empty (no add/remove per packet)."""
        if self.closed or self.eof or self.readers <= 0:
            want = False
        elif self.reading:
            want = len(self.buffer) < self.limit
        else:
            want = len(self.buffer) <= self.limit // 2
        if want and not self.reading:
            self.loop.add_reader(self.fd, self._on_readable)
            self.reading = True
        elif not want and self.reading:
            self._remove(self.loop.remove_reader)
            self.reading = False

    def _on_readable(self) -> None:
        for _ in range(max(1, min(READS_PER_WAKEUP, self.limit - len(self.buffer)))):
            try:
                frame = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:     # e.g. EBADFD: the device was deleted under us
                self.eof, self.error = True, exc
                break
            if not frame:              # a TUN queue never reads 0 bytes; a socket standing in for one does at EOF
                self.eof = True
                break
            self.buffer.append(frame)
        self._wake_getters()
        self._update_reader()

    def _wake_getters(self) -> None:
        for fut in self.getters:
            _wake(fut)

    async def get(self) -> Optional[bytes]:
        """The next frame; None once reading has ended (device closed or
        EOF); raises the OSError that ended it, to every caller."""
        while not self.buffer:
            if self.closed:
                return None
            if self.eof:
                if self.error is not None:
                    raise self.error
                return None
            fut = self.loop.create_future()
            self.getters.append(fut)
            self._update_reader()
            try:
                await fut
            finally:
                self.getters.remove(fut)
        frame = self.buffer.popleft()
        self._update_reader()
        return frame

    def add_reader(self, limit: int) -> None:
        self.readers += 1
        self.limit = limit
        self._update_reader()

    def release_reader(self) -> None:
        self.readers -= 1
        if not self.closed:
            self._update_reader()

    # -- writing -------------------------------------------------------------
    def _set_writer(self, want: bool) -> None:
        if want and not self.writing:
            self.loop.add_writer(self.fd, self._on_writable)
            self.writing = True
        elif not want and self.writing:
            self._remove(self.loop.remove_writer)
            self.writing = False

    def _on_writable(self) -> None:
        self._set_writer(False)        # one shot: the head of the FIFO re-arms it on EAGAIN
        if self.senders:
            _wake(self.senders[0].fut)

    async def put(self, data: bytes) -> int:
        if self.closed:
            raise _closed_error(self)
        if not self.senders:           # nobody waiting: no packet to keep order behind
            try:
                return os.write(self.fd, data)
            except BlockingIOError:
                pass
        turn = _Turn()
        self.senders.append(turn)
        try:
            while True:
                if self.closed:
                    raise _closed_error(self)
                if self.senders[0] is turn:
                    try:
                        return os.write(self.fd, data)
                    except BlockingIOError:
                        self._set_writer(True)
                turn.fut = self.loop.create_future()
                await turn.fut
        finally:
            head = bool(self.senders) and self.senders[0] is turn
            if turn in self.senders:
                self.senders.remove(turn)
            if self.senders and head:
                _wake(self.senders[0].fut)   # the next one's turn (it tries at once)
            elif not self.senders and not self.closed:
                self._set_writer(False)

    # -- lifetime ------------------------------------------------------------
    def _remove(self, remove: Any) -> None:
        try:
            remove(self.fd)
        except (OSError, ValueError, RuntimeError):   # a loop closed, or a fd closed from another thread
            pass

    def _shut(self) -> None:
        """In the loop's thread: drop the callbacks, end the readers, fail the
        senders."""
        self.closed = True
        self.buffer.clear()
        if not self.loop.is_closed():
            if self.reading:
                self._remove(self.loop.remove_reader)
            if self.writing:
                self._remove(self.loop.remove_writer)
        self.reading = self.writing = False
        if not self.loop.is_closed():
            self._wake_getters()
            for turn in self.senders:
                _wake(turn.fut)

    def stop(self) -> None:
        """Device.close() calls this before closing the fds, from any thread.
        From another thread than the loop's (while it runs), the loop drops
        the callbacks and this waits up to STOP_WAIT seconds for it."""
        dev = self.device()
        if dev is not None:
            _registry.get(dev, {}).pop((self.queue, self.loop), None)
            dev._remove_user(self)
        if self.loop.is_closed() or threading.get_ident() == self.thread or not self.loop.is_running():
            self._shut()
            return
        done = threading.Event()

        def shut() -> None:
            try:
                self._shut()
            finally:
                done.set()
        try:
            self.loop.call_soon_threadsafe(shut)
        except RuntimeError:               # closed in between
            return
        done.wait(STOP_WAIT)


def _queue_io(device: "Device", queue: int) -> _QueueIO:
    """The running loop's _QueueIO for this queue, made on first use."""
    loop = asyncio.get_running_loop()
    ios = _registry.setdefault(device, {})
    for key in [k for k, v in ios.items() if v.loop.is_closed()]:   # left by an earlier asyncio.run()
        del ios[key]
    io = ios.get((queue, loop))
    if io is None:
        io = ios[(queue, loop)] = _QueueIO(device, queue, loop)
        device._add_user(io)
    return io


def _check_buffer(buffer: object) -> int:
    if isinstance(buffer, bool) or not isinstance(buffer, int) or not 1 <= buffer <= MAX_BUFFER:
        raise ValueError(f"buffer={buffer!r}: expected an integer from 1 to {MAX_BUFFER} (packets read ahead)")
    return buffer


class PacketStream:
    """One queue's packets as an async iterator (Device.packets()).

    Reading starts at the first step and goes on, up to `buffer` packets ahead
    of the consumer, until the stream is closed: ``async with``, aclose(), or
    dropping it (leaving an ``async for`` over ``dev.packets()`` does);
    packets read ahead and not taken wait for the queue's next reader in this
    loop. The iteration ends when the device is closed (packets read ahead
    are dropped, as when the loop ends).
    A step that raises (SuperPacketError with prefix=False, a cancelled task)
    leaves the stream usable; an OSError from the queue (the device was
    deleted) ends it after being raised once.
    """

    def __init__(self, device: "Device", queue: int, *, prefix: bool = True, buffer: int = 64) -> None:
        self._device = device
        self._queue = queue
        self._prefix = check_prefix_flag(prefix)
        self._buffer = _check_buffer(buffer)
        self._pi = device.pi
        self._vnet_hdr_size = device.vnet_hdr_size
        self._io: Optional[_QueueIO] = None
        self._done = False

    def __repr__(self) -> str:
        state = "done" if self._done else "reading" if self._io else "not started"
        return f"<PacketStream {self._device.name!r} queue {self._queue} {state}>"

    def __aiter__(self) -> "PacketStream":
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        if self._io is None:
            if self._device.closed:
                self._done = True
                raise StopAsyncIteration
            self._io = _queue_io(self._device, self._queue)
            self._io.add_reader(self._buffer)
        try:
            frame = await self._io.get()
        except OSError:
            self._release()
            raise
        if frame is None:
            self._release()
            raise StopAsyncIteration
        return frame if self._prefix else strip_prefix(frame, pi=self._pi, vnet_hdr_size=self._vnet_hdr_size)

    def _release(self) -> None:
        io, self._io, self._done = self._io, None, True
        if io is not None:
            io.release_reader()

    async def aclose(self) -> None:
        """Stop reading (the loop's reader goes when no stream or recv() needs it)."""
        self._release()

    async def __aenter__(self) -> "PacketStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._release()

    def __del__(self) -> None:
        io = getattr(self, "_io", None)   # None too when __init__ refused its arguments
        if io is None:
            return
        self._io = None
        if threading.get_ident() == io.thread:
            io.release_reader()
        else:
            try:
                io.loop.call_soon_threadsafe(io.release_reader)
            except RuntimeError:   # its loop is closed: nothing is registered any more
                pass


async def recv(device: "Device", queue: int, prefix: bool) -> bytes:
    """Device.recv(): one packet; ValueError if the device closes meanwhile."""
    check_prefix_flag(prefix)
    io = _queue_io(device, queue)
    io.add_reader(io.limit)
    try:
        frame = await io.get()
    finally:
        io.release_reader()
    if frame is None:
        if io.closed:
            raise _closed_error(io)
        raise EOFError(f"{io.name} queue {queue}: end of file")
    return frame if prefix else strip_prefix(frame, pi=device.pi, vnet_hdr_size=device.vnet_hdr_size)


async def send(device: "Device", queue: int, data: bytes) -> int:
    """Device.send(): one frame, waiting for writability on EAGAIN."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"packet: expected bytes, bytearray or memoryview, not {type(data).__name__}")
    return await _queue_io(device, queue).put(data)
