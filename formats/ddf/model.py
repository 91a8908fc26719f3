"""DDF -> the neutral model (formats.md §2.12).

* A member is in sync when its PD state is Online without Failed or
  Rebuilding; Rebuilding marks a recovery in progress; refnum 0 in a VD
  config is a slot whose disk went missing.
* A volume is dirty while VD_State has Not-Consistent; its initial resync is
  unfinished while Init_State is not "fully initialised".
* DDF keeps no resync or rebuild position: a migration's checkpoint is None,
  and md restarts it from the beginning after a stop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

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
from .codec import FORMAT, text
from .geometry import container_uuid, md_layout, member_refs, volume_uuid


def ref_text(refnum: int) -> str:
    return f"{refnum:08x}"


def guid_label(guid: bytes) -> str:
    """A PD GUID as an administrator can read it back: mdadm's 16 ASCII bytes, then the random 8 in hex.

    (mdadm's own guid_str mixes printable random bytes with hex, which is ambiguous.)
    """
    head = guid[:16]
    if all(32 <= b < 127 for b in head):
        return f"{head.decode('ascii').rstrip(' ')}:{guid[16:].hex()}"
    return guid.hex()


def disk_state(pd: Any) -> DiskState:
    st, t = int(pd.state), int(pd.type)
    if st & S.PD_MISSING:
        return DiskState.MISSING
    if st & S.PD_FAILED:
        return DiskState.FAILED
    if t & S.PD_ACTIVE:
        return DiskState.ACTIVE
    return DiskState.SPARE


def member_state(refnum: int, pd: Any | None) -> MemberState:
    if refnum == 0 or pd is None:
        return MemberState.MISSING
    st = int(pd.state)
    if st & S.PD_FAILED:
        return MemberState.FAILED
    if st & S.PD_MISSING:
        return MemberState.MISSING
    if st & S.PD_REBUILDING:
        return MemberState.REBUILDING
    if st & S.PD_ONLINE:
        return MemberState.IN_SYNC
    return MemberState.OUT_OF_SYNC


def volume(
    index: int,
    ve: Any,
    bvds: Sequence[Any],
    pd_of: Callable[[int], Any | None],
    controller: Any,
    header: Any,
    pending: Mapping[int, tuple[int, int, bool]] | None = None,
) -> Volume | None:
    """One VD; None when this disk set holds none of its config records or md cannot run it.

    ``pending`` (md slot -> refnum, offset, done) are rebuilds onto disks holding another VD,
    held in memory until recorded (``DDFContainer.pending``): the slot shows that disk.
    """
    if not bvds:
        return None
    first = bvds[0]
    geo = md_layout(first)
    level, layout, raid_disks = geo if geo is not None else (-2, 0, int(first.prim_elmnt_count) * first.sec_elmnt_count)
    members: list[Member] = []
    per = int(first.prim_elmnt_count)
    for c in bvds:
        offsets = [o for r, o in zip(c.phys_refnum, c.lba_offset, strict=True) if r != S.NO_REFNUM]
        for j, r in enumerate(member_refs(c)):
            pd = pd_of(r)
            members.append(
                Member(
                    slot=int(c.sec_elmnt_seq) * per + j,
                    disk_ref=None if r == 0 or pd is None else ref_text(r),
                    state=member_state(r, pd),
                    offset_sectors=int(offsets[j]),
                )
            )
    for slot, (r, lba, done) in (pending or {}).items():
        mstate = MemberState.IN_SYNC if done else MemberState.REBUILDING
        members = [m for m in members if m.slot != slot]
        members.append(Member(slot=slot, disk_ref=ref_text(r), state=mstate, offset_sectors=lba))
    state = int(ve.state) & S.VD_STATE_MASK
    init = int(ve.init_state) & S.INIT_MASK
    if state in (S.VD_FAILED, S.VD_MISSING):
        vstate = VolumeState.FAILED
    elif state in (S.VD_DEGRADED, S.VD_PART_OPTIMAL):
        vstate = VolumeState.DEGRADED
    elif init != S.INIT_FULL:
        vstate = VolumeState.UNINITIALIZED
    else:
        vstate = VolumeState.NORMAL
    migration = None
    if any(m.state == MemberState.REBUILDING for m in members):
        migration = Migration(MigrationType.REBUILD, None)
    elif init != S.INIT_FULL:
        migration = Migration(MigrationType.INIT, None)
    return Volume(
        index=index,
        name=text(bytes(ve.name)),
        uuid=volume_uuid(controller.guid, header.guid, ve, index),
        level=level,
        layout=layout,
        raid_disks=raid_disks,
        chunk_sectors=0 if first.chunk_shift == 0xFF else 1 << int(first.chunk_shift),
        size_sectors=int(first.array_blocks),
        component_sectors=int(first.blocks),
        members=tuple(sorted(members, key=lambda m: m.slot)),
        state=vstate,
        dirty=bool(ve.state & S.VD_INCONSISTENT),
        migration=migration,
        consistency_policy=ConsistencyPolicy.NONE if level <= 0 else ConsistencyPolicy.RESYNC,
    )


def container(
    header: Any,
    controller: Any,
    pds: Sequence[Any | None],
    vds: Sequence[Any | None],
    bvds_of: Callable[[bytes], list[Any]],
    paths: Mapping[int, str],
    sector_size: int,
    extra: dict[str, Any],
    pending: Mapping[tuple[bytes, int], tuple[int, int, bool]] | None = None,
) -> Container:
    """The neutral picture; ``paths`` maps refnums of present disks to where they were read."""
    by_ref: dict[int, Any] = {}
    for e in pds:
        if e is not None and e.refnum != S.NO_REFNUM:
            by_ref.setdefault(int(e.refnum), e)
    disks = tuple(
        Disk(
            ref=ref_text(r),
            serial=guid_label(bytes(e.guid)),
            size_sectors=int(e.config_size),
            state=disk_state(e),
            path=paths.get(r),
        )
        for r, e in by_ref.items()
    )
    volumes = []
    for i, ve in enumerate(vds):
        if ve is None or ve.guid == b"\xff" * S.GUID_LEN:
            continue
        g = bytes(ve.guid)
        mine = {slot: p for (pg, slot), p in (pending or {}).items() if pg == g}
        v = volume(i, ve, bvds_of(g), by_ref.get, controller, header, mine)
        if v is not None:
            volumes.append(v)
    return Container(
        format=FORMAT,
        uuid=container_uuid(bytes(header.guid)),
        identity=bytes(header.guid).hex(),
        generation=int(header.seq),
        sector_size=sector_size,
        disks=disks,
        volumes=tuple(volumes),
        extra=extra,
    )
