"""The daemon's changes, made to a DDF container copy the way mdmon 4.2's DDF code makes them.

One ``apply`` is one metadata write.  As in mdadm (``ddf_set_updates_pending``):

* the header ``seq`` moves on by one if anything changed, however many
  changes the batch holds, and the header (hence anchor) timestamp becomes
  the write time; nothing changed means nothing moves and nothing needs writing;
* a VD config record's ``seqnum`` moves on and its timestamp refreshes each
  time a change passes that record to mdadm's helper: a member's state
  change (``ddf_set_disk``) -- and, departing from mdmon, each time a spare
  activation rewrites the record's slots.  mdmon bumps its update buffer, not
  the stored record (seen on the goldens: ``ddf-raid5-rebuild-stopped`` keeps
  the seqnum of ``ddf-raid5-degraded``), so after a crash between disks the
  old and new records tie and mdadm's loader (``load_ddf_local``: a record
  replaces another only with a *higher* seqnum) keeps whichever disk it read
  first, pairing the new PD table with the old slots (tests/crash.py found it).
  With the seqnum moved on, stock mdadm and we both take the new record
  wherever it is; everything else about the record is mdmon's.

Change by change (formats.md §2.12):

* ``SetDirty``: VD_State bit 0x10 (``ddf_set_array_state``).
* ``SetCheckpoint``: DDF has no checkpoint field.  During an initial resync
  mdadm records only "started" (Init_State quick-init) vs "not started"
  (not initialised); that is all we record.  Otherwise it is a no-op.
* ``StartResync``: Init_State "not initialised" (mdadm: resync_start 0).
* ``EndMigration``: Init_State "fully initialised"; members still marked
  Rebuilding are brought in sync, as md reports them in sync at the end.
* ``FailDisk``: PD_State Failed; the VD states recomputed (``get_svd_state``).
  For a member that is not in the container at all (never assembled),
  mdadm's ``handle_missing``: Online cleared, Failed|Missing set, and its
  slot's refnum set to 0 in the VD config.
* ``ActivateSpare``: the spare's refnum and extent go into the slot (only a
  disk that holds no other VD: see ``_activate``, where this departs from
  mdmon, which also takes free space on active disks); all Failed
  PDs get Transition; every disk's type is re-derived (``ddf_update_vlist``:
  Active_in_VD, Rebuilding if the VD is degraded); failed PDs no disk uses are
  dropped and the PD table compacted (``ddf_remove_failed``).  Each disk's
  config slots keep their order and a VD it joins takes the next slot: mdadm
  re-derives the order from an in-memory list whose order depends on which
  disk it loaded first; its loader accepts any order, and a stable one
  rewrites fewer sectors.  A spare dedicated to other VDs (its spare
  assignment record) is refused; which candidate comes first is the caller's
  choice, and the model lists the records.
* ``MemberInSync``: PD_State Online, Rebuilding cleared; VD state recomputed.
* ``AddSpare``: a new PD entry (Forced GUID | Global spare, Online) in the
  first free slot, with mdadm's GUID, a random unique refnum and the same
  distance from the disk's end for the metadata as the existing disks;
  ``attach`` takes the serial it was added under (or the refnum).
* ``RemoveDisk``: PD_State Missing; the disk is no longer written.
* ``MdadmUpdate``: one of mdadm's PHYS_RECORDS / VIRT_RECORDS / VD_CONF
  messages, decoded and applied as ``ddf_process_update`` does (``updates.py``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Any

from construct import Container as CContainer

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
from .container import DDFContainer, Member, Pending
from .geometry import member_positions, member_refs, svd_state, working
from .model import ref_text

MIN_DISK_SECTORS = 32 * 1024 * 2


class Batch:
    """Tracks mdadm's ``updates_pending`` for one write."""

    def __init__(self, c: DDFContainer, env: Environment) -> None:
        self.c = c
        self.env = env
        self.pending = False

    def now(self) -> int:
        return int(self.env.now()) - S.DECADE

    def touch(self, vc: Any | None = None) -> None:
        """_ddf_set_updates_pending: bump the VD record if given, and the header once per batch."""
        if vc is not None:
            vc.timestamp = self.now() & 0xFFFFFFFF
            vc.seqnum = (vc.seqnum + 1) & 0xFFFFFFFF
            self.c.changed_configs.add((bytes(vc.guid), int(vc.sec_elmnt_seq)))
        if not self.pending:
            self.pending = True
            self.c.header.seq = (self.c.header.seq + 1) & 0xFFFFFFFF

    def finish(self) -> None:
        if self.pending:
            self.c.header.timestamp = self.now() & 0xFFFFFFFF


