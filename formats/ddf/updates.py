"""mdadm's DDF metadata updates (``MdadmUpdate``): decoded, checked and applied as mdmon 4.2 applies them.

What crosses mdmon's control socket for DDF, and who builds it
===============================================================

Established by reading mdadm 4.2 (tag ``mdadm-4.2``: ``super-ddf.c``,
``Create.c``, ``Manage.c``, ``Kill.c``, ``managemon.c``, ``monitor.c``,
``util.c``).  The update code (``ddf_prepare_update``, ``ddf_process_update``
and its three helpers, ``write_init_super_ddf``, ``add_to_super_ddf``,
``remove_from_super_ddf``, ``kill_subarray_ddf``, ``ddf_update_vlist``,
``ddf_remove_failed``, ``copy_matching_bvd``) is the same at HEAD, except that
HEAD's ``add_to_super_ddf`` gives up when ``fstat`` fails; ``Manage.c``'s
add-to-container path and ``managemon.c``'s ``manage_container`` /
``add_disk_to_container`` behave the same.

Every payload is raw big-endian DDF; the first 4 bytes are the magic.

* ``0xDDDDDDDD`` VIRT_RECORDS, exactly 128 bytes: a 64-byte VD section header
  followed by one 64-byte VD entry.

  - *New VD* (``write_init_super_ddf`` with ``currentconf`` set): the header
    is a copy of mdadm's own VD section header (magic, the CRC as loaded,
    ``max_vdes``, 0xFF pad) with ``populated_vdes`` replaced by the entry
    index mdadm chose; the entry is the new VD entry.  mdmon ignores the
    index: it takes its own first unused entry (GUID all 0xFF), copies the
    64 bytes in and adds one to ``populated_vdes``.  A GUID already in the
    table, or a full table, and mdmon does nothing.
  - *Kill* (``kill_subarray_ddf``): a zeroed 128 bytes with the magic, the
    VD's GUID and ``state`` = 2 (``DDF_state_deleted`` as a marker; the whole
    byte is compared).  mdmon (``_kill_subarray_ddf``) drops the VD's config
    records, empties the config slots that held them *in place* (the other
    slots keep their positions), sets the entry's GUID to 0xFF and leaves the
    entry's other bytes.  It does not lower ``populated_vdes``; we do (our
    validation requires the count to match, and mdadm's examine shows the
    stale count after a kill otherwise): a documented difference.

* ``0xEEEEEEEE`` VD_CONF: ``sec_elmnt_count`` whole config records
  (``config_record_len`` x 512 bytes each), BVD 0 first.  ``ddf_prepare_update``
  drops a message shorter than 512 bytes; ``ddf_process_conf_update`` refuses
  one whose length is not ``config_record_len x 512 x sec_elmnt_count`` (from
  the first record).  The records' CRC field is whatever mdadm's buffer held
  (never computed): it is ignored and the record resealed when written.

  - *New VD* (no config with that GUID yet): the records are stored as they
    are (their ``seqnum`` is mdadm's: 1 + one per member added, so 3 for a
    two-disk RAID1; the timestamp is mdadm's); the VD entry must already
    exist (else mdmon silently drops it).  mdmon prepends the VD to its
    config list and rebuilds every disk's slot list from that list, so on a
    disk of the new VD the new config takes slot 0 and the disk's older
    configs move down one slot (seen on the golden ``ddf-two-volumes``).
  - *Changed VD* (``ddf_activate_spare`` builds these inside mdmon; mdadm's
    Grow never does for DDF): only ``phys_refnum`` and ``lba_offset`` are
    copied, BVD by BVD matched on ``sec_elmnt_seq``.  mdmon leaves the stored
    record's ``seqnum`` (it bumps its update buffer); we move it on for each
    BVD whose slots changed, as for ``ActivateSpare`` (``apply.py``: else a
    crash between disks leaves two records mdadm's loader cannot tell apart).
  - Either way: Failed PDs get Transition, every disk's type and slot list are
    re-derived (Active_in_VD; Rebuilding if it joins a degraded VD), failed
    PDs no VD uses are dropped and the PD table compacted.

* ``0x22222222`` PHYS_RECORDS, exactly 128 bytes: a 64-byte PD section header
  whose ``used_pdes`` is the *index* of the PD entry, and one 64-byte entry.
  Only the magic, ``used_pdes`` and the entry are meaningful: mdadm builds the
  message in an uninitialised buffer (``xmalloc``), so the CRC, ``max_pdes``
  and pad are garbage and are ignored.

  - *Add* (entry state without Missing): mdmon copies the entry into index
    ``used_pdes`` if that entry is unused (GUID all 0xFF), else does nothing;
    ``used_pdes`` + 1.  The disk itself (its ``dl``: fd, size, metadata LBAs,
    its own disk-data section) is not in the message: mdmon takes it from
    the ``add_list`` its own manager filled, and moves it to the head of its
    disk list.  Here the disk is recorded without a device until
    ``ContainerMetadata.attach(refnum, disk)``, which lays its metadata out as
    ``add_to_super_ddf`` does (same distance from the end as the disk at the
    head of the list when the entry arrived) and checks the result against
    the entry's ``config_size``.  We also refuse a refnum or GUID already in
    the table (mdmon does not check; mdadm draws refnums until unused).
  - *Remove* (entry state has Missing, ``remove_from_super_ddf``): only
    ``used_pdes`` (the index) and the Missing bit are set; GUID and refnum
    are garbage.  mdmon sets Missing on that entry and forgets the disk.

* Anything else (other magics, wrong lengths, a VD_CONF for an unknown VD ...)
  mdmon ignores silently; here each is a ``ChangeRejected`` naming "ddf", the
  record, the field and the byte offset in the payload, and nothing changes.

Who sends what, in which order
------------------------------

(a) ``mdadm --create /dev/md/vol1 -l1 -n2 /dev/md/c0`` while mdmon runs:
    ``Create`` sets ``update_tail`` (``mdmon_running``), ``init_super_ddf_bvd``
    + ``add_to_super_ddf_bvd`` per member build the VD in mdadm's memory,
    ``write_init_super_ddf`` queues VIRT_RECORDS (new entry) then VD_CONF (all
    BVDs), and ``flush_metadata_updates`` sends them, one frame each, waiting
    for each ack, then a ping (length 0).  Nothing is written by mdadm.  mdmon's
    manager queues both; the ping makes it hand both to the monitor together,
    which applies them in one pass and writes once (one header ``seq``).  The
    ping is answered after that write; only then does mdadm start the array
    (sysfs), which the manager finds in /proc/mdstat (``ddf_open_new`` needs
    the VD GUID to exist already).  The daemon should therefore apply the
    MdadmUpdates received before a ping in one ``apply`` call.
(b) ``mdadm --add /dev/md/c0 /dev/sdX`` while mdmon runs: mdadm sends *no*
    update and writes no DDF to the new disk.  It erases any old superblock
    it recognises on it (``Kill``), runs ``add_to_super_ddf`` on a private copy
    it throws away (``sync_metadata`` only when mdmon is *not* running), adds
    the disk to the container (``sysfs_add_disk``: ``md/new_dev``) and pings the
    monitor (which does not wait for the disk to be taken in).  mdmon's
    manager sees the container's device count change in /proc/mdstat
    (``manage_container``) and, in ``add_disk_to_container``, opens the disk
    ``O_RDWR`` and runs ``add_to_super_ddf`` itself (first free PD entry,
    refnum and GUID drawn by mdmon, metadata LBAs like the head disk's) and
    queues the PHYS_RECORDS add above to its own monitor, which writes the
    whole metadata to every disk, the new one included, and flags every
    array for a degraded check (spare activation).  In this daemon that is
    ``AddSpare(serial, size)`` + ``attach(serial, disk)``.
    A disk leaving the container (``remove_disk_from_container``) is the
    PHYS_RECORDS remove above, also built by mdmon itself.
(c) ``mdadm --kill-subarray=N /dev/md/c0`` while mdmon runs (the subarray must
    be inactive): one VIRT_RECORDS with state ``deleted``, then the ping.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from construct import Container as CContainer

from ..errors import ChangeRejected
from . import structs as S
from .apply import Batch, conf_update
from .codec import PHYS_ENTRY, PHYS_HEADER, VIRT_ENTRY, VIRT_HEADER, all_ff, vd_config_struct
from .container import DDFContainer, clone_config

RECORDS_LEN = S.PD_SECTION_HEADER_SIZE + S.ENTRY_SIZE  # 128: a section header and one entry
HOLE = b""  # an emptied config slot in a disk's slot list (``dl->vlist[i] = NULL``)
FF_GUID = b"\xff" * S.GUID_LEN

# byte offsets used in messages
_USED_PDES = 8
_ENTRY = S.PD_SECTION_HEADER_SIZE
_E_GUID, _E_REFNUM, _E_STATE = _ENTRY + 0, _ENTRY + 24, _ENTRY + 30
_VE_STATE = _ENTRY + 32
_C_GUID, _C_SEC_COUNT, _C_SEC_SEQ = 8, 69, 70


def _reject(record: str, field: str, offset: int, why: str) -> ChangeRejected:
    return ChangeRejected(f"ddf: {record} update: field {field} at byte {offset}: {why}")


@dataclass(frozen=True)
class PhysUpdate:
    index: int
    entry: Any  # parsed PhysEntry
    remove: bool


@dataclass(frozen=True)
class VirtUpdate:
    index: int  # the entry index mdadm chose (mdmon ignores it)
    entry: Any  # parsed VirtEntry
    delete: bool


@dataclass(frozen=True)
class ConfUpdate:
    records: list[Any]  # parsed vd_config, in message order


Update = PhysUpdate | VirtUpdate | ConfUpdate


# -- decoding -----------------------------------------------------------------------------
def decode(payload: bytes, c: DDFContainer) -> Update:
    """Parse one payload against container ``c``'s geometry; ChangeRejected if it is not one of mdadm's."""
    if len(payload) < 4:
        raise _reject("unknown", "magic", 0, f"payload of {len(payload)} bytes has no 4-byte magic")
    (magic,) = struct.unpack_from(">I", payload, 0)
    if magic == S.PHYS_RECORDS_MAGIC:
        return _decode_phys(payload, c)
    if magic == S.VIRT_RECORDS_MAGIC:
        return _decode_virt(payload)
    if magic == S.VD_CONF_MAGIC:
        return _decode_conf(payload, c)
    raise _reject("unknown", "magic", 0, f"{magic:#010x} is none of PHYS_RECORDS, VIRT_RECORDS, VD_CONF")


def _exact(payload: bytes, record: str) -> None:
    if len(payload) != RECORDS_LEN:
        raise _reject(
            record,
            "length",
            min(len(payload), RECORDS_LEN),
            f"{len(payload)} bytes; mdadm sends a section header and one entry, {RECORDS_LEN} bytes",
        )


def _decode_phys(payload: bytes, c: DDFContainer) -> PhysUpdate:
    _exact(payload, "PHYS_RECORDS")
    head = PHYS_HEADER.parse(payload[: S.PD_SECTION_HEADER_SIZE])
    entry = PHYS_ENTRY.parse(payload[_ENTRY:])
    index = int(head.used_pdes)
    if index >= c.phys.header.max_pdes:
        raise _reject(
            "PHYS_RECORDS", "used_pdes", _USED_PDES, f"entry {index} past the table's {c.phys.header.max_pdes}"
        )
    return PhysUpdate(index, entry, bool(entry.state & S.PD_MISSING))


def _decode_virt(payload: bytes) -> VirtUpdate:
    _exact(payload, "VIRT_RECORDS")
    head = VIRT_HEADER.parse(payload[: S.PD_SECTION_HEADER_SIZE])
    entry = VIRT_ENTRY.parse(payload[_ENTRY:])
    if all_ff(bytes(entry.guid)):
        raise _reject("VIRT_RECORDS", "guid", _E_GUID, "all 0xFF (no VD)")
    return VirtUpdate(int(head.populated_vdes), entry, entry.state == S.VD_DELETED)


def _decode_conf(payload: bytes, c: DDFContainer) -> ConfUpdate:
    rec_len = int(c.header.config_record_len) * S.SECTOR
    mppe = c.mppe
    if len(payload) < S.VD_CONFIG_FIXED:
        raise _reject("VD_CONF", "length", len(payload), f"{len(payload)} bytes, less than a record's fixed 512")
    count = payload[_C_SEC_COUNT]
    if count == 0 or len(payload) != count * rec_len:
        raise _reject(
            "VD_CONF",
            "sec_elmnt_count",
            _C_SEC_COUNT,
            f"{len(payload)} bytes is not {count} record(s) of {rec_len} bytes (config_record_len)",
        )
    body = S.VD_CONFIG_FIXED + 12 * mppe
    if body > rec_len:
        raise _reject("VD_CONF", "length", 0, f"mppe {mppe} does not fit a {rec_len}-byte record")
    structure = vd_config_struct(mppe)
    guid = payload[_C_GUID : _C_GUID + S.GUID_LEN]
    if all_ff(guid):
        raise _reject("VD_CONF", "guid", _C_GUID, "all 0xFF (no VD)")
    records = []
    seen: set[int] = set()
    for i in range(count):
        base = i * rec_len
        name = f"VD_CONF record {i}"
        (magic,) = struct.unpack_from(">I", payload, base)
        if magic != S.VD_CONF_MAGIC:
            raise _reject(name, "magic", base, f"{magic:#010x}, not 0xEEEEEEEE")
        rec = structure.parse(payload[base : base + body])
        if bytes(rec.guid) != guid:
            raise _reject(name, "guid", base + _C_GUID, "differs from record 0's")
        if rec.sec_elmnt_count != count:
            raise _reject(name, "sec_elmnt_count", base + _C_SEC_COUNT, f"{rec.sec_elmnt_count}, record 0 says {count}")
        seq = int(rec.sec_elmnt_seq)
        if seq >= count or seq in seen:
            raise _reject(name, "sec_elmnt_seq", base + _C_SEC_SEQ, f"{seq}: not a new BVD number below {count}")
        seen.add(seq)
        if not 1 <= rec.prim_elmnt_count <= mppe:
            raise _reject(name, "prim_elmnt_count", base + 64, f"{rec.prim_elmnt_count} (1..{mppe})")
        records.append(rec)
    return ConfUpdate(records)


# -- applying -------------------------------------------------------------------------------
def apply_update(b: Batch, payload: bytes) -> None:
    """ddf_prepare_update + ddf_process_update for one message, on the batch's container copy."""
    u = decode(payload, b.c)
    if isinstance(u, PhysUpdate):
        _phys(b, u)
    elif isinstance(u, VirtUpdate):
        _kill(b, u) if u.delete else _new_vd(b, u)
    else:
        _conf(b, u)


