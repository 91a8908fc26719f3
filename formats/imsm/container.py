"""A container's merged IMSM metadata (``ContainerMetadata``): model, validate, apply, encode."""

from __future__ import annotations

import copy
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..base import ContainerMetadata, Write
from ..blockio import Disk
from ..changes import Change, Environment
from ..model import Container
from . import model as M
from . import structs as S
from .codec import FORMAT, checksum, mpb_bytes_for_disk
from .disk import IMSMDiskCopy, mpb_writes
from .records import DiskRec, MpbRec


@dataclass
class Spare:
    """A disk outside the MPB's table, with its own one-disk spare record."""

    rec: DiskRec
    disk: Disk | None  # where its record goes; None until the daemon attaches one
    #: The family its record carries.  mdadm derives it from a static buffer that
    #: outlives one record (checksum + the *previous* record's family), so it cannot
    #: be recomputed: an existing record keeps its own, a new one gets the plain sum.
    family: int | None = None


class IMSMContainer(ContainerMetadata):
    format = FORMAT
    #: Container member indices of the volumes md is running, as the daemon knows them.
    #: Set by the caller before ``apply``: mdmon refuses to kill or rename an active
    #: volume (``updates.must_be_inactive``); empty = not known, nothing refused.
    active_volumes: frozenset[int] = frozenset()

    def __init__(
        self,
        mpb: MpbRec,
        sector_size: int,
        members: dict[int, Disk],
        spares: list[Spare],
        tail: bytes,
        migr_sector: bytes | None = None,
    ) -> None:
        self.mpb = mpb
        self.sector_size = sector_size
        self.members = members  # table index -> the present disk holding that entry
        self.spares = spares
        self.tail = tail  # the winning copy's MPB buffer: source of the bytes after mpb_size
        self.migr_sector = migr_sector  # the migration record, kept during a general migration
        #: Serials of disks the last ``apply`` made carriers of the MPB (a spare taken into
        #: a volume): ``encode`` writes them first.  A copy starts with none.
        self.joined: frozenset[str] = frozenset()

    @classmethod
    def from_copies(cls, winner: IMSMDiskCopy, members: dict[int, Disk], spares: list[Spare]) -> IMSMContainer:
        return cls(
            winner.mpb.clone(),
            winner.sector_size,
            members,
            spares,
            winner.raw.buffer,
            winner.raw.migr_sector if _gen_migr(winner.mpb) else None,
        )

    def copy(self) -> IMSMContainer:
        new = IMSMContainer(
            self.mpb.clone(),
            self.sector_size,
            dict(self.members),
            [Spare(copy.deepcopy(s.rec), s.disk, s.family) for s in self.spares],
            self.tail,
            self.migr_sector,
        )
        new.active_volumes = self.active_volumes
        return new

    # -- ContainerMetadata -------------------------------------------------------------
    def model(self) -> Container:
        gen_bpu = None
        if self.migr_sector is not None:
            gen_bpu = struct.unpack_from("<I", self.migr_sector, 16)[0] * (8 if self.sector_size == 4096 else 1)
        own_sync = bool(self.mpb.num_raid_devs) or any(
            not self.mpb.disks[i].is_spare for i in self.members if i < len(self.mpb.disks)
        )
        return M.container(
            self.mpb,
            self.sector_size,
            {i: d.name for i, d in self.members.items()},
            [(s.rec, s.disk.name if s.disk else None) for s in self.spares],
            own_is_sync=own_sync,
            gen_migr_bpu=gen_bpu,
        )

    def validate(self) -> None:
        from .validate import validate

        validate(self)

    def apply(self, changes: Sequence[Change], env: Environment | None = None) -> IMSMContainer:
        from .apply import apply_changes

        new = self.copy()
        apply_changes(new, changes, env or Environment())
        new.validate()
        new.joined = frozenset(new.mpb_carriers() - self.mpb_carriers())
        return new

    def mpb_carriers(self) -> set[str]:
        """The present disks ``encode`` writes the container's MPB to (not a spare record)."""
        if self.mpb.num_raid_devs == 0:
            return set()
        return {
            rec.serial_text
            for i in self.members
            if i < len(self.mpb.disks) and not (rec := self.mpb.disks[i]).is_failed and not rec.is_spare
        }

    def encode(self) -> dict[str, list[Write]]:
        """Each present, non-failed member's MPB, then each spare's record.

        Members go in table order (mdadm's), except that disks just taken into
        the table (``joined``) go first.  mdadm writes the new member after
        the old ones; a disk's MPB is only valid once its anchor (written last,
        with the checksum over every sector) lands, so a crash while the last
        old carrier is half-written (extension sectors landed, anchor not) left
        the new member still holding its spare record and no valid current
        copy anywhere: in a 2-disk container the failed disk's stale copy, with
        that disk in sync, was all the loader had (crash harness).  Written
        first, the new member holds the new MPB complete before any old carrier
        is touched.  The order is no part of the bytes; mdadm reads them alike.
        """
        self.validate()
        ss = self.sector_size
        data = mpb_bytes_for_disk(self.mpb, ss)
        out: dict[str, list[Write]] = {}
        zero = bytes(ss)
        order = sorted(self.members, key=lambda i: (self.mpb.disks[i].serial_text not in self.joined, i))
        for i in order:
            rec = self.mpb.disks[i]
            disk = self.members[i]
            if self.mpb.num_raid_devs == 0 and rec.is_spare:  # a container of spares only
                rec_bytes = spare_record(rec, self.mpb.cache_size, ss, self.mpb.family_num)
                out[rec.serial_text] = mpb_writes(disk.size_bytes // ss, ss, rec_bytes, b"", None)
                continue
            if rec.is_failed or rec.is_spare:
                continue
            migr = zero if self.migr_sector is None else None
            out[rec.serial_text] = mpb_writes(disk.size_bytes // ss, ss, data, self.tail, migr)
        for s in self.spares:
            if s.disk is None:
                continue
            rec_bytes = spare_record(s.rec, self.mpb.cache_size, ss, s.family)
            out[s.rec.serial_text] = mpb_writes(s.disk.size_bytes // ss, ss, rec_bytes, b"", None)
        return out

    def disks(self) -> Mapping[str, Disk]:
        found = {self.mpb.disks[i].serial_text: d for i, d in self.members.items() if i < len(self.mpb.disks)}
        found.update({s.rec.serial_text: s.disk for s in self.spares if s.disk is not None})
        return found

    # -- additions ----------------------------------------------------------------------
    def attach(self, ref: str, disk: Disk) -> None:
        """Say where a disk lives (a spare from ``AddSpare``, a member of a new container)."""
        for i, d in enumerate(self.mpb.disks):
            if d.serial_text == ref:
                self.members[i] = disk
                return
        for s in self.spares:
            if s.rec.serial_text == ref:
                s.disk = disk
                return
        raise KeyError(ref)


def _gen_migr(mpb: MpbRec) -> bool:
    return any(d.vol.migr_state and d.vol.migr_type == S.MIGR_GEN_MIGR for d in mpb.devs)


def spare_record(d: DiskRec, cache_size: int, ss: int, family: int | None = None) -> bytes:
    """write_super_imsm_spare: a one-disk MPB, version 1.0.00.

    A new record's family is its checksum taken with family 0 (mdadm's fresh
    buffer); ``family`` keeps the one an existing record already carries.
    """
    attrs = S.MPB_ATTRIB_CHECKSUM_VERIFY | (S.MPB_ATTRIB_2TB_DISK if d.total_blocks_hi else 0)
    rec = MpbRec(
        sig=(S.SIGNATURE + b"1.0.00").ljust(S.SIG_LEN, b"\0"),
        check_sum=0,
        mpb_size=S.MPB_HEADER_SIZE + S.DISK_ENTRY_SIZE,
        family_num=0,
        generation_num=1,
        error_log_size=0,
        attributes=attrs,
        num_disks=1,
        num_raid_devs=0,
        error_log_pos=0,
        fill=0,
        cache_size=cache_size,
        orig_family_num=0,
        pwr_cycle_count=1,
        bbm_log_size=0,
        num_raid_devs_created=0,
        filler1=0,
        creation_time=0,
        filler=bytes(128),
    )
    rec.disks.append(copy.deepcopy(d))
    raw = bytearray(mpb_bytes_for_disk(rec, ss))
    struct.pack_into("<I", raw, 0x28, checksum(raw, len(raw)) if family is None else family)
    struct.pack_into("<I", raw, 0x20, checksum(raw, len(raw)))
    return bytes(raw)
