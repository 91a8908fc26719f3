"""The control socket server: mdadm's pings and metadata updates, from root only.

mdadm connects to ``/run/mdadm/<container>.sock`` and sends frames
(``frames``); each gets an answer: a ping-monitor once the monitor has
completed a whole pass begun after the request (so everything mdadm did
before is handled and on disk), a ping-manager once the manager has
re-scanned, an update once it is queued.  A peer that is not root is refused
(the socket is also owner-only); a peer that sends a malformed frame, does
not finish a frame within its deadline, stays silent, or holds too many
acknowledged updates without a ping is cut off and logged (mdadm's protocol
has no error reply: the connection is closed, and mdadm reports the failure);
connections past the cap are closed as they arrive, and running out of
descriptors makes ``accept`` rest, never end the server.  None of it delays
another peer or the monitor's service of the kernel.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..events import EventLog
from . import frames

#: A whole frame (header, payload, end magic) must arrive within this once its first byte has.
#: mdmon gives 3 s per part; a deadline per frame is what stops a peer trickling a byte at a time.
FRAME_TIMEOUT = 3.0
#: Silence allowed between frames (mdadm connects, sends, waits for the answer and closes).
IDLE_TIMEOUT = 30.0
#: Connections open at once; the excess is closed at once (mdadm retries), never queued.
MAX_CONNECTIONS = 32
#: Acknowledged updates one connection may hold until it pings or leaves (mdadm sends a few KiB).
MAX_PENDING_BYTES = frames.MAX_PAYLOAD
#: The same, over every connection, counting payloads being read.
MAX_PENDING_TOTAL = 4 * frames.MAX_PAYLOAD
#: How long ``accept`` rests after the process or system ran out of descriptors (EMFILE, ENFILE).
ACCEPT_BACKOFF = 0.1
#: At most one event per this many seconds about connections refused for the cap.
REFUSAL_EVENT_INTERVAL = 1.0

_RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Overflow(Exception):
    """A peer's acknowledged-but-unflushed updates would pass a bound."""


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
        frame_timeout: float = FRAME_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_pending_bytes: int = MAX_PENDING_BYTES,
        max_pending_total: int = MAX_PENDING_TOTAL,
        accept_backoff: float = ACCEPT_BACKOFF,
    ) -> None:
        self.handlers = handlers
        self.version = version.encode() + b"\0"
        self.events = events or EventLog()
        self.allowed_uids = allowed_uids
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_pending_bytes = max_pending_bytes
        self.max_pending_total = max_pending_total
        self.accept_backoff = accept_backoff
        self.connections = 0  # open now
        self.pending_total = 0  # bytes held for the monitor (acknowledged or being read), all connections
        self.refused = 0  # connections closed for the cap, ever
        self._refused_reported = 0
        self._last_refusal_event = -float("inf")
        self.accept_errors = 0  # accept failures (EMFILE, ...), ever
        self._last_accept_event = -float("inf")

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

    async def serve(self, listener: trio.abc.Listener[trio.SocketStream]) -> None:
        """Accept until cancelled; nothing a peer or the descriptor table does ends this loop."""
        async with listener, trio.open_nursery() as n:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    # Out of descriptors (or buffers): the pending connection stays in the backlog, so
                    # rest instead of spinning.  Any other error rests briefly too: one that persists
                    # (a listener broken under us) must not turn this loop into a busy one.
                    self.accept_errors += 1
                    now = trio.current_time()
                    if now - self._last_accept_event >= REFUSAL_EVENT_INTERVAL:  # one a second, not one a try
                        self.events.emit("control-refused", reason=f"accept failed: {e.strerror or e}")
                        self._last_accept_event = now
                    await trio.sleep(self.accept_backoff if e.errno in _RESOURCE_ERRNOS else self.accept_backoff / 10)
                    continue
                if self.connections >= self.max_connections:
                    self.refused += 1
                    self._report_refusals()
                    await stream.aclose()
                    continue
                self.connections += 1
                n.start_soon(self._serve_counted, stream)

    def _report_refusals(self) -> None:
        now = trio.current_time()
        if now - self._last_refusal_event >= REFUSAL_EVENT_INTERVAL:
            self.events.emit(
                "control-refused",
                reason=f"{self.max_connections} connections open",
                refused=self.refused - self._refused_reported,
            )
            self._refused_reported = self.refused
            self._last_refusal_event = now

    async def _serve_counted(self, stream: trio.SocketStream) -> None:
        try:
            await self.serve_client(stream)
        finally:
            self.connections -= 1

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
            try:
                while (frame := await self._read_frame(stream, batch)) is not None:
                    await self._handle(stream, frame, batch)
            except frames.FrameError as e:
                self.events.emit("control-bad-frame", error=str(e))
            except trio.TooSlowError:
                self.events.emit("control-timeout", error=f"frame not complete within {self.frame_timeout} s")
            except Overflow as e:
                self.events.emit("control-overflow", error=str(e))
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
            try:
                await self.handlers.update(taken)
            finally:
                self.pending_total -= sum(len(p) for p in taken)

    def _reserve(self, n: int, batch: list[bytes]) -> None:
        """Count ``n`` more bytes held for the monitor, or refuse them (nothing is allocated yet)."""
        mine = sum(len(p) for p in batch) + n
        if mine > self.max_pending_bytes:
            raise Overflow(f"{mine} bytes of updates without a ping (at most {self.max_pending_bytes})")
        if self.pending_total + n > self.max_pending_total:
            raise Overflow(
                f"{self.pending_total + n} bytes of updates held for all peers (at most {self.max_pending_total})"
            )
        self.pending_total += n

    async def _read_frame(self, stream: trio.SocketStream, batch: list[bytes]) -> frames.Frame | None:
        """The next frame, or None at a clean end; the whole frame must arrive within ``frame_timeout``."""
        with trio.move_on_after(self.idle_timeout) as idle:
            first = await stream.receive_some(frames.HEAD_SIZE)
        if idle.cancelled_caught:
            self.events.emit("control-timeout", error=f"silent for {self.idle_timeout} s")
            return None
        if not first:
            return None
        with trio.fail_after(self.frame_timeout):
            head = first + await self._read_exactly(stream, frames.HEAD_SIZE - len(first), len(first))
            n = frames.parse_head(head)
            payload = b""
            if n:
                self._reserve(n, batch)
                try:
                    payload = await self._read_exactly(stream, n, frames.HEAD_SIZE)
                    frames.check_tail(await self._read_exactly(stream, frames.TAIL_SIZE, frames.HEAD_SIZE + n), n)
                except BaseException:
                    self.pending_total -= n
                    raise
            else:
                frames.check_tail(await self._read_exactly(stream, frames.TAIL_SIZE, frames.HEAD_SIZE), n)
        return frames.Frame(struct.unpack("=i", head[4:8])[0], payload)

    async def _read_exactly(self, stream: trio.SocketStream, n: int, at: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = await stream.receive_some(min(n - len(buf), 65536))
            if not chunk:
                raise frames.FrameError(f"connection closed {n - len(buf)} bytes short", at + len(buf))
            buf += chunk
        return bytes(buf)