def _phys(b: Batch, u: PhysUpdate) -> None:
    c = b.c
    cur = c.phys.entries[u.index]
    in_use = cur is not None and not all_ff(bytes(cur.guid))
    if u.remove:
        if not in_use:
            raise _reject("PHYS_RECORDS", "used_pdes", _USED_PDES, f"entry {u.index} to remove is unused")
        assert cur is not None
        cur.state |= S.PD_MISSING
        c.members = [m for m in c.members if m.refnum != cur.refnum]
        b.touch()
        return
    if in_use:
        raise _reject("PHYS_RECORDS", "used_pdes", _USED_PDES, f"entry {u.index} is in use")
    e = u.entry
    if all_ff(bytes(e.guid)):
        raise _reject("PHYS_RECORDS", "guid", _E_GUID, "all 0xFF (no disk)")
    if e.refnum in (0, S.NO_REFNUM):
        raise _reject("PHYS_RECORDS", "refnum", _E_REFNUM, f"{e.refnum:#010x} is reserved")
    for i, other in enumerate(c.phys.entries):
        if other is None or all_ff(bytes(other.guid)):
            continue
        if other.refnum == e.refnum:
            raise _reject("PHYS_RECORDS", "refnum", _E_REFNUM, f"{e.refnum:08x} is already PD entry {i}'s")
        if bytes(other.guid) == bytes(e.guid):
            raise _reject("PHYS_RECORDS", "guid", _E_GUID, f"already PD entry {i}'s")
    c.phys.entries[u.index] = CContainer(e)
    c.phys.header.used_pdes += 1
    from .container import Member  # the disk arrives with attach()

    head = next((m for m in c.members if m.sectors), None)
    data = CContainer(
        magic=S.PHYS_DATA_MAGIC,
        crc=0,
        guid=bytes(e.guid),
        refnum=int(e.refnum),
        forced_ref=1,
        forced_guid=1,
        vendor=b"Linux".ljust(32, b" "),
        pad=b"\xff" * 442,
    )
    m = Member(int(e.refnum), data, [], None, None, 0, 0, 0, 0)
    if head is not None:
        m.like = (head.sectors, head.primary_lba, head.secondary_lba, head.workspace_lba)
    c.members.insert(0, m)
    b.touch()