def apply_changes(c: DDFContainer, changes: Sequence[Change], env: Environment) -> None:
    b = Batch(c, env)
    for ch in changes:
        if isinstance(ch, SetDirty):
            ve = _vd(c, ch.volume)
            new = ve.state | S.VD_INCONSISTENT if ch.dirty else ve.state & ~S.VD_INCONSISTENT
            _set_vd(b, ve, "state", new)
        elif isinstance(ch, SetCheckpoint):
            ve = _vd(c, ch.volume)
            if ve.init_state & S.INIT_MASK != S.INIT_FULL:
                init = S.INIT_QUICK if ch.sectors > 0 else S.INIT_NOT
                _set_vd(b, ve, "init_state", (ve.init_state & ~S.INIT_MASK) | init)
        elif isinstance(ch, StartResync):
            ve = _vd(c, ch.volume)
            _set_vd(b, ve, "init_state", (ve.init_state & ~S.INIT_MASK) | S.INIT_NOT)
        elif isinstance(ch, EndMigration):
            ve = _vd(c, ch.volume)
            for bvd in c.bvds(bytes(ve.guid)):
                for r in member_refs(bvd):
                    pd = c.pd(r)
                    if pd is not None and pd.state & S.PD_REBUILDING and not pd.state & S.PD_FAILED:
                        _set_disk_in_sync(b, ch.volume, r)
            _set_vd(b, ve, "init_state", (ve.init_state & ~S.INIT_MASK) | S.INIT_FULL)
        elif isinstance(ch, FailDisk):
            r = _refnum(c, ch.disk_ref)
            _drop_pending(c, r)
            _fail(b, r)
        elif isinstance(ch, MemberInSync):
            ve = _vd(c, ch.volume)
            if (bytes(ve.guid), ch.slot) in c.pending:
                _pending_in_sync(b, ch.volume, ch.slot)
                continue
            bvd, pos = _slot(c, ve, ch.slot)
            r = bvd.phys_refnum[pos]
            if r == 0 or c.pd(r) is None:
                raise ChangeRejected(f"ddf: slot {ch.slot} of volume {ch.volume} has no disk")
            _set_disk_in_sync(b, ch.volume, r)
            _record_pending(b, r)
        elif isinstance(ch, ActivateSpare):
            _activate(b, ch)
        elif isinstance(ch, AddSpare):
            _add_spare(b, ch)
        elif isinstance(ch, RemoveDisk):
            r = _refnum(c, ch.disk_ref)
            _drop_pending(c, r)
            _remove(b, r)
        elif isinstance(ch, (RecordBadBlock, ClearBadBlock)):
            # DDF as mdadm writes it keeps no bad-block log (mdadm's DDF handler has no
            # record_bad_block): the daemon fails the member instead.
            raise ChangeRejected(f"ddf: no bad-block log to record {ch.length} sectors at {ch.sector} of {ch.disk_ref}")
        elif isinstance(ch, MdadmUpdate):
            from .updates import apply_update

            apply_update(b, ch.payload)
        else:  # pragma: no cover - the Change union is closed
            raise ChangeRejected(f"ddf: unknown change {ch!r}")
    b.finish()


# -- lookups ---------------------------------------------------------------------------
def _vd(c: DDFContainer, index: int) -> Any:
    if not 0 <= index < len(c.virt.entries):
        raise ChangeRejected(f"ddf: no volume {index}")
    ve = c.virt.entries[index]
    if ve is None or ve.guid == b"\xff" * S.GUID_LEN or not c.bvds(bytes(ve.guid)):
        raise ChangeRejected(f"ddf: no volume {index}")
    return ve


def _refnum(c: DDFContainer, ref: str) -> int:
    try:
        r = int(ref, 16)
    except ValueError:
        r = -1
    if len(ref) != 8 or c.pd(r) is None:
        m = next((m for m in c.members if m.serial == ref), None)
        if m is None:
            raise ChangeRejected(f"ddf: no disk {ref!r} in the container")
        r = m.refnum
    return r


