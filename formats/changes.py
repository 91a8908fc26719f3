"""The changes the daemon asks of a container's metadata.

They are small typed values, applied by the format to a *copy* of its metadata
(``ContainerMetadata.apply``), so that the result can be validated before a
single byte is built, and the original kept for rollback.  They say what md
knows ("slot 1 of volume 0 has failed", "volume 0 is now dirty"); how that is
spelled on disk is the format's business.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .blockio import Disk


@dataclass(frozen=True)
class SetDirty:
    """Mark a volume dirty (writes may leave stripes inconsistent) or clean."""

    volume: int
    dirty: bool


@dataclass(frozen=True)
class SetCheckpoint:
    """Record how far the volume's current resync or rebuild has got.

    ``sectors`` is per-member, as md reports in ``sync_completed`` and takes in
    ``recovery_start``/``resync_start``.  Formats store what their units allow,
    rounding *down*, so a resumed rebuild never skips unsynchronised data.
    """

    volume: int
    sectors: int


@dataclass(frozen=True)
class FailDisk:
    """A disk has failed: every volume using it records its slot as failed."""

    disk_ref: str


@dataclass(frozen=True)
class ActivateSpare:
    """Put a spare disk into a degraded volume's slot and start a rebuild onto it."""

    volume: int
    slot: int
    disk_ref: str


@dataclass(frozen=True)
class MemberInSync:
    """md reports the slot's recovery complete: the member now holds valid data."""

    volume: int
    slot: int


@dataclass(frozen=True)
class StartResync:
    """A resync of a volume has begun (from ``sectors``)."""

    volume: int


@dataclass(frozen=True)
class EndMigration:
    """The volume's resync, check or rebuild finished: record it done."""

    volume: int


@dataclass(frozen=True)
class AddSpare:
    """A new disk joins the container as a spare.

    ``disk``, when the caller already has the disk open, is where it lives:
    whoever applies the change attaches it to the result
    (``ContainerMetadata.attach(serial, disk)``) before encoding, so the one
    write that records the spare on the other disks also writes the spare's own
    metadata.  It takes no part in equality: the change is the same change
    whichever descriptor carries it.
    """

    serial: str
    size_sectors: int
    path: str | None = None
    disk: Disk | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RemoveDisk:
    """A disk (failed or spare) leaves the container's records."""

    disk_ref: str


@dataclass(frozen=True)
class RecordBadBlock:
    """md could not write ``length`` sectors from ``sector`` of a member disk.

    Sectors are 512-byte units from the start of the disk, as md prints them in
    ``dev-*/unacknowledged_bad_blocks``.  A format that cannot keep the range
    (no bad-block log, the log full) refuses the change with ``ChangeRejected``:
    the daemon then fails the member instead of acknowledging the block.
    """

    disk_ref: str
    sector: int
    length: int


@dataclass(frozen=True)
class ClearBadBlock:
    """md no longer lists a recorded bad-block range of a disk: forget exactly that range."""

    disk_ref: str
    sector: int
    length: int


@dataclass(frozen=True)
class MdadmUpdate:
    """A metadata update mdadm sent over the control socket, in the format's own bytes.

    mdadm builds these itself (a new volume, a disk added to or removed from the
    container, a volume killed or renamed) and leaves applying them to the
    monitor.  The format decodes ``payload`` inside ``apply``; a message it
    cannot decode or that does not fit raises ``ChangeRejected`` naming what
    and where, and nothing is written.
    """

    payload: bytes

    def __repr__(self) -> str:  # the payload can be kilobytes: logs get its size and head
        return f"MdadmUpdate(<{len(self.payload)} bytes: {self.payload[:8].hex()}...>)"


Change = (
    SetDirty
    | SetCheckpoint
    | FailDisk
    | ActivateSpare
    | MemberInSync
    | StartResync
    | EndMigration
    | AddSpare
    | RemoveDisk
    | RecordBadBlock
    | ClearBadBlock
    | MdadmUpdate
)


@dataclass
class Environment:
    """Where a change gets time and randomness (family numbers, DDF refnums, timestamps).

    Injected so that tests and dry runs are reproducible.
    """

    now: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.SystemRandom)

    def random32(self) -> int:
        return self.rng.getrandbits(32)