def _vd_index(c: DDFContainer, guid: bytes) -> int | None:
    for i, ve in enumerate(c.virt.entries):
        if ve is not None and bytes(ve.guid) == guid:
            return i
    return None


def _new_vd(b: Batch, u: VirtUpdate) -> None:
    c = b.c
    guid = bytes(u.entry.guid)
    have = _vd_index(c, guid)
    if have is not None:
        raise _reject("VIRT_RECORDS", "guid", _E_GUID, f"the VD is already entry {have}")
    free = next((i for i, ve in enumerate(c.virt.entries) if ve is None or all_ff(bytes(ve.guid))), None)
    if free is None:
        raise _reject("VIRT_RECORDS", "guid", _E_GUID, f"the VD table is full ({len(c.virt.entries)} entries)")
    c.virt.entries[free] = CContainer(u.entry)
    c.virt.header.populated_vdes += 1
    b.touch()


def _kill(b: Batch, u: VirtUpdate) -> None:
    c = b.c
    guid = bytes(u.entry.guid)
    i = _vd_index(c, guid)
    if i is None:
        raise _reject("VIRT_RECORDS", "guid", _E_GUID, "no VD with this GUID to delete")
    keys = [k for k in c.configs if k[0] == guid]
    if not keys:
        raise _reject("VIRT_RECORDS", "guid", _E_GUID, "the VD to delete has no config record")
    for k in keys:
        del c.configs[k]
    for m in c.members:
        m.vlist = [HOLE if g == guid else g for g in m.vlist]
    ve = c.virt.entries[i]
    assert ve is not None
    ve.guid = FF_GUID
    c.virt.header.populated_vdes = max(0, c.virt.header.populated_vdes - 1)
    b.touch()