def _slot(c: DDFContainer, ve: Any, slot: int) -> tuple[Any, int]:
    """The BVD and phys_refnum index holding md raid disk ``slot``."""
    bvds = c.bvds(bytes(ve.guid))
    per = int(bvds[0].prim_elmnt_count)
    seq, j = divmod(slot, per)
    bvd = next((x for x in bvds if x.sec_elmnt_seq == seq), None)
    if slot < 0 or bvd is None:
        raise ChangeRejected(f"ddf: volume has no slot {slot}")
    return bvd, member_positions(bvd)[j]


def _state_of(c: DDFContainer) -> Any:
    def state(r: int) -> int | None:
        pd = c.pd(r)
        return None if pd is None else int(pd.state)

    return state


def _set_vd(b: Batch, ve: Any, name: str, value: int) -> None:
    if ve[name] != value:
        ve[name] = value
        b.touch()


def _recompute(b: Batch, ve: Any) -> bool:
    """Set the VD's state from its members; True if it changed."""
    state = svd_state(b.c.bvds(bytes(ve.guid)), _state_of(b.c))
    new = (ve.state & ~S.VD_STATE_MASK) | state
    if new == ve.state:
        return False
    ve.state = new
    return True


def _vds_with(c: DDFContainer, r: int) -> list[tuple[int, Any, Any]]:
    """(VD index, VD entry, BVD) for every VD that has refnum ``r`` as a member."""
    out = []
    for i, ve in enumerate(c.virt.entries):
        if ve is None or ve.guid == b"\xff" * S.GUID_LEN:
            continue
        for bvd in c.bvds(bytes(ve.guid)):
            if r in member_refs(bvd):
                out.append((i, ve, bvd))
    return out


# -- disk state changes (ddf_set_disk) ----------------------------------------------------
def _fail(b: Batch, r: int) -> None:
    c = b.c
    pd = c.pd(r)
    assert pd is not None
    users = _vds_with(c, r)
    if c.member(r) is None:
        _missing(b, r, users)
        return
    if not users:  # a spare: no array reports it, but its failure is worth recording
        if not pd.state & S.PD_FAILED:
            pd.state |= S.PD_FAILED
            b.touch()
        return
    for _, ve, bvd in users:
        update = False
        if not pd.state & S.PD_FAILED:
            pd.state |= S.PD_FAILED
            update = True
        if _recompute(b, ve) or update:
            b.touch(bvd)


def _missing(b: Batch, r: int, users: list[tuple[int, Any, Any]]) -> None:
    """handle_missing: a member absent from the container is recorded Failed+Missing and its slot emptied (refnum 0)."""
    pd = b.c.pd(r)
    assert pd is not None
    for _, ve, bvd in users:
        if pd.state & S.PD_ONLINE:
            pd.state = (pd.state & ~S.PD_ONLINE) | S.PD_FAILED | S.PD_MISSING
        if r in bvd.phys_refnum:
            bvd.phys_refnum[bvd.phys_refnum.index(r)] = 0
        b.touch(bvd)
        _recompute(b, ve)


def _set_disk_in_sync(b: Batch, index: int, r: int) -> None:
    c = b.c
    pd = c.pd(r)
    assert pd is not None
    if pd.state & S.PD_FAILED:
        raise ChangeRejected(f"ddf: disk {r:08x} has failed; it cannot be in sync")
    ve = _vd(c, index)
    bvd = next(x for x in c.bvds(bytes(ve.guid)) if r in member_refs(x))
    new = (pd.state | S.PD_ONLINE) & ~S.PD_REBUILDING
    update = new != pd.state
    pd.state = new
    if _recompute(b, ve) or update:
        b.touch(bvd)


