"""mdadm's metadata updates for IMSM: decode, check and apply them as mdadm 4.2's mdmon does.

While mdmon runs, mdadm does not write IMSM metadata for a second volume,
``--kill-subarray``, ``--update-subarray`` or a disk added to or removed from
the container: it sends a native C structure over the control socket
(``update_structs``) and mdmon applies it (``imsm_prepare_update`` +
``imsm_process_update``).  The daemon hands the bytes over unchanged as
``MdadmUpdate(payload)``; ``IMSMContainer.apply`` lands here.

Supported, with mdmon 4.2's semantics:

* ``update_create_array`` -- a new volume in a running container.  First come
  wins: an index that already exists, or any index but the next one, is
  refused; so is a volume whose extent overlaps (ends inclusive, map 0) an
  existing volume's on a shared disk, a member serial that is not a present
  disk of the container, and a name already used.  Members that were spares
  join the disk table (appended, CONFIGURED, not SPARE); each slot's ord is
  rewritten from the serials; the MPB version and RAID-level attributes are
  recomputed.  mdmon does not touch ``num_raid_devs_created`` (only mdadm's own
  writes do), so neither do we.
* ``update_kill_array`` -- drop a volume and renumber the ones after it.
  Refused for the last volume, and while any volume at or after it is active.
  Its disks stay in the table; the MPB version and attributes stay as they were.
* ``update_rename_array`` -- 15 characters at most, blanks trimmed, not empty,
  not an existing name; refused while that volume is active.
* ``update_size_change`` -- volumes 0 and 1 only (mdmon's own limit): the size
  rounded down to whole MiB per data member, ``blocks_per_member`` and
  ``num_data_stripes`` from the unrounded size, as mdmon computes them.
* ``update_rwh_policy`` -- set ``rwh_policy`` (0..6); no write if unchanged.
* ``update_add_remove_disk`` and ``update_prealloc_badblocks_mem`` -- no-ops
  here.  In mdmon the first only tells the monitor to take the disks the
  manager found (``manage_container``) into its lists; in this daemon the
  manager reports those as ``AddSpare``/``RemoveDisk`` changes.  The second is
  mdmon's internal buffer swap.

Refused with ``ChangeRejected``: ``update_activate_spare`` (it carries a pointer
into mdmon's memory; only mdmon itself makes it), and the reshape family --
``update_reshape_container_disks``, ``update_reshape_migration``,
``update_takeover``, ``update_general_migration_checkpoint`` -- "reshape
updates are not supported yet".

*Which volumes are active* is the daemon's knowledge, not the metadata's.  mdmon
refuses a kill while a volume at or after the victim is active, and a rename of
an active volume, and drops the message silently.  Here the caller says which
volumes are active by setting ``IMSMContainer.active_volumes`` (container
member indices) before ``apply``; the default, empty, enforces nothing.
``must_be_inactive`` tells the caller which volumes a message needs inactive.

Every malformed payload is a ``ChangeRejected`` whose message names imsm, the
update type, the field and its byte offset in the payload; nothing is sized
from the payload before its length has been checked (a map's member count is
one byte, so the largest create message is a few KiB).  A change that does
fit but changes nothing (``update_add_remove_disk``, an unchanged RWH policy)
returns False from ``apply_update``, and the generation is not moved for it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..errors import ChangeRejected
from . import structs as S
from . import update_structs as U
from .container import IMSMContainer
from .geometry import per_dev_array_size
from .records import DevRec, MapRec, MpbRec, VolRec, from_parsed

SECT_PER_MB_SHIFT = 11
MAX_RWH_POLICY = 6  # RWH_BITMAP
_C_SPACE = b" \t\n\v\f\r"

_MAP_OFF = U.CREATE_DEV_OFFSET + S.DEV_HEADER_SIZE + S.VOL_SIZE  # 120: map[0] in a create payload


def _reject(kind: str, field: str, offset: int, message: str) -> ChangeRejected:
    return ChangeRejected(f"imsm: {kind}: {field} at byte {offset}: {message}")


def _refuse(kind: str, message: str) -> ChangeRejected:
    return ChangeRejected(f"imsm: {kind}: {message}")


# -- decoded messages ----------------------------------------------------------------------


@dataclass(frozen=True)
class CreateArray:
    dev_idx: int
    dev: DevRec  # as sent; its ord table is rewritten from ``serials`` when applied
    serials: tuple[bytes, ...]  # one 16-byte serial per map[0] slot


@dataclass(frozen=True)
class KillArray:
    dev_idx: int


@dataclass(frozen=True)
class RenameArray:
    dev_idx: int
    name: bytes  # the 16 bytes as sent


@dataclass(frozen=True)
class SizeChange:
    subdev: int
    new_size: int


@dataclass(frozen=True)
class RwhPolicy:
    dev_idx: int
    new_policy: int


@dataclass(frozen=True)
class AddRemoveDisk:
    pass


@dataclass(frozen=True)
class PreallocBadblocksMem:
    pass


Update = CreateArray | KillArray | RenameArray | SizeChange | RwhPolicy | AddRemoveDisk | PreallocBadblocksMem

_RESHAPE = {
    U.UPDATE_RESHAPE_CONTAINER_DISKS,
    U.UPDATE_RESHAPE_MIGRATION,
    U.UPDATE_TAKEOVER,
    U.UPDATE_GENERAL_MIGRATION_CHECKPOINT,
}


def _parse(st: Any, payload: bytes, off: int, size: int) -> Any:
    # every caller has checked that off + size <= len(payload)
    return st.parse(payload[off : off + size])


def decode(payload: bytes) -> Update:
    """The message in ``payload``, checked for shape (not yet against the container)."""
    if len(payload) < U.TYPE_SIZE:
        raise _reject("mdadm update", "type", 0, f"payload of {len(payload)} bytes is shorter than its type field")
    t = int.from_bytes(payload[:4], "little", signed=True)
    kind = U.UPDATE_NAMES.get(t)
    if kind is None:
        raise _reject("mdadm update", "type", 0, f"unknown update type {t}")
    if t == U.UPDATE_ACTIVATE_SPARE:
        raise _refuse(kind, "carries a pointer into mdmon's memory; only mdmon itself makes it")
    if t in _RESHAPE:
        raise _refuse(kind, "reshape updates are not supported yet")
    if t == U.UPDATE_CREATE_ARRAY:
        return _decode_create(payload)
    want = U.FIXED_SIZES[t]
    if len(payload) != want:
        raise _reject(kind, "length", min(len(payload), want), f"payload is {len(payload)} bytes, mdadm sends {want}")
    if t == U.UPDATE_KILL_ARRAY:
        return KillArray(_parse(U.KillArray, payload, 0, want).dev_idx)
    if t == U.UPDATE_RENAME_ARRAY:
        p = _parse(U.RenameArray, payload, 0, want)
        return RenameArray(p.dev_idx, bytes(p.name))
    if t == U.UPDATE_SIZE_CHANGE:
        p = _parse(U.SizeChange, payload, 0, want)
        return SizeChange(p.subdev, p.new_size)
    if t == U.UPDATE_RWH_POLICY:
        p = _parse(U.RwhPolicy, payload, 0, want)
        return RwhPolicy(p.dev_idx, p.new_policy)
    if t == U.UPDATE_ADD_REMOVE_DISK:
        return AddRemoveDisk()
    return PreallocBadblocksMem()


def _decode_create(payload: bytes) -> CreateArray:
    kind = U.UPDATE_NAMES[U.UPDATE_CREATE_ARRAY]
    n_pay = len(payload)
    fixed = _MAP_OFF + S.MAP_FIXED_SIZE
    if n_pay < fixed:
        raise _reject(kind, "dev", U.CREATE_DEV_OFFSET, f"payload of {n_pay} bytes ends inside the volume record")
    head = _parse(U.CreateArrayHead, payload, 0, 8)
    vol_off = U.CREATE_DEV_OFFSET + S.DEV_HEADER_SIZE
    migr_state = payload[vol_off + 8]
    if migr_state != 0:
        raise _reject(kind, "dev.vol.migr_state", vol_off + 8, f"{migr_state}: a new volume cannot be migrating")
    n = payload[_MAP_OFF + 16]
    if n == 0:
        raise _reject(kind, "dev.vol.map[0].num_members", _MAP_OFF + 16, "a volume with no members")
    map_size = S.MAP_FIXED_SIZE + 4 * n
    want = _MAP_OFF + map_size + U.DISK_INFO_SIZE * n
    if n_pay != want:
        raise _reject(
            kind,
            "length",
            min(n_pay, want),
            f"payload is {n_pay} bytes, a {n}-member volume and its serials take {want}",
        )
    dev = from_parsed(DevRec, _parse(S.DevHeader, payload, U.CREATE_DEV_OFFSET, S.DEV_HEADER_SIZE))
    dev._vol = from_parsed(VolRec, _parse(S.Vol, payload, vol_off, S.VOL_SIZE))
    m = from_parsed(MapRec, _parse(S.Map, payload, _MAP_OFF, map_size))
    dev._maps = [m]
    _check_new_map(kind, m)
    if not dev.volume.split(b"\0", 1)[0]:
        raise _reject(kind, "dev.volume", U.CREATE_DEV_OFFSET, "empty volume name")
    serials: list[bytes] = []
    seen: dict[bytes, int] = {}
    base = _MAP_OFF + map_size
    for slot in range(n):
        off = base + U.DISK_INFO_SIZE * slot
        raw = bytes(_parse(U.DiskInfo, payload, off, U.DISK_INFO_SIZE).serial)
        key = raw.split(b"\0", 1)[0]
        if not key:
            raise _reject(kind, f"disk_info[{slot}].serial", off, "empty serial")
        if key in seen:
            raise _reject(kind, f"disk_info[{slot}].serial", off, f"{_show(key)} is already slot {seen[key]}")
        seen[key] = slot
        serials.append(raw)
    return CreateArray(head.dev_idx, dev, tuple(serials))


def _check_new_map(kind: str, m: MapRec) -> None:
    o = _MAP_OFF
    if m.raid_level not in (0, 1, 5, 10):
        raise _reject(kind, "dev.vol.map[0].raid_level", o + 15, f"RAID level {m.raid_level} is not supported")
    if m.level in (1, 10) and m.num_members % 2:
        raise _reject(kind, "dev.vol.map[0].num_members", o + 16, f"RAID{m.level} with {m.num_members} members")
    if m.level == 5 and m.num_members < 3:
        raise _reject(kind, "dev.vol.map[0].num_members", o + 16, f"RAID5 with {m.num_members} members")
    if m.map_state > S.MAP_STATE_FAILED:
        raise _reject(kind, "dev.vol.map[0].map_state", o + 14, f"unknown map state {m.map_state}")
    if m.blocks_per_strip == 0:
        raise _reject(kind, "dev.vol.map[0].blocks_per_strip", o + 12, "zero")
    if m.num_domains == 0:
        raise _reject(kind, "dev.vol.map[0].num_domains", o + 17, "zero")
    if m.failed_disk_num != 0xFF and m.failed_disk_num >= m.num_members:
        raise _reject(kind, "dev.vol.map[0].failed_disk_num", o + 18, f"slot {m.failed_disk_num}")


def _show(serial: bytes) -> str:
    return serial.split(b"\0", 1)[0].decode("latin-1")


# -- what the caller must know ---------------------------------------------------------------


def must_be_inactive(update: Update, num_volumes: int) -> frozenset[int]:
    """Volumes (container member indices) that mdmon requires inactive for this message."""
    if isinstance(update, KillArray):
        return frozenset(range(max(update.dev_idx, 0), num_volumes))
    if isinstance(update, RenameArray):
        return frozenset({update.dev_idx})
    return frozenset()


# -- applying --------------------------------------------------------------------------------


def apply_payload(c: IMSMContainer, payload: bytes) -> bool:
    """Decode and apply one message to ``c`` (a copy); True if the metadata changed."""
    return apply_update(c, decode(payload))


def apply_update(c: IMSMContainer, u: Update) -> bool:
    busy = must_be_inactive(u, len(c.mpb.devs)) & c.active_volumes
    if busy:
        kind = "update_kill_array" if isinstance(u, KillArray) else "update_rename_array"
        raise _refuse(kind, f"volume {min(busy)} is active (mdmon refuses this while it is)")
    if isinstance(u, CreateArray):
        _create(c, u)
        return True
    if isinstance(u, KillArray):
        _kill(c.mpb, u)
        return True
    if isinstance(u, RenameArray):
        _rename(c.mpb, u)
        return True
    if isinstance(u, SizeChange):
        _size_change(c, u)
        return True
    if isinstance(u, RwhPolicy):
        return _rwh_policy(c.mpb, u)
    return False  # AddRemoveDisk, PreallocBadblocksMem


def _create(c: IMSMContainer, u: CreateArray) -> None:
    kind = "update_create_array"
    mpb = c.mpb
    hi = mpb.hi_valid
    n = len(mpb.devs)
    if u.dev_idx < n:
        raise _reject(kind, "dev_idx", 4, f"volume {u.dev_idx} already exists (another create came first)")
    if u.dev_idx != n:
        raise _reject(kind, "dev_idx", 4, f"volume {u.dev_idx} would leave a gap: the next index is {n}")
    new = u.dev.map0
    name = u.dev.volume.split(b"\0", 1)[0]
    for dev in mpb.devs:
        if dev.volume.split(b"\0", 1)[0] == name:
            raise _reject(kind, "dev.volume", U.CREATE_DEV_OFFSET, f"a volume named {_show(name)} exists")
    new_start = new.pba_of_lba0(True)
    new_end = new_start + per_dev_array_size(new, True)
    wanted = {s.split(b"\0", 1)[0] for s in u.serials}
    for dev in mpb.devs:
        m = dev.map0
        start = m.pba_of_lba0(hi)
        end = start + per_dev_array_size(m, hi)
        if not (start <= new_start <= end or new_start <= start <= new_end):
            continue
        for slot in range(m.num_members):
            serial = mpb.disks[dev.map_x.idx(slot)].serial.split(b"\0", 1)[0]
            if serial in wanted:
                raise _reject(
                    kind,
                    "dev.vol.map[0].pba_of_lba0",
                    _MAP_OFF,
                    f"sectors {new_start}..{new_end} overlap volume {dev.name} ({start}..{end}) "
                    f"on disk {_show(serial)}",
                )
    # every member must be a present disk: a table entry on a present disk, or a spare
    where: list[tuple[str, int]] = []
    base = _MAP_OFF + new.size
    for slot, raw in enumerate(u.serials):
        key = raw.split(b"\0", 1)[0]
        found: tuple[str, int] | None = None
        for i, d in enumerate(mpb.disks):
            if d.serial.split(b"\0", 1)[0] == key and i in c.members:
                found = ("table", i)
                break
        if found is None:
            for k, s in enumerate(c.spares):
                if s.rec.serial.split(b"\0", 1)[0] == key:
                    found = ("spare", k)
                    break
        if found is None:
            raise _reject(
                kind,
                f"disk_info[{slot}].serial",
                base + U.DISK_INFO_SIZE * slot,
                f"disk {_show(key)} is not a present disk of this container",
            )
        where.append(found)
    for slot in range(new.num_members):
        rec = mpb.disks[where[slot][1]] if where[slot][0] == "table" else c.spares[where[slot][1]].rec
        size = rec.total_blocks(hi if where[slot][0] == "table" else True)
        if new_start + new.blocks_per_member(True) > size:
            raise _reject(
                kind,
                "dev.vol.map[0].blocks_per_member",
                _MAP_OFF + 4,
                f"the extent ends past the end of disk {rec.serial_text} ({size} sectors)",
            )
    # spares become members at the end of the table, in slot order
    ords: list[int] = []
    taken = [c.spares[k] for kind_, k in where if kind_ == "spare"]
    for kind_, k in where:
        if kind_ == "table":
            ords.append(k)
            continue
        spare = c.spares[k]
        idx = len(mpb.disks)
        rec = spare.rec
        rec.status = (rec.status | S.CONFIGURED_DISK) & ~S.SPARE_DISK
        mpb.disks.append(rec)
        if spare.disk is not None:
            c.members[idx] = spare.disk
        ords.append(idx)
    c.spares = [s for s in c.spares if not any(s is t for t in taken)]
    dev = copy.deepcopy(u.dev)
    dev.map0.disk_ord_tbl = ords
    mpb.devs.append(dev)
    mpb.update_version_info()


def _kill(mpb: MpbRec, u: KillArray) -> None:
    kind = "update_kill_array"
    n = len(mpb.devs)
    if not 0 <= u.dev_idx < n:
        raise _reject(kind, "dev_idx", 4, f"no volume {u.dev_idx} (the container has {n})")
    if n == 1:
        raise _reject(kind, "dev_idx", 4, "mdmon never removes the container's last volume")
    del mpb.devs[u.dev_idx]


def _rename(mpb: MpbRec, u: RenameArray) -> None:
    kind = "update_rename_array"
    n = len(mpb.devs)
    if not 0 <= u.dev_idx < n:
        raise _reject(kind, "dev_idx", 20, f"no volume {u.dev_idx} (the container has {n})")
    # snprintf(name, 16, "%s"): 15 characters at most; then check_name trims blanks
    name = u.name.split(b"\0", 1)[0][:15].strip(_C_SPACE)
    if not name:
        raise _reject(kind, "name", 4, "must be a non-empty string")
    for dev in mpb.devs:
        if dev.volume.split(b"\0", 1)[0] == name:
            raise _reject(kind, "name", 4, f"a volume named {_show(name)} already exists")
    mpb.devs[u.dev_idx].volume = name.ljust(16, b"\0")


def _size_change(c: IMSMContainer, u: SizeChange) -> None:
    kind = "update_size_change"
    mpb = c.mpb
    if u.subdev not in (0, 1):
        raise _reject(kind, "subdev", 4, f"volume {u.subdev}: mdmon 4.2 changes the size of volumes 0 and 1 only")
    if u.subdev >= len(mpb.devs):
        raise _reject(kind, "subdev", 4, f"no volume {u.subdev}")
    if u.new_size <= 0:
        raise _reject(kind, "new_size", 8, f"{u.new_size} sectors")
    dev = mpb.devs[u.subdev]
    m = dev.map0
    used = m.data_members
    if used == 0:
        raise _refuse(kind, f"volume {dev.name} has no data members")
    per_disk = u.new_size // used
    bpm = per_disk + S.NUM_BLOCKS_DIRTY_STRIPE_REGION
    start = m.pba_of_lba0(mpb.hi_valid)
    for slot in range(m.num_members):
        d = mpb.disks[m.idx(slot)]
        if start + bpm > d.total_blocks(mpb.hi_valid):
            raise _reject(kind, "new_size", 8, f"{u.new_size} sectors do not fit on disk {d.serial_text}")
    dev.set_size_sectors(((per_disk >> SECT_PER_MB_SHIFT) << SECT_PER_MB_SHIFT) * used)
    m.set_blocks_per_member(bpm)
    m.set_num_data_stripes(per_disk // m.num_domains // m.blocks_per_strip)


def _rwh_policy(mpb: MpbRec, u: RwhPolicy) -> bool:
    kind = "update_rwh_policy"
    if not 0 <= u.dev_idx < len(mpb.devs):
        raise _reject(kind, "dev_idx", 8, f"no volume {u.dev_idx}")
    if not 0 <= u.new_policy <= MAX_RWH_POLICY:
        raise _reject(kind, "new_policy", 4, f"unknown policy {u.new_policy}")
    dev = mpb.devs[u.dev_idx]
    if dev.rwh_policy == u.new_policy:
        return False
    dev.rwh_policy = u.new_policy
    return True


__all__ = [
    "AddRemoveDisk",
    "CreateArray",
    "KillArray",
    "PreallocBadblocksMem",
    "RenameArray",
    "RwhPolicy",
    "SizeChange",
    "Update",
    "apply_payload",
    "apply_update",
    "decode",
    "must_be_inactive",
]
