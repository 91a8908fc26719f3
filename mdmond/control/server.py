"""The control socket server: mdadm's pings and metadata updates, from root only.

mdadm connects to ``/run/mdadm/<container>.sock`` and sends frames
(``frames``); each gets an answer: a ping-monitor once the monitor has
completed a whole pass begun after the request (so everything mdadm did
before is handled and on disk), a ping-manager once the manager has
re-scanned, an update once it is queued.  A peer that is not root is refused
(the socket is also owner-only); a peer that sends a malformed frame, stalls
mid-frame, or floods connections is cut off and logged, and never affects
anything else.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..events import EventLog
from . import frames

#: mdmon gives a peer this long for each part of a frame.
CHUNK_TIMEOUT = 3.0
#: Connections served at once; more wait in the listen backlog.
MAX_CLIENTS = 8


@dataclass
class Handlers:
    """What the daemon does for each request."""

    ping_monitor: Callable[[], Awaitable[None]]
    ping_manager: Callable[[], Awaitable[None]]
    #: One client's updates, in order, as one batch (see ``serve_client``).
    update: Callable[[list[bytes]], Awaitable[None]]


def peer_uid(sock: socket.socket) -> int:
    """The connecting process's uid, from the kernel (SO_PEERCRED), not from anything it says."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


class ControlServer:
    def __init__(
        self,
        handlers: Handlers,
        *,
        version: str,
        events: EventLog | None = None,
        allowed_uids: frozenset[int] = frozenset({0}),
        chunk_timeout: float = CHUNK_TIMEOUT,
    ) -> None:
        self.handlers = handlers
        self.version = version.encode() + b"\0"
        self.events = events or EventLog()
        self.allowed_uids = allowed_uids
        self.chunk_timeout = chunk_timeout
        self._slots = trio.Semaphore(MAX_CLIENTS)

    async def listen(self, path: str) -> trio.SocketListener:
        """Bind ``path`` (owner-only under umask 077, replacing a stale socket) and listen, as mdmon does."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            if os.path.lexists(path):
                os.unlink(path)
            await sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(10)
        return trio.SocketListener(sock)

    async def serve(self, listener: trio.SocketListener) -> None:
        async with listener, trio.open_nursery() as n:
            while True:
                stream = await listener.accept()
                n.start_soon(self.serve_client, stream)

    async def serve_client(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                uid = peer_uid(stream.socket)  # type: ignore[arg-type]
            except OSError as e:
                self.events.emit("control-refused", reason=f"no peer credentials: {e}")
                return
            if uid not in self.allowed_uids:
                self.events.emit("control-refused", reason=f"peer uid {uid} is not allowed")
                return
            batch: list[bytes] = []
            async with self._slots:
                try:
                    while (frame := await self._read_frame(stream)) is not None:
                        await self._handle(stream, frame, batch)
                except frames.FrameError as e:
                    self.events.emit("control-bad-frame", error=str(e))
                except trio.TooSlowError:
                    self.events.emit("control-timeout", error="peer stalled mid-frame")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the peer went away
                finally:
                    if batch:  # acknowledged, so owed to the monitor even if the peer left or misbehaved
                        with trio.CancelScope(shield=True):
                            await self._flush(batch)

    async def _handle(self, stream: trio.SocketStream, frame: frames.Frame, batch: list[bytes]) -> None:
        """Answer one frame; updates wait in ``batch`` until the client pings or leaves.

        mdadm sends the messages of one change back to back (DDF: a virtual
        disk record, then its configuration) and then pings; mdmon hands them
        to its monitor together, so they are applied and written as one.
        Applied one by one, the first alone could fail validation (a VD with
        no configuration) or move the generation twice.
        """
        if frame.kind == "ping-monitor":
            await self._flush(batch)
            await self.handlers.ping_monitor()
            await stream.send_all(frames.reply(self.version))
        elif frame.kind == "ping-manager":
            await self._flush(batch)
            await self.handlers.ping_manager()
            await stream.send_all(frames.reply())
        else:
            batch.append(frame.payload)
            await stream.send_all(frames.reply())

    async def _flush(self, batch: list[bytes]) -> None:
        if batch:
            taken = batch[:]
            batch.clear()
            await self.handlers.update(taken)

    async def _read_frame(self, stream: trio.SocketStream) -> frames.Frame | None:
        head = await self._read_exactly(stream, frames.HEAD_SIZE, eof_ok=True)
        if head is None:
            return None
        n = frames.parse_head(head)
        payload = await self._read_exactly(stream, n) if n else b""
        tail = await self._read_exactly(stream, frames.TAIL_SIZE)
        assert payload is not None and tail is not None
        frames.check_tail(tail, n)
        return frames.Frame(struct.unpack("=i", head[4:8])[0], payload)

    async def _read_exactly(self, stream: trio.SocketStream, n: int, *, eof_ok: bool = False) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            with trio.fail_after(self.chunk_timeout):
                chunk = await stream.receive_some(min(n - len(buf), 65536))
            if not chunk:
                if eof_ok and not buf:
                    return None
                raise frames.FrameError(f"connection closed {n - len(buf)} bytes short", len(buf))
            buf += chunk
        return bytes(buf)