# -- spare activation (ddf_activate_spare + ddf_process_conf_update) ------------------------
def _activate(b: Batch, ch: ActivateSpare) -> None:
    c = b.c
    ve = _vd(c, ch.volume)
    r = _refnum(c, ch.disk_ref)
    pd = c.pd(r)
    assert pd is not None
    if pd.state & (S.PD_FAILED | S.PD_MISSING) or not pd.state & S.PD_ONLINE:
        raise ChangeRejected(f"ddf: disk {r:08x} is not a usable spare")
    if (ve.state & S.VD_STATE_MASK) in (S.VD_FAILED, S.VD_MISSING):
        raise ChangeRejected(f"ddf: volume {ch.volume} has failed; nothing to rebuild from")
    guid = bytes(ve.guid)
    bvds = c.bvds(guid)
    if any(r in member_refs(x) for x in bvds) or any(g == guid and p.refnum == r for (g, _), p in c.pending.items()):
        raise ChangeRejected(f"ddf: disk {r:08x} is already in volume {ch.volume}")
    if (guid, ch.slot) in c.pending:
        raise ChangeRejected(f"ddf: slot {ch.slot} of volume {ch.volume} is being rebuilt already")
    bvd, pos = _slot(c, ve, ch.slot)
    old = bvd.phys_refnum[pos]
    old_pd = c.pd(old) if old != 0 else None
    if old_pd is not None and working(int(old_pd.state)):
        raise ChangeRejected(f"ddf: slot {ch.slot} of volume {ch.volume} is working")
    m = c.member(r)
    if m is None:
        raise ChangeRejected(f"ddf: disk {r:08x} is not present")
    assigned = c.spare_assignments().get(ref_text(r))
    if assigned is not None and assigned["dedicated"] and ch.volume not in assigned["volumes"]:
        # ddf_activate_spare: a dedicated spare serves only the VDs its assignment record names
        raise ChangeRejected(f"ddf: disk {r:08x} is a spare dedicated to other volumes, not volume {ch.volume}")
    start = find_space(c, m, int(bvd.blocks))
    if start is None:
        raise ChangeRejected(f"ddf: disk {r:08x} has no {bvd.blocks}-sector extent free")
    if _vds_with(c, r) or any(p.refnum == r for p in c.pending.values()):
        # The disk already holds another VD (Intel-style matrix volumes on DDF), and DDF keeps
        # "Rebuilding" per physical disk: on a disk in sync for its other VD this rebuild would
        # read as in sync from the start (as mdmon records it), and after a crash the next
        # assembly would trust the half-copied extent.  So nothing is written now: the rebuild
        # is held in memory and recorded when md has finished it (``_pending_in_sync``).  A
        # crash before leaves this VD degraded on disk, to be rebuilt again.
        c.pending[(guid, ch.slot)] = Pending(r, start)
        return
    bvd.phys_refnum[pos] = r
    bvd.lba_offset[pos] = start
    if m.vlist.count(bytes(ve.guid)) == 0:
        m.vlist.append(bytes(ve.guid))
    b.touch(bvd)  # departs from mdmon: see the module docstring (a crash between disks)
    conf_update(b)


def _pending_in_sync(b: Batch, index: int, slot: int) -> None:
    """md finished a rebuild held in memory: record it, unless its disk still rebuilds another VD.

    While the disk's PD entry says Rebuilding (its first VD is still being copied), recording
    this VD would make it read as rebuilding too, and that VD's completion would then clear the
    flag for both: the slot is marked done and recorded with that completion instead.
    """
    c = b.c
    key = (c.vd_guid(index), slot)
    p = c.pending[key]
    pd = c.pd(p.refnum)
    if pd is None or pd.state & (S.PD_FAILED | S.PD_MISSING):
        raise ChangeRejected(f"ddf: disk {p.refnum:08x} has failed; it cannot be in sync")
    c.pending[key] = Pending(p.refnum, p.lba, done=True)
    _record_pending(b, p.refnum)


def _record_pending(b: Batch, r: int) -> None:
    """Write every finished rebuild onto disk ``r`` into its VD's config, once ``r`` rebuilds nothing else."""
    c = b.c
    pd = c.pd(r)
    if pd is None or pd.state & S.PD_REBUILDING:
        return
    done = [(k, p) for k, p in c.pending.items() if p.refnum == r and p.done]
    for (guid, slot), p in done:
        del c.pending[(guid, slot)]
        index = next(i for i, ve in enumerate(c.virt.entries) if ve is not None and bytes(ve.guid) == guid)
        ve = c.virt.entries[index]
        bvd, pos = _slot(c, ve, slot)
        bvd.phys_refnum[pos] = r
        bvd.lba_offset[pos] = p.lba
        m = c.member(r)
        if m is not None and guid not in m.vlist:
            m.vlist.append(guid)
        _recompute(b, ve)
        b.touch(bvd)
    if done:
        conf_update(b)