def _conf(b: Batch, u: ConfUpdate) -> None:
    c = b.c
    first = u.records[0]
    guid = bytes(first.guid)
    existing = c.bvds(guid)
    if existing:
        by_seq = {int(r.sec_elmnt_seq): r for r in u.records}
        for bvd in existing:
            rec = by_seq.get(int(bvd.sec_elmnt_seq))
            if rec is None:
                raise _reject(
                    "VD_CONF", "sec_elmnt_seq", _C_SEC_SEQ, f"no record for BVD {bvd.sec_elmnt_seq} of the VD"
                )
            if list(bvd.phys_refnum) != list(rec.phys_refnum) or list(bvd.lba_offset) != list(rec.lba_offset):
                bvd.phys_refnum = list(rec.phys_refnum)
                bvd.lba_offset = list(rec.lba_offset)
                b.touch(bvd)  # departs from mdmon (see above)
    else:
        if _vd_index(c, guid) is None:
            raise _reject("VD_CONF", "guid", _C_GUID, "no VD entry with this GUID (VIRT_RECORDS must come first)")
        for rec in u.records:
            conf = clone_config(rec)
            conf.crc = 0  # mdadm never filled it in; resealed when written
            c.configs[(guid, int(rec.sec_elmnt_seq))] = conf
            c.changed_configs.add((guid, int(rec.sec_elmnt_seq)))  # its disks are written first
        refs = {r for rec in u.records for r in rec.phys_refnum}
        for m in c.members:  # mdmon's config list has the new VD first
            if m.refnum in refs:
                m.vlist = [guid] + [g for g in m.vlist if g != HOLE]
    conf_update(b)


