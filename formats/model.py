"""The format-neutral picture of a container.

IMSM and DDF describe the same things in different bytes: a container of
physical disks, volumes laid over them, each member slot's health, whether a
volume may hold unsynchronised stripes (dirty) and how far a resync or rebuild
has gone.  The daemon, the CLI and every user of this package see only these
immutable values; the bytes stay inside ``formats/imsm`` and ``formats/ddf``.

Sizes and offsets are always in 512-byte sectors, whatever the disk's logical
sector size, because that is the unit md uses in sysfs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DiskState(StrEnum):
    """A physical disk's role in the container."""

    ACTIVE = "active"  # member of at least one volume
    SPARE = "spare"  # available to replace a failed member
    FAILED = "failed"  # recorded as failed
    MISSING = "missing"  # recorded, but not present (placeholder or removed)


class MemberState(StrEnum):
    """A volume slot's health, as md would see the device in that slot."""

    IN_SYNC = "in_sync"
    REBUILDING = "rebuilding"  # a recovery onto this slot is recorded in progress
    OUT_OF_SYNC = "out_of_sync"  # assigned but holding no valid data yet
    FAILED = "failed"
    MISSING = "missing"  # no disk in the slot


class VolumeState(StrEnum):
    """Redundancy of a volume's data, as it stands now."""

    NORMAL = "normal"
    DEGRADED = "degraded"
    FAILED = "failed"
    UNINITIALIZED = "uninitialized"  # never synced: parity or mirrors not consistent


class ConsistencyPolicy(StrEnum):
    """How md keeps a redundant volume consistent across a crash (md's ``consistency_policy``).

    The daemon needs it because some policies need per-member facts before md
    accepts a new member: a PPL array refuses a device in a slot without its
    log's place (``ppl_sector``/``ppl_size``).
    """

    NONE = "none"  # no redundancy (RAID0, linear)
    RESYNC = "resync"  # a full resync after an unclean shutdown
    PPL = "ppl"  # partial parity log in each member's reserved space (RAID5)
    BITMAP = "bitmap"  # write-intent bitmap


class MigrationType(StrEnum):
    """What a volume is in the middle of (IMSM calls every such thing a migration)."""

    INIT = "init"  # initial resync of a new volume
    REBUILD = "rebuild"  # recovery onto a spare
    VERIFY = "verify"  # md "check"
    REPAIR = "repair"  # md "repair"
    RESHAPE = "reshape"  # geometry change (IMSM general migration)
    STATE_CHANGE = "state_change"


@dataclass(frozen=True)
class Disk:
    """A physical disk named in the container's metadata."""

    ref: str  # stable identity within the format: IMSM serial, DDF refnum (8 hex digits)
    serial: str  # what an administrator recognises: the disk serial, or DDF's PD GUID
    size_sectors: int
    state: DiskState
    path: str | None = None  # where this disk's own metadata was read, when it is present


@dataclass(frozen=True)
class Member:
    """One slot of a volume."""

    slot: int
    disk_ref: str | None  # None: no disk recorded in the slot
    state: MemberState
    offset_sectors: int = 0  # where the volume's data starts on the disk
    #: Bad-block ranges the metadata records on this member's extent, (sector, length) in
    #: sectors of the disk, as md lists them in ``bad_blocks`` (IMSM's BBM log; DDF keeps none)
    bad_blocks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Migration:
    """A resync, rebuild, check or reshape recorded in the metadata."""

    type: MigrationType
    #: Per-member sectors known done, as md's ``sync_completed``/``recovery_start``
    #: count them; None where the format keeps no position (DDF as mdadm writes it).
    checkpoint_sectors: int | None


@dataclass(frozen=True)
class PplArea:
    """Where a member's partial parity log lives on its disk, as md's ``ppl_sector``/``ppl_size`` take it."""

    sector: int  # absolute, on the member's disk
    size_sectors: int


@dataclass(frozen=True)
class Volume:
    """A RAID volume (mdadm's "subarray")."""

    index: int  # position in the container; mdadm's ``member=N``
    name: str
    uuid: str  # as mdadm prints it
    level: int  # md level: 0, 1, 4, 5, 6, 10; -1 for linear
    layout: int  # md layout number
    raid_disks: int
    chunk_sectors: int  # 0 where the level has no chunk
    size_sectors: int  # array size
    component_sectors: int  # per-member data size (md ``component_size``)
    members: tuple[Member, ...]
    state: VolumeState
    dirty: bool
    migration: Migration | None = None
    consistency_policy: ConsistencyPolicy = ConsistencyPolicy.RESYNC
    #: PPL only: where each member's log starts, counted from that member's data offset, and
    #: the size md is given for a member joining (the format's rule, e.g. mdmon's for a spare).
    ppl_offset_sectors: int = 0
    ppl_size_sectors: int = 0

    def ppl(self, offset_sectors: int) -> PplArea | None:
        """The PPL of a member whose data starts at ``offset_sectors``; None unless the policy is PPL."""
        if self.consistency_policy is not ConsistencyPolicy.PPL:
            return None
        return PplArea(offset_sectors + self.ppl_offset_sectors, self.ppl_size_sectors)

    def member(self, slot: int) -> Member:
        for m in self.members:
            if m.slot == slot:
                return m
        raise KeyError(f"volume {self.name} has no slot {slot}")


@dataclass(frozen=True)
class Container:
    """A whole container as one disk's metadata (or the merge of all disks') describes it."""

    format: str  # "imsm" or "ddf"
    uuid: str  # container UUID as mdadm prints it
    identity: str  # IMSM family number, DDF header GUID (hex)
    generation: int  # IMSM generation number, DDF header sequence number
    sector_size: int  # the disks' logical sector size
    disks: tuple[Disk, ...]
    volumes: tuple[Volume, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # format-specific facts for display

    def disk(self, ref: str) -> Disk:
        for d in self.disks:
            if d.ref == ref:
                return d
        raise KeyError(f"no disk {ref!r} in the container")

    def volume(self, index: int) -> Volume:
        for v in self.volumes:
            if v.index == index:
                return v
        raise KeyError(f"no volume {index} in the container")

    def serial_of(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        try:
            return self.disk(ref).serial
        except KeyError:
            return None