def _drop_pending(c: DDFContainer, r: int) -> None:
    """A disk that fails or leaves takes its unrecorded rebuilds with it (nothing was written)."""
    for k in [k for k, p in c.pending.items() if p.refnum == r]:
        del c.pending[k]


def find_space(c: DDFContainer, m: Member, blocks: int) -> int | None:
    """find_space: the first gap of ``blocks`` sectors among the disk's extents, below its configured size."""
    pd = c.pd(m.refnum)
    if pd is None or pd.state & (S.PD_ONLINE | S.PD_FAILED | S.PD_MISSING) != S.PD_ONLINE:
        return None
    extents = []
    for guid in m.vlist:
        for bvd in c.bvds(guid):
            pos = member_positions(bvd)
            for p in pos:
                if bvd.phys_refnum[p] == m.refnum:
                    extents.append((int(bvd.lba_offset[p]), int(bvd.blocks)))
    for (guid, _), held in c.pending.items():  # rebuilds not recorded yet take their room all the same
        if held.refnum == m.refnum:
            extents.append((held.lba, int(c.bvds(guid)[0].blocks)))
    extents.sort()
    extents.append((int(pd.config_size), 0))
    at = 0
    for s, n in extents:
        if s >= at and s - at >= blocks:
            return at
        at = max(at, s + n)
    return None


def conf_update(b: Batch) -> None:
    """The bookkeeping after a VD config update: Transition, each disk's type, the PD table compacted."""
    c = b.c
    for e in c.phys.entries:
        if e is not None and e.state & S.PD_FAILED:
            e.state |= S.PD_TRANSITION
    for m in c.members:
        _update_vlist(c, m)
    remove_failed(c)
    b.touch()


def _update_vlist(c: DDFContainer, m: Member) -> None:
    """ddf_update_vlist, keeping the disk's slot order stable (only VDs it left are dropped)."""
    pd = c.pd(m.refnum)
    if pd is None:
        return
    in_vds = []
    degraded = False
    for _, ve, _ in _vds_with(c, m.refnum):
        in_vds.append(bytes(ve.guid))
        if ve.state & S.VD_STATE_MASK in (S.VD_DEGRADED, S.VD_PART_OPTIMAL):
            degraded = True
    m.vlist = [g for g in m.vlist if g in in_vds] + [g for g in dict.fromkeys(in_vds) if g not in m.vlist]
    if in_vds and pd.state & S.PD_FAILED:
        pd.state &= ~S.PD_TRANSITION
    if in_vds:
        pd.type &= ~S.PD_GLOBAL_SPARE
        if not pd.type & S.PD_ACTIVE:
            pd.type |= S.PD_ACTIVE
            if degraded:
                pd.state |= S.PD_REBUILDING
    if m.spare is not None:
        pd.type = (pd.type & ~S.PD_GLOBAL_SPARE) | S.PD_SPARE
    if not in_vds and m.spare is None:
        pd.type = (pd.type | S.PD_GLOBAL_SPARE) & ~(S.PD_SPARE | S.PD_ACTIVE)


def remove_failed(c: DDFContainer) -> None:
    """ddf_remove_failed: drop Failed+Transition entries of disks no longer present; compact the table."""
    present = {m.refnum for m in c.members}
    kept = []
    for e in c.phys.entries:
        if e is None or e.refnum == S.NO_REFNUM:
            continue
        if e.state & S.PD_FAILED and e.state & S.PD_TRANSITION and e.refnum not in present:
            continue
        kept.append(e)
    n = len(c.phys.entries)
    # mdadm sets only the vacated entries' GUID to 0xFF and leaves the rest, so the entry that
    # moved down is still listed at its old place with its refnum: mdadm --examine then shows that
    # disk twice ("Online" and "Online, Rebuilding") and a later mdadm -I of each disk counts an
    # extra one ("3 drives (out of 5)") and left a volume unstarted in the VM.  The vacated entries
    # are made wholly unused (all 0xFF, as DDF defines an empty entry) here; mdadm reads either.
    c.phys.entries = (kept + [None] * (n - len(kept)))[:n]
    c.phys.header.used_pdes = len(kept)