# -- building (what mdadm 4.2 sends) --------------------------------------------------------
def phys_add(entry: Any, index: int, junk: bytes = b"") -> bytes:
    """add_to_super_ddf's message: ``used_pdes`` = index, the entry; other header bytes are mdadm's garbage."""
    head = bytearray((junk + b"\0" * 64)[:64])
    struct.pack_into(">I", head, 0, S.PHYS_RECORDS_MAGIC)
    struct.pack_into(">H", head, _USED_PDES, index)
    return bytes(head) + bytes(PHYS_ENTRY.build(entry))


def phys_remove(index: int, junk: bytes = b"") -> bytes:
    """remove_from_super_ddf's message: the index and the Missing state; the rest uninitialised."""
    buf = bytearray((junk + b"\0" * RECORDS_LEN)[:RECORDS_LEN])
    struct.pack_into(">I", buf, 0, S.PHYS_RECORDS_MAGIC)
    struct.pack_into(">H", buf, _USED_PDES, index)
    struct.pack_into(">H", buf, _E_STATE, S.PD_MISSING)
    return bytes(buf)


def virt_add(virt_header: Any, entry: Any, index: int) -> bytes:
    """write_init_super_ddf's first message: mdadm's VD section header with populated_vdes = index, the entry."""
    head = CContainer(virt_header)
    head.populated_vdes = index
    return bytes(VIRT_HEADER.build(head)) + bytes(VIRT_ENTRY.build(entry))


def virt_delete(guid: bytes) -> bytes:
    """kill_subarray_ddf's message: zeroes, the magic, the GUID and state ``deleted``."""
    buf = bytearray(RECORDS_LEN)
    struct.pack_into(">I", buf, 0, S.VIRT_RECORDS_MAGIC)
    buf[_E_GUID : _E_GUID + S.GUID_LEN] = guid
    buf[_VE_STATE] = S.VD_DELETED
    return bytes(buf)


def vd_conf(records: list[Any], c: DDFContainer, crc: int = 0) -> bytes:
    """write_init_super_ddf's second message (or ddf_activate_spare's): every BVD's record, BVD 0 first."""
    rec_len = int(c.header.config_record_len) * S.SECTOR
    out = b""
    for r in records:
        conf = CContainer(r)
        conf.crc = crc
        body = bytes(vd_config_struct(c.mppe).build(conf))
        out += body + b"\xff" * (rec_len - len(body))
    return out


__all__ = [
    "ConfUpdate",
    "PhysUpdate",
    "VirtUpdate",
    "apply_update",
    "decode",
    "phys_add",
    "phys_remove",
    "vd_conf",
    "virt_add",
    "virt_delete",
]
