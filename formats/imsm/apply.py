"""Changes recorded as mdadm 4.2's mdmon records them (imsm_set_array_state, imsm_set_disk,
imsm_activate_spare + imsm_process_update, mark_failure, migrate, end_migration, imsm_delete).

Everything here mutates a *copy* (``IMSMContainer.apply`` made it); the caller
validates the result before any byte is built.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from ..changes import (
    ActivateSpare,
    AddSpare,
    Change,
    ClearBadBlock,
    EndMigration,
    Environment,
    FailDisk,
    MdadmUpdate,
    MemberInSync,
    RecordBadBlock,
    RemoveDisk,
    SetCheckpoint,
    SetDirty,
    StartResync,
)
from ..errors import ChangeRejected
from . import structs as S
from .container import IMSMContainer, Spare
from .geometry import blocks_per_migr_unit
from .records import BbmEntryRec, BbmLogRec, DevRec, DiskRec, MapRec, MpbRec
from .serial import normalise_serial
from .updates import apply_payload

MIGR_REPAIR = 5  # in memory only: stored as VERIFY + DEV_VERIFY_AND_FIX


def _dev(mpb: MpbRec, index: int) -> DevRec:
    if not 0 <= index < len(mpb.devs):
        raise ChangeRejected(f"imsm: no volume {index}")
    return mpb.devs[index]


def _disk_index(mpb: MpbRec, ref: str) -> int:
    for i, d in enumerate(mpb.disks):
        if d.serial_text == ref:
            return i
    return -1


def count_failed(mpb: MpbRec, dev: DevRec) -> int:
    """imsm_count_failed(MAP_0)."""
    m0, m1 = dev.map0, dev.map1
    loop = m1 if m1 is not None and m0.num_members < m1.num_members else m0
    failed = 0
    for i in range(min(loop.num_members, m0.num_members)):
        o = m0.disk_ord_tbl[i]
        d = mpb.disks[o & S.ORD_INDEX_MASK]
        if d.is_failed or o & S.IMSM_ORD_REBUILD:
            failed += 1
    return failed


def check_degraded(mpb: MpbRec, dev: DevRec, failed: int) -> int:
    """imsm_check_degraded(MAP_0)."""
    m = dev.map0
    if not failed:
        return S.MAP_STATE_UNINITIALIZED if m.map_state == S.MAP_STATE_UNINITIALIZED else S.MAP_STATE_NORMAL
    level = m.level
    if level == 0:
        return S.MAP_STATE_FAILED
    if level == 1:
        return S.MAP_STATE_DEGRADED if failed < m.num_members else S.MAP_STATE_FAILED
    if level == 10:
        mx = dev.map_x
        insync = 2
        for i in range(m.num_members):
            if i % 2 == 0:
                insync = 2
            o = mx.disk_ord_tbl[i] if i < mx.num_members else m.disk_ord_tbl[i]
            d = mpb.disks[o & S.ORD_INDEX_MASK]
            if d.is_failed or o & S.IMSM_ORD_REBUILD:
                insync -= 1
            if insync == 0:
                return S.MAP_STATE_FAILED
        return S.MAP_STATE_DEGRADED
    if level == 5:
        return S.MAP_STATE_DEGRADED if failed < 2 else S.MAP_STATE_FAILED
    return m.map_state


def _is_rebuilding(dev: DevRec) -> bool:
    m1 = dev.map1
    return m1 is not None and dev.vol.migr_type == S.MIGR_REBUILD and m1.map_state == S.MAP_STATE_DEGRADED


def _is_initializing(dev: DevRec) -> bool:
    m1 = dev.map1
    return m1 is not None and dev.vol.migr_type == S.MIGR_INIT and m1.map_state == S.MAP_STATE_UNINITIALIZED


def _is_resyncing(dev: DevRec) -> bool:
    m1 = dev.map1
    if m1 is None:
        return False
    if dev.vol.migr_type == S.MIGR_INIT or (dev.vol.migr_type == S.MIGR_VERIFY and dev.status & S.DEV_VERIFY_AND_FIX):
        return True
    if dev.vol.migr_type == S.MIGR_GEN_MIGR:
        return False
    return m1.map_state == S.MAP_STATE_NORMAL


def _set_migr_type(dev: DevRec, t: int) -> None:
    if t == MIGR_REPAIR:
        dev.vol.migr_type = S.MIGR_VERIFY
        dev.status |= S.DEV_VERIFY_AND_FIX
    else:
        dev.vol.migr_type = t
        dev.status &= ~S.DEV_VERIFY_AND_FIX


def migrate(dev: DevRec, to_state: int, migr_type: int) -> None:
    """migrate(): map[1] becomes a copy of map[0] (the source), map[0] gets the target state."""
    dev.vol.migr_state = 1
    _set_migr_type(dev, migr_type)
    dev.vol.set_curr_migr_unit(0)
    src = dev.map0
    dest: MapRec = copy.deepcopy(src)
    del dev.maps[1:]
    dev.maps.append(dest)
    if migr_type == S.MIGR_GEN_MIGR:
        src.disk_ord_tbl = [o & S.ORD_INDEX_MASK for o in src.disk_ord_tbl]
    src.map_state = to_state


def end_migration(mpb: MpbRec, dev: DevRec, map_state: int) -> None:
    """end_migration(): fold unfinished REBUILD bits of map[1] into map[0], drop map[1]."""
    m0 = dev.map0
    prev = dev.map1 or m0
    gen = dev.vol.migr_state and dev.vol.migr_type == S.MIGR_GEN_MIGR
    if map_state != m0.map_state and not gen and prev.map_state != S.MAP_STATE_UNINITIALIZED:
        for po in prev.disk_ord_tbl:
            for j, o in enumerate(m0.disk_ord_tbl):
                if o & S.ORD_INDEX_MASK == po & S.ORD_INDEX_MASK:
                    m0.disk_ord_tbl[j] = o | po
                    break
        map_state = check_degraded(mpb, dev, count_failed(mpb, dev))
    dev.vol.migr_state = 0
    _set_migr_type(dev, 0)
    dev.vol.set_curr_migr_unit(0)
    del dev.maps[1:]
    m0.map_state = map_state


def mark_failure(mpb: MpbRec, dev: DevRec, idx: int) -> bool:
    m0 = dev.map0
    slot = m0.slot_of(idx)
    if slot < 0:
        return False
    disk = mpb.disks[idx]
    if disk.is_failed and m0.rebuilding(slot):
        return False
    _fail_serial(disk)
    m0.disk_ord_tbl[slot] = idx | S.IMSM_ORD_REBUILD
    m1 = dev.map1
    if m1 is not None:
        slot2 = m1.slot_of(idx)
        if slot2 >= 0:
            m1.disk_ord_tbl[slot2] = idx | S.IMSM_ORD_REBUILD
    if m0.failed_disk_num == 0xFF or (not _is_rebuilding(dev) and m0.failed_disk_num > slot):
        m0.failed_disk_num = slot
    if mpb.bbm is not None:
        mpb.bbm.entries = [e for e in mpb.bbm.entries if e.disk_ordinal != idx]
    return True


def _fail_serial(disk: DiskRec) -> None:
    """Append ":0" (keeping the last 15 characters and a NUL when that is too long) and set FAILED."""
    if not disk.is_failed:
        buf = disk.serial.split(b"\0", 1)[0] + b":0"
        if len(buf) >= 16:
            buf = buf[len(buf) - 15 :]
        disk.serial = buf.ljust(16, b"\0")
    disk.status |= S.FAILED_DISK


def set_disk_transition(mpb: MpbRec, dev: DevRec, n: int, faulty: bool, rebuild_done: bool) -> None:
    """The map-state part of imsm_set_disk, after the failure/in-sync marks."""
    m0 = dev.map0
    state = check_degraded(mpb, dev, count_failed(mpb, dev))
    gen = dev.vol.migr_state and dev.vol.migr_type == S.MIGR_GEN_MIGR
    if state == S.MAP_STATE_NORMAL:
        if _is_rebuilding(dev):
            end_migration(mpb, dev, state)
            m0.failed_disk_num = 0xFF
        elif gen:
            m0.map_state = state
            m0.failed_disk_num = 0xFF
    elif state == S.MAP_STATE_DEGRADED:
        if m0.map_state != state and not dev.vol.migr_state:
            m0.map_state = state
        elif _is_rebuilding(dev):
            if faulty:
                if n == m0.failed_disk_num:
                    end_migration(mpb, dev, state)
                else:
                    m0.map_state = state
            if rebuild_done and dev.vol.migr_state:
                end_migration(mpb, dev, state)
                for i in range(m0.num_members):
                    if m0.rebuilding(i):
                        m0.failed_disk_num = i
        elif gen or _is_initializing(dev):
            m0.map_state = state
    elif state == S.MAP_STATE_FAILED:
        if gen:
            m0.map_state = state
        elif m0.map_state != state:
            end_migration(mpb, dev, state)


def _fail_disk(c: IMSMContainer, ref: str) -> None:
    mpb = c.mpb
    idx = _disk_index(mpb, ref)
    if idx < 0:
        raise ChangeRejected(f"imsm: no disk {ref!r} in the table")
    used = False
    for dev in mpb.devs:
        n = dev.map0.slot_of(idx)
        if n < 0:
            continue
        used = True
        mark_failure(mpb, dev, idx)
        set_disk_transition(mpb, dev, n, faulty=True, rebuild_done=False)
    if not used:
        _fail_serial(mpb.disks[idx])


def _member_in_sync(mpb: MpbRec, dev: DevRec, slot: int) -> None:
    if not 0 <= slot < dev.map0.num_members:
        raise ChangeRejected(f"imsm: volume {dev.name} has no slot {slot}")
    mx = dev.map_x
    done = False
    if mx.rebuilding(slot) and _is_rebuilding(dev) and dev.map1 is not None:
        dev.map1.disk_ord_tbl[slot] &= S.ORD_INDEX_MASK
        done = True
    if done and any(dev.map1.rebuilding(s) for s in range(dev.map1.num_members)):  # type: ignore[union-attr]
        return  # another member still recovering: md's recovery_start is not yet MaxSector for all
    set_disk_transition(mpb, dev, slot, faulty=False, rebuild_done=done)


def _activate_spare(c: IMSMContainer, ch: ActivateSpare, env: Environment) -> None:
    mpb = c.mpb
    dev = _dev(mpb, ch.volume)
    m0 = dev.map0
    if not 0 <= ch.slot < m0.num_members:
        raise ChangeRejected(f"imsm: volume {dev.name} has no slot {ch.slot}")
    # A spare may join a rebuild only while nothing of it is recorded done (in practice: a
    # second spare in the same update, as mdmon's activate_spare batches them).  The one
    # checkpoint then bounds every rebuilding member, since md rebuilds them in one pass.
    joining = bool(dev.vol.migr_state)
    if joining and (dev.vol.migr_type != S.MIGR_REBUILD or dev.vol.curr_migr_unit != 0):
        raise ChangeRejected(f"imsm: volume {dev.name} is already migrating")
    if m0.map_state == S.MAP_STATE_FAILED:
        raise ChangeRejected(f"imsm: volume {dev.name} has failed; nothing to rebuild from")
    victim = dev.map_x.idx(ch.slot)
    vdisk = mpb.disks[victim]
    if not (vdisk.is_failed or m0.rebuilding(ch.slot)):
        raise ChangeRejected(f"imsm: slot {ch.slot} of {dev.name} has not failed")
    spare_pos = next((k for k, s in enumerate(c.spares) if s.rec.serial_text == ch.disk_ref), -1)
    table_pos = _disk_index(mpb, ch.disk_ref)
    if spare_pos < 0 and table_pos < 0:
        raise ChangeRejected(f"imsm: {ch.disk_ref!r} is not a disk of this container")
    if spare_pos < 0 and not mpb.disks[table_pos].is_spare:
        _check_free_extent(mpb, dev, table_pos, ch.disk_ref)
    needed = m0.blocks_per_member(mpb.hi_valid) + m0.pba_of_lba0(mpb.hi_valid) + S.MPB_SECTOR_CNT
    rec = c.spares[spare_pos].rec if spare_pos >= 0 else mpb.disks[table_pos]
    if rec.total_blocks(True) < needed:
        raise ChangeRejected(f"imsm: spare {ch.disk_ref!r} is too small for {dev.name}")
    failed = 0
    for i in range(m0.num_members):
        if i != ch.slot and mpb.disks[dev.map_x.idx(i)].is_failed:
            failed += 1
    if spare_pos >= 0:
        spare = c.spares.pop(spare_pos)
        new_idx = len(mpb.disks)
        mpb.disks.append(spare.rec)
        if spare.disk is not None:
            c.members[new_idx] = spare.disk
    else:
        new_idx = table_pos
    disk = mpb.disks[new_idx]
    disk.status = (disk.status | S.CONFIGURED_DISK) & ~S.SPARE_DISK
    to_state = check_degraded(mpb, dev, failed)
    if joining:
        m0.map_state = to_state
    else:
        m0.map_state = S.MAP_STATE_DEGRADED
        migrate(dev, to_state, S.MIGR_REBUILD)
    m0.disk_ord_tbl[ch.slot] = new_idx
    dev.maps[1].disk_ord_tbl[ch.slot] = new_idx | S.IMSM_ORD_REBUILD
    if mpb.orig_family_num == 0:
        mpb.orig_family_num = mpb.family_num
    mpb.family_num = (mpb.family_num + env.random32()) & 0xFFFFFFFF
    if not any(d.map0.slot_of(victim) >= 0 for d in mpb.devs):
        delete_disk(c, victim)


def _check_free_extent(mpb: MpbRec, dev: DevRec, idx: int, ref: str) -> None:
    """A member of other volumes may take a slot where it is free (mdmon's imsm_add_spare).

    Intel matrix RAID: one disk carries an extent of each volume, and a volume's
    members all start at its map's ``pba_of_lba0``; so a disk that lost no data
    can replace a failed member of another volume if nothing of it is used at
    that volume's offset.  A failed disk, or one already in this volume, cannot.
    """
    disk = mpb.disks[idx]
    if disk.is_failed:
        raise ChangeRejected(f"imsm: {ref!r} has failed")
    if dev.map0.slot_of(idx) >= 0:
        raise ChangeRejected(f"imsm: {ref!r} is already a member of {dev.name}")
    hi = mpb.hi_valid
    start = dev.map0.pba_of_lba0(hi)
    end = start + dev.map0.blocks_per_member(hi)
    for other in mpb.devs:
        if other is dev or other.map0.slot_of(idx) < 0:
            continue
        o_start = other.map0.pba_of_lba0(hi)
        o_end = o_start + other.map0.blocks_per_member(hi)
        if o_start < end and start < o_end:
            raise ChangeRejected(
                f"imsm: {ref!r} holds {other.name} at sectors {o_start}-{o_end}, where {dev.name} needs {start}-{end}"
            )


def delete_disk(c: IMSMContainer, index: int) -> None:
    """imsm_delete: drop a table entry and renumber every ord and BBM entry above it."""
    mpb = c.mpb
    for dev in mpb.devs:
        for m in dev.maps:
            m.disk_ord_tbl = [o - 1 if o & S.ORD_INDEX_MASK > index else o for o in m.disk_ord_tbl]
    if mpb.bbm is not None:
        mpb.bbm.entries = [e for e in mpb.bbm.entries if e.disk_ordinal != index]
        for e in mpb.bbm.entries:
            if e.disk_ordinal > index:
                e.disk_ordinal -= 1
    del mpb.disks[index]
    c.members = {(i - 1 if i > index else i): d for i, d in c.members.items() if i != index}


def _start_resync(mpb: MpbRec, dev: DevRec) -> None:
    if dev.vol.migr_state:
        raise ChangeRejected(f"imsm: volume {dev.name} is already migrating")
    if count_failed(mpb, dev):
        raise ChangeRejected(f"imsm: volume {dev.name} has failed members")
    if dev.map0.level == 0:
        raise ChangeRejected(f"imsm: volume {dev.name} is RAID0, it has nothing to resync")
    if dev.map0.map_state == S.MAP_STATE_UNINITIALIZED:
        migrate(dev, S.MAP_STATE_NORMAL, S.MIGR_INIT)
    else:
        migrate(dev, S.MAP_STATE_NORMAL, MIGR_REPAIR)


def _end_migration(mpb: MpbRec, dev: DevRec) -> None:
    if not dev.vol.migr_state:
        raise ChangeRejected(f"imsm: volume {dev.name} is not migrating")
    t = dev.vol.migr_type
    if t == S.MIGR_GEN_MIGR:
        raise ChangeRejected("imsm: a general migration is finished by mdadm's reshape, not by mdmon")
    if _is_rebuilding(dev):
        m1 = dev.map1
        assert m1 is not None
        m1.disk_ord_tbl = [o & S.ORD_INDEX_MASK for o in m1.disk_ord_tbl]
        set_disk_transition(mpb, dev, 0, faulty=False, rebuild_done=True)
        if dev.vol.migr_state:  # still degraded by other failures: end it anyway
            end_migration(mpb, dev, check_degraded(mpb, dev, count_failed(mpb, dev)))
        return
    end_migration(mpb, dev, check_degraded(mpb, dev, count_failed(mpb, dev)))


def _set_dirty(dev: DevRec, dirty: bool) -> None:
    if dirty:
        dev.vol.dirty = S.RAIDVOL_DIRTY
        if dev.rwh_policy in (S.RWH_DISTRIBUTED, S.RWH_MULTIPLE_DISTRIBUTED):
            dev.vol.dirty |= S.RAIDVOL_DSRECORD_VALID
    else:
        dev.vol.dirty = 0


def _set_checkpoint(c: IMSMContainer, dev: DevRec, sectors: int) -> None:
    if dev.vol.migr_state and dev.vol.migr_type == S.MIGR_GEN_MIGR:
        raise ChangeRejected("imsm: a general migration's checkpoint is kept by mdadm's reshape")
    bpu = blocks_per_migr_unit(dev)
    if not bpu:
        raise ChangeRejected(f"imsm: volume {dev.name} has no migration to checkpoint")
    if sectors < 0:
        raise ChangeRejected("imsm: negative checkpoint")
    dev.vol.set_curr_migr_unit(sectors // bpu)


def _add_spare(c: IMSMContainer, ch: AddSpare) -> None:
    serial = normalise_serial(ch.serial.encode("latin-1", "replace"))
    if not serial:
        raise ChangeRejected("imsm: empty serial")
    raw = serial.encode("ascii").ljust(16, b"\0")
    if any(d.serial == raw for d in c.mpb.disks) or any(s.rec.serial == raw for s in c.spares):
        raise ChangeRejected(f"imsm: disk {serial} is already in the container")
    if ch.size_sectors <= S.MPB_SECTOR_CNT:
        raise ChangeRejected(f"imsm: disk {serial} is too small")
    rec = DiskRec(
        serial=raw,
        total_blocks_lo=0,
        scsi_id=0,
        status=S.SPARE_DISK,
        owner_cfg_num=0,
        total_blocks_hi=0,
        filler=bytes(12),
    )
    rec.set_total_blocks(ch.size_sectors)
    c.spares.append(Spare(rec, None))


def _remove_disk(c: IMSMContainer, ref: str) -> None:
    for k, s in enumerate(c.spares):
        if s.rec.serial_text == ref:
            del c.spares[k]
            return
    mpb = c.mpb
    idx = _disk_index(mpb, ref)
    if idx < 0:
        raise ChangeRejected(f"imsm: no disk {ref!r} in the container")
    used = any(m.slot_of(idx) >= 0 for d in mpb.devs for m in d.maps)
    d = mpb.disks[idx]
    if used and not d.is_failed:
        raise ChangeRejected(f"imsm: disk {ref!r} is an active member; fail it first")
    if used:
        c.members.pop(idx, None)  # stays in the table while a map names it, as in mdadm
    else:
        delete_disk(c, idx)


def _bad_block_disk(mpb: MpbRec, ch: RecordBadBlock | ClearBadBlock) -> int:
    """The table index the range belongs to, or ChangeRejected naming why it cannot be kept."""
    idx = _disk_index(mpb, ch.disk_ref)
    where = f"{ch.length} sectors at {ch.sector} of {ch.disk_ref!r}"
    if idx < 0:
        raise ChangeRejected(f"imsm: bad block {where}: no such disk in the table")
    if not any(d.map0.slot_of(idx) >= 0 for d in mpb.devs):
        raise ChangeRejected(f"imsm: bad block {where}: the disk is in no volume")
    if mpb.disks[idx].is_failed:
        raise ChangeRejected(f"imsm: bad block {where}: the disk has failed")
    if idx > 0xFF:
        raise ChangeRejected(f"imsm: bad block {where}: disk index {idx} does not fit the log's ordinal byte")
    if ch.length <= 0 or ch.sector < 0 or ch.sector + ch.length > S.BBM_LOG_MAX_LBA:
        raise ChangeRejected(f"imsm: bad block {where}: not a range the log can hold")
    return idx


def _stored_within(entries: list[BbmEntryRec], idx: int, sector: int, length: int, pos: int) -> int:
    """is_stored_in_bbm: the first entry from ``pos`` of this disk lying inside the range, or -1."""
    for i in range(pos, len(entries)):
        e = entries[i]
        if e.disk_ordinal == idx and e.start >= sector and e.start + e.marked_count + 1 <= sector + length:
            return i
    return -1


def record_bad_block(mpb: MpbRec, ch: RecordBadBlock) -> None:
    """record_new_badblock (mdadm 4.2), on the copy: refused as a whole when the log cannot take it.

    As mdmon: full 256-sector entries already at the range's head are skipped;
    the first other entry of the disk lying inside the range is rewritten to
    cover the range's head; the rest is appended in runs of at most 256
    sectors, unless that would pass 254 entries.  Two differences, both on the
    side of keeping the member: a range wholly covered by full entries already
    succeeds (mdmon reports it as a failure and turns the member's bad-block
    support off), and a refusal leaves the log as it was (mdmon keeps an entry
    it had already rewritten).
    """
    idx = _bad_block_disk(mpb, ch)
    log = mpb.bbm if mpb.bbm is not None else BbmLogRec(S.BBM_LOG_SIGNATURE, [])
    entries = log.entries
    top = S.BBM_LOG_MAX_LBA_ENTRY_VAL
    sector, length = ch.sector, ch.length
    pos = 0
    target: BbmEntryRec | None = None
    while length > 0 and (pos := _stored_within(entries, idx, sector, length, pos)) >= 0:
        e = entries[pos]
        if e.marked_count + 1 == top and e.start == sector:
            sector, length, pos = sector + top, length - top, pos + 1
            continue
        target = e
        break
    if target is not None:
        cnt = min(length, top)
        target.set_start(sector)
        target.marked_count = cnt - 1
        sector, length = sector + cnt, length - cnt
    new = -(-length // top) if length > 0 else 0
    if len(entries) + new > S.BBM_LOG_MAX_ENTRIES:
        raise ChangeRejected(
            f"imsm: bad block {ch.length} sectors at {ch.sector} of {ch.disk_ref!r}: the BBM log is full "
            f"({len(entries)} of {S.BBM_LOG_MAX_ENTRIES} entries, {new} more needed)"
        )
    while length > 0:
        cnt = min(length, top)
        e = BbmEntryRec(marked_count=cnt - 1, disk_ordinal=idx, w1=0, dw1=0)
        e.set_start(sector)
        entries.append(e)
        sector, length = sector + cnt, length - cnt
    mpb.bbm = log


def clear_bad_block(mpb: MpbRec, ch: ClearBadBlock) -> None:
    """clear_badblock (mdadm 4.2): drop the one entry with exactly this start and length.

    The last entry takes its place, as in mdadm, so the bytes match mdmon's.
    A range not recorded is no error (mdadm returns success too).
    """
    idx = _disk_index(mpb, ch.disk_ref)
    if idx < 0:
        raise ChangeRejected(f"imsm: bad block {ch.length} sectors at {ch.sector} of {ch.disk_ref!r}: no such disk")
    if mpb.bbm is None:
        return
    entries = mpb.bbm.entries
    for i, e in enumerate(entries):
        if e.disk_ordinal == idx and e.start == ch.sector and e.marked_count + 1 == ch.length:
            last = entries.pop()
            if i < len(entries):
                entries[i] = last
            return


def apply_changes(c: IMSMContainer, changes: Sequence[Change], env: Environment) -> None:
    """Apply in order, then do one write's bookkeeping (``finish_write``).

    A batch made only of mdadm updates that change nothing (``updates``:
    ``update_add_remove_disk``, an unchanged RWH policy) leaves the generation
    alone, as mdmon then writes nothing.
    """
    if not changes:
        return
    mpb = c.mpb
    touched = False
    for ch in changes:
        if isinstance(ch, MdadmUpdate):
            touched |= apply_payload(c, ch.payload)
            continue
        touched = True
        if isinstance(ch, SetDirty):
            _set_dirty(_dev(mpb, ch.volume), ch.dirty)
        elif isinstance(ch, SetCheckpoint):
            _set_checkpoint(c, _dev(mpb, ch.volume), ch.sectors)
        elif isinstance(ch, FailDisk):
            _fail_disk(c, ch.disk_ref)
        elif isinstance(ch, ActivateSpare):
            _activate_spare(c, ch, env)
        elif isinstance(ch, MemberInSync):
            _member_in_sync(mpb, _dev(mpb, ch.volume), ch.slot)
        elif isinstance(ch, StartResync):
            _start_resync(mpb, _dev(mpb, ch.volume))
        elif isinstance(ch, EndMigration):
            _end_migration(mpb, _dev(mpb, ch.volume))
        elif isinstance(ch, AddSpare):
            _add_spare(c, ch)
        elif isinstance(ch, RemoveDisk):
            _remove_disk(c, ch.disk_ref)
        elif isinstance(ch, RecordBadBlock):
            record_bad_block(mpb, ch)
        elif isinstance(ch, ClearBadBlock):
            clear_bad_block(mpb, ch)
        else:  # pragma: no cover - the Change union is closed
            raise ChangeRejected(f"imsm: unknown change {ch!r}")
    if touched:
        finish_write(c.mpb)


def finish_write(mpb: MpbRec) -> None:
    """write_super_imsm's bookkeeping: generation, orig_family, counts, BBM attribute, mpb_size."""
    mpb.generation_num = (mpb.generation_num + 1) & 0xFFFFFFFF
    if mpb.orig_family_num == 0:
        mpb.orig_family_num = mpb.family_num
    mpb.num_disks = len(mpb.disks)
    mpb.num_raid_devs = len(mpb.devs)
    if mpb.bbm is not None and not mpb.bbm.entries:
        mpb.bbm = None
    if mpb.bbm is not None:
        mpb.attributes |= S.MPB_ATTRIB_BBM
    else:
        mpb.attributes &= ~S.MPB_ATTRIB_BBM
    mpb.bbm_log_size = mpb.bbm.size if mpb.bbm is not None else 0
    mpb.mpb_size = mpb.computed_size()
