"""mdadm's control-socket frames (mdmon.md §3.8), both directions.

A frame is: start magic (u32), length (signed 32-bit), ``length`` bytes of
payload when positive, end magic (u32), all in the machine's byte order.
Length 0 is "ping monitor", -1 "ping manager", positive a metadata update.
Decoding is strict: a wrong magic, a length below -1 or above 4 MiB is a
``FrameError`` naming what and where, and no payload is allocated before its
length has been checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

START_MAGIC = 0x5A5AA5A5
END_MAGIC = 0xA5A55A5A
#: mdadm's MSG_MAX_LEN.
MAX_PAYLOAD = 4 * 1024 * 1024
PING_MONITOR = 0
PING_MANAGER = -1

_HEAD = struct.Struct("=Ii")
_TAIL = struct.Struct("=I")
HEAD_SIZE = _HEAD.size
TAIL_SIZE = _TAIL.size


class FrameError(ValueError):
    """A malformed frame: the connection cannot be trusted any further."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset} of the frame)")
        self.offset = offset


@dataclass(frozen=True)
class Frame:
    length: int  # as sent: 0 ping monitor, -1 ping manager, >0 update
    payload: bytes = b""

    @property
    def kind(self) -> str:
        if self.length == PING_MONITOR:
            return "ping-monitor"
        if self.length == PING_MANAGER:
            return "ping-manager"
        return "update"


def encode(frame: Frame) -> bytes:
    if frame.length > 0 and len(frame.payload) != frame.length:
        raise ValueError("payload does not match length")
    return _HEAD.pack(START_MAGIC, frame.length) + frame.payload + _TAIL.pack(END_MAGIC)


def reply(payload: bytes = b"") -> bytes:
    """An acknowledgement (empty) or a ping-monitor answer (the version string)."""
    return encode(Frame(len(payload), payload))


def parse_head(head: bytes) -> int:
    """Check the first 8 bytes; return the payload length to read next."""
    magic, length = _HEAD.unpack(head)
    if magic != START_MAGIC:
        raise FrameError(f"bad start magic {magic:#010x}", 0)
    if length < PING_MANAGER:
        raise FrameError(f"negative length {length}", 4)
    if length > MAX_PAYLOAD:
        raise FrameError(f"length {length} exceeds {MAX_PAYLOAD}", 4)
    return max(int(length), 0)


def check_tail(tail: bytes, payload_len: int) -> None:
    (magic,) = _TAIL.unpack(tail)
    if magic != END_MAGIC:
        raise FrameError(f"bad end magic {magic:#010x}", HEAD_SIZE + payload_len)


def decode(data: bytes) -> Frame:
    """One whole frame from bytes (tests, fuzzing); the server reads incrementally."""
    if len(data) < HEAD_SIZE:
        raise FrameError("truncated header", len(data))
    n = parse_head(data[:HEAD_SIZE])
    if len(data) != HEAD_SIZE + n + TAIL_SIZE:
        raise FrameError(f"frame is {len(data)} bytes, expected {HEAD_SIZE + n + TAIL_SIZE}", len(data))
    check_tail(data[HEAD_SIZE + n :], n)
    _, length = _HEAD.unpack(data[:HEAD_SIZE])
    return Frame(length, data[HEAD_SIZE : HEAD_SIZE + n])
