"""The neutral picture (``formats.model``) of an IMSM MPB."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..model import (
    ConsistencyPolicy,
    Container,
    Disk,
    DiskState,
    Member,
    MemberState,
    Migration,
    MigrationType,
    Volume,
    VolumeState,
)
from . import structs as S
from .geometry import (
    blocks_per_migr_unit,
    component_size,
    consistency_policy,
    container_uuid,
    md_layout,
    ppl_offset,
    ppl_size,
    volume_uuid,
)
from .records import DevRec, DiskRec, MpbRec

_MAP_STATE = {
    S.MAP_STATE_NORMAL: VolumeState.NORMAL,
    S.MAP_STATE_UNINITIALIZED: VolumeState.UNINITIALIZED,
    S.MAP_STATE_DEGRADED: VolumeState.DEGRADED,
    S.MAP_STATE_FAILED: VolumeState.FAILED,
}


def is_missing(d: DiskRec) -> bool:
    """A ``missing:N`` placeholder, or a failed disk mdadm marked missing (scsi_id all ones)."""
    return d.serial.startswith(b"missing:") or (d.scsi_id == 0xFFFFFFFF and d.is_failed)


def disk_state(d: DiskRec) -> DiskState:
    if is_missing(d):
        return DiskState.MISSING
    if d.is_spare:
        return DiskState.SPARE
    if d.is_failed:
        return DiskState.FAILED
    if d.is_configured:
        return DiskState.ACTIVE
    return DiskState.SPARE


def admin_serial(d: DiskRec) -> str:
    """The serial an administrator knows: without the ``:0`` mdadm appends on failure."""
    s = d.serial_text
    return s[:-2] if d.is_failed and s.endswith(":0") else s


def migration_type(dev: DevRec) -> MigrationType:
    t = dev.vol.migr_type
    if t == S.MIGR_INIT:
        return MigrationType.INIT
    if t == S.MIGR_REBUILD:
        return MigrationType.REBUILD
    if t == S.MIGR_VERIFY:
        return MigrationType.REPAIR if dev.status & S.DEV_VERIFY_AND_FIX else MigrationType.VERIFY
    if t == S.MIGR_GEN_MIGR:
        return MigrationType.RESHAPE
    return MigrationType.STATE_CHANGE


def member_state(mpb: MpbRec, dev: DevRec, slot: int) -> MemberState:
    m0, m1 = dev.map0, dev.map1
    d = mpb.disks[m0.idx(slot)]
    if is_missing(d):
        return MemberState.MISSING
    if d.is_failed:
        return MemberState.FAILED
    rebuild_in_map1 = m1 is not None and slot < m1.num_members and m1.rebuilding(slot)
    if rebuild_in_map1 and dev.vol.migr_type == S.MIGR_REBUILD:
        return MemberState.REBUILDING
    if m0.rebuilding(slot) or rebuild_in_map1:
        return MemberState.OUT_OF_SYNC
    return MemberState.IN_SYNC


def volume_bad_blocks(mpb: MpbRec, idx: int, start: int, size: int) -> tuple[tuple[int, int], ...]:
    """get_volume_badblocks: the disk's BBM log entries that start or end inside the extent."""
    if mpb.bbm is None:
        return ()
    out = []
    for e in mpb.bbm.entries:
        end = e.start + e.marked_count + 1
        if e.disk_ordinal == idx and (start <= e.start < start + size or start <= end <= start + size):
            out.append((e.start, e.marked_count + 1))
    return tuple(out)


def volume(mpb: MpbRec, index: int, sector_size: int, gen_migr_bpu: int | None = None) -> Volume:
    dev = mpb.devs[index]
    m0 = dev.map0
    analysed = dev.map_x  # mdadm's map_to_analyse: the source map while migrating
    level = analysed.level
    start, size = m0.pba_of_lba0(mpb.hi_valid), component_size(dev, mpb.hi_valid, sector_size)
    members = tuple(
        Member(
            slot=slot,
            disk_ref=mpb.disks[m0.idx(slot)].serial_text,
            state=member_state(mpb, dev, slot),
            offset_sectors=start,
            bad_blocks=volume_bad_blocks(mpb, m0.idx(slot), start, size),
        )
        for slot in range(m0.num_members)
    )
    migration = None
    if dev.map1 is not None:
        bpu = blocks_per_migr_unit(dev, gen_migr_bpu)
        migration = Migration(
            type=migration_type(dev), checkpoint_sectors=dev.vol.curr_migr_unit * bpu if bpu else None
        )
    policy = ConsistencyPolicy(consistency_policy(dev))
    ppl = policy is ConsistencyPolicy.PPL
    return Volume(
        index=index,
        name=dev.name,
        uuid=volume_uuid(mpb, index),
        level=level,
        layout=md_layout(level),
        raid_disks=m0.num_members,
        chunk_sectors=0 if level == 1 else analysed.blocks_per_strip,
        size_sectors=dev.size_sectors,
        component_sectors=component_size(dev, mpb.hi_valid, sector_size),
        members=members,
        state=_MAP_STATE[analysed.map_state],
        dirty=bool(dev.vol.dirty & S.RAIDVOL_DIRTY),
        migration=migration,
        consistency_policy=policy,
        ppl_offset_sectors=ppl_offset(dev, mpb.hi_valid) if ppl else 0,
        ppl_size_sectors=ppl_size(dev) if ppl else 0,
    )


def container(
    mpb: MpbRec,
    sector_size: int,
    paths: Mapping[int, str],
    spares: Sequence[tuple[DiskRec, str | None]] = (),
    own_is_sync: bool = True,
    gen_migr_bpu: int | None = None,
) -> Container:
    """``paths``: table index -> where that disk's own copy was read; ``spares``: spare records."""
    disks = [
        Disk(
            ref=d.serial_text,
            serial=admin_serial(d),
            size_sectors=d.total_blocks(mpb.hi_valid),
            state=disk_state(d),
            path=paths.get(i),
        )
        for i, d in enumerate(mpb.disks)
    ]
    disks += [
        Disk(ref=d.serial_text, serial=d.serial_text, size_sectors=d.total_blocks(True), state=DiskState.SPARE, path=p)
        for d, p in spares
    ]
    return Container(
        format="imsm",
        uuid=container_uuid(mpb, own_is_sync),
        identity=f"{mpb.family_num:08x}",
        generation=mpb.generation_num,
        sector_size=sector_size,
        disks=tuple(disks),
        volumes=tuple(volume(mpb, i, sector_size, gen_migr_bpu) for i in range(len(mpb.devs))),
        extra={
            "version": mpb.version,
            "orig_family": f"{mpb.orig_family_num:08x}",
            "attributes": mpb.attributes,
            "creation_time": mpb.creation_time,
        },
    )