# -- container membership ------------------------------------------------------------------
def _add_spare(b: Batch, ch: AddSpare) -> None:
    c = b.c
    if ch.size_sectors <= MIN_DISK_SECTORS:
        raise ChangeRejected(f"ddf: a disk of {ch.size_sectors} sectors is too small (mdadm needs > 32 MiB)")
    if any(m.serial == ch.serial for m in c.members):
        raise ChangeRejected(f"ddf: disk {ch.serial!r} is already in the container")
    n = next((i for i, e in enumerate(c.phys.entries) if e is None or e.guid == b"\xff" * S.GUID_LEN), None)
    if n is None:
        raise ChangeRejected("ddf: the PD table is full")
    refs = {e.refnum for e in c.phys.entries if e is not None}
    while True:
        refnum = _host_u32(b.env.random32())
        if refnum not in refs and refnum not in (0, S.NO_REFNUM):
            break
    guid = new_pd_guid(b.env)
    size = ch.size_sectors
    ref_member = c.members[0] if c.members else None
    lbas = new_lbas(size, ref_member)
    config_size = set_config_size(size, *lbas)
    c.phys.entries[n] = CContainer(
        guid=guid,
        refnum=refnum,
        type=S.PD_FORCED_GUID | S.PD_GLOBAL_SPARE,
        state=S.PD_ONLINE,
        config_size=config_size,
        path=b" Information: nil\0",
        pad=b"\xff" * 6,
    )
    c.phys.header.used_pdes += 1
    data = CContainer(
        magic=S.PHYS_DATA_MAGIC,
        crc=0,
        guid=guid,
        refnum=refnum,
        forced_ref=1,
        forced_guid=1,
        vendor=b"Linux".ljust(32, b" "),
        pad=b"\xff" * 442,
    )
    m = Member(refnum, data, [], None, None, size, lbas[0], lbas[1], lbas[2])
    m.serial = ch.serial
    c.members.insert(0, m)  # mdadm puts a new disk at the head of its disk list
    b.touch()


def _host_u32(v: int) -> int:
    """mdadm stores random32() in host (little-endian) order in a big-endian field."""
    return int(struct.unpack(">I", struct.pack("<I", v & 0xFFFFFFFF))[0])


def new_pd_guid(env: Environment) -> bytes:
    """ "Linux-MD" + local date YYYYMMDD + two random words in host order."""
    date = time.strftime("%Y%m%d", time.localtime(env.now())).encode()
    return b"Linux-MD" + date + struct.pack("<II", env.random32(), env.random32())


def new_lbas(size: int, like: Member | None) -> tuple[int, int, int]:
    """__calc_lba: the same distance from the end as an existing disk, else mdadm's defaults."""

    def calc(old: int | None, default_mb: int) -> int:
        dif = (like.sectors - old) if like is not None and old is not None else size
        return size - dif if size > dif else size - default_mb * 1024 * 2

    workspace = calc(like.workspace_lba if like else None, 32)
    primary = calc(like.primary_lba if like else None, 16)
    if like is not None and like.secondary_lba == S.NO_LBA:
        secondary = S.NO_LBA
    else:
        secondary = calc(like.secondary_lba if like else None, 32)
    return primary, secondary, workspace


def set_config_size(size: int, primary: int, secondary: int, workspace: int) -> int:
    """_set_config_size: the data area ends at the first metadata structure (a sane workspace counts)."""
    cfs = min(size - 32 * 1024 * 2, primary)
    if secondary != S.NO_LBA:
        cfs = min(cfs, secondary)
    if workspace < cfs:
        wsp = cfs - workspace
        if not (wsp > 1024 * 1024 * 2 and wsp > size // 16):
            cfs = workspace
    return cfs


def _remove(b: Batch, r: int) -> None:
    c = b.c
    pd = c.pd(r)
    assert pd is not None
    if pd.state & S.PD_MISSING:
        return
    if _vds_with(c, r) and working(int(pd.state)):
        raise ChangeRejected(f"ddf: disk {r:08x} is a working member of a volume; fail it first")
    pd.state |= S.PD_MISSING
    c.members = [m for m in c.members if m.refnum != r]
    b.touch()


__all__ = ["apply_changes", "find_space", "new_lbas", "new_pd_guid", "ref_text", "set_config_size"]
