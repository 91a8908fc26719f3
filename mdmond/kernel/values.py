"""What md's sysfs attributes say, parsed once into typed values.

The words and their meanings follow the kernel's md documentation and the
behaviour mdmon relies on (reference: mdmon.md §2.2 and §7).  Parsing is
total: a word the kernel may add later, or garbage from a vanished device,
maps to an explicit "unknown" value instead of an exception, because the
monitor must keep answering the kernel whatever it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: md's "no position": ``none`` in ``resync_start``/``recovery_start`` (in sync).
MAX_SECTOR = (1 << 64) - 1


class ArrayState(Enum):
    """``md/array_state``, in the kernel's order (the monitor compares ranks)."""

    CLEAR = "clear"
    INACTIVE = "inactive"
    SUSPENDED = "suspended"
    READONLY = "readonly"
    READ_AUTO = "read-auto"
    CLEAN = "clean"
    ACTIVE = "active"
    WRITE_PENDING = "write-pending"
    ACTIVE_IDLE = "active-idle"
    BROKEN = "broken"
    #: Unreadable or unknown: mdmon treats it as a stopped array.
    UNREADABLE = "?"

    @property
    def rank(self) -> int:
        return _ARRAY_RANK[self]

    @property
    def running(self) -> bool:
        """Above ``inactive``: the array has been started."""
        return self.rank > ArrayState.INACTIVE.rank and self is not ArrayState.UNREADABLE

    @property
    def writable_by_us(self) -> bool:
        """States user space may write (``suspended``, ``write-pending``, ``active-idle``, ``broken`` are EINVAL)."""
        return self in _WRITABLE_STATES


_ARRAY_RANK = {s: i for i, s in enumerate(ArrayState)}
_ARRAY_RANK[ArrayState.UNREADABLE] = -1
_WRITABLE_STATES = frozenset(
    {
        ArrayState.CLEAR,
        ArrayState.INACTIVE,
        ArrayState.READONLY,
        ArrayState.READ_AUTO,
        ArrayState.CLEAN,
        ArrayState.ACTIVE,
    }
)


class SyncAction(Enum):
    """``md/sync_action``."""

    IDLE = "idle"
    FROZEN = "frozen"
    RESYNC = "resync"
    RECOVER = "recover"
    CHECK = "check"
    REPAIR = "repair"
    RESHAPE = "reshape"
    UNKNOWN = "?"

    @property
    def syncing(self) -> bool:
        """A pass that moves ``sync_completed`` and so may need checkpointing."""
        return self in (
            SyncAction.RESYNC,
            SyncAction.RECOVER,
            SyncAction.CHECK,
            SyncAction.REPAIR,
            SyncAction.RESHAPE,
        )


#: Flags of a member's ``dev-*/state`` that the daemon acts on or passes through.
DEV_FLAGS = frozenset(
    {
        "faulty",
        "in_sync",
        "journal",
        "write_mostly",
        "blocked",
        "spare",
        "write_error",
        "want_replacement",
        "replacement",
        "external_bbl",
        "failfast",
    }
)


@dataclass(frozen=True)
class DevState:
    """A member's ``dev-*/state``: the set of flags the kernel printed.

    Unknown flags are kept (``unknown``) rather than dropped, so a newer kernel's
    word shows up in the event log instead of vanishing.
    """

    flags: frozenset[str]
    unknown: frozenset[str] = frozenset()

    def __contains__(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def faulty(self) -> bool:
        return "faulty" in self.flags

    @property
    def blocked(self) -> bool:
        return "blocked" in self.flags

    @property
    def in_sync(self) -> bool:
        return "in_sync" in self.flags


def parse_array_state(text: str | bytes) -> ArrayState:
    word = _word(text)
    for s in ArrayState:
        if s.value == word:
            return s
    return ArrayState.UNREADABLE


def parse_sync_action(text: str | bytes) -> SyncAction:
    word = _word(text)
    for a in SyncAction:
        if a.value == word and a is not SyncAction.UNKNOWN:
            return a
    return SyncAction.UNKNOWN


def parse_dev_state(text: str | bytes) -> DevState:
    words = {w for w in _word(text).split(",") if w}
    return DevState(flags=frozenset(words & DEV_FLAGS), unknown=frozenset(words - DEV_FLAGS))


def parse_bad_blocks(text: str | bytes) -> tuple[tuple[int, int], ...] | None:
    """``dev-*/bad_blocks`` / ``unacknowledged_bad_blocks``: ``"<sector> <length>"`` lines.

    None if any line is not that shape (mdmon's read_bb_file gives up on the
    whole file then too): acting on half a list could acknowledge a range
    that was never recorded.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) <= 0:
            return None
        out.append((int(parts[0]), int(parts[1])))
    return tuple(out)


def parse_sectors(text: str | bytes) -> int | None:
    """``resync_start``/``recovery_start``: a sector number, ``none`` (= MAX_SECTOR), or None if unreadable."""
    word = _word(text)
    if word == "none":
        return MAX_SECTOR
    return int(word) if word.isdigit() else None


def parse_sync_completed(text: str | bytes) -> tuple[int, int] | None:
    """``"done / total"`` while a pass runs; None for ``none``, ``delayed`` or garbage.

    (mdmon reads the three the same way: as no progress.)
    """
    parts = _word(text).split("/")
    if len(parts) != 2:
        return None
    done, total = (p.strip() for p in parts)
    if not (done.isdigit() and total.isdigit()):
        return None
    return int(done), int(total)


def _word(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    return text.strip()
