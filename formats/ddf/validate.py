"""What must hold before a DDF container's bytes are built (formats.md §2.14), plus mdadm's own limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MetadataError
from . import structs as S
from .codec import FORMAT
from .geometry import member_refs

if TYPE_CHECKING:
    from .container import DDFContainer


def _err(msg: str, structure: str, field: str | None = None) -> MetadataError:
    return MetadataError(msg, format=FORMAT, structure=structure, field=field)


def validate(c: DDFContainer) -> None:
    h = c.header
    if len(c.phys.entries) != c.phys.header.max_pdes or c.phys.header.max_pdes > h.max_pd_entries:
        raise _err("PD table size does not match max_pdes", "phys", "max_pdes")
    if len(c.virt.entries) != c.virt.header.max_vdes or c.virt.header.max_vdes > h.max_vd_entries:
        raise _err("VD table size does not match max_vdes", "virt", "max_vdes")
    refs: dict[int, int] = {}
    used = 0
    for i, e in enumerate(c.phys.entries):
        if e is None or e.guid == b"\xff" * S.GUID_LEN:
            continue
        used += 1
        if e.refnum in (0, S.NO_REFNUM):
            raise _err(f"PD entry {i} has refnum {e.refnum:#x}", f"phys[{i}]", "refnum")
        if e.refnum in refs:
            raise _err(f"PD entries {refs[e.refnum]} and {i} share refnum {e.refnum:08x}", f"phys[{i}]", "refnum")
        refs[e.refnum] = i
    if c.phys.header.used_pdes != used:
        raise _err(f"used_pdes {c.phys.header.used_pdes} but {used} entries are in use", "phys", "used_pdes")
    guids: set[bytes] = set()
    for i, ve in enumerate(c.virt.entries):
        if ve is None or ve.guid == b"\xff" * S.GUID_LEN:
            continue
        if bytes(ve.guid) in guids:
            raise _err(f"VD entry {i} repeats a GUID", f"virt[{i}]", "guid")
        guids.add(bytes(ve.guid))
    if c.virt.header.populated_vdes != len(guids):
        raise _err(f"populated_vdes {c.virt.header.populated_vdes} but {len(guids)} entries", "virt", "populated_vdes")
    mppe = c.mppe
    for (guid, seq), conf in c.configs.items():
        where = f"vd_config[{guid[-4:].hex()}/{seq}]"
        if guid not in guids:
            raise _err("config record for a VD not in the VD table", where, "guid")
        if not 1 <= conf.prim_elmnt_count <= mppe or len(conf.phys_refnum) != mppe:
            raise _err(f"prim_elmnt_count {conf.prim_elmnt_count} (mppe {mppe})", where, "prim_elmnt_count")
        members = member_refs(conf)
        if len(members) != conf.prim_elmnt_count:
            raise _err("fewer member refnums than elements", where, "phys_refnum")
        present = [r for r in members if r != 0]
        if len(set(present)) != len(present):
            raise _err("a disk appears twice in one BVD", where, "phys_refnum")
        offsets = [o for r, o in zip(conf.phys_refnum, conf.lba_offset, strict=True) if r != S.NO_REFNUM]
        for r, off in zip(members, offsets, strict=False):
            if r == 0:
                continue
            if r not in refs:
                raise _err(f"member {r:08x} is not in the PD table", where, "phys_refnum")
            pd = c.phys.entries[refs[r]]
            assert pd is not None
            if off + conf.blocks > pd.config_size:
                raise _err(f"member {r:08x} extent ends past its configured size", where, "lba_offset")
    _validate_pending(c, guids, refs)
    for m in c.members:
        if len(m.vlist) > h.max_partitions:
            raise _err(
                f"disk {m.refnum:08x} holds more than {h.max_partitions} config records", "config", "max_partitions"
            )


def _validate_pending(c: DDFContainer, guids: set[bytes], refs: dict[int, int]) -> None:
    """Rebuilds held in memory (``DDFContainer.pending``) must fit beside every recorded extent.

    They are not written, but their room is taken: a VD created meanwhile must not land on it.
    """
    taken: dict[int, list[tuple[int, int]]] = {}
    for conf in c.configs.values():
        offsets = [o for r, o in zip(conf.phys_refnum, conf.lba_offset, strict=True) if r != S.NO_REFNUM]
        for r, off in zip(member_refs(conf), offsets, strict=False):
            if r != 0:
                taken.setdefault(r, []).append((int(off), int(conf.blocks)))
    for (guid, slot), p in c.pending.items():
        where = f"pending[{guid[-4:].hex()}/{slot}]"
        if guid not in guids or p.refnum not in refs:
            raise _err(f"rebuild onto {p.refnum:08x} for a VD or disk no longer in the tables", where, "refnum")
        blocks = int(c.bvds(guid)[0].blocks)
        pd = c.phys.entries[refs[p.refnum]]
        assert pd is not None
        if p.lba + blocks > pd.config_size:
            raise _err(f"rebuild onto {p.refnum:08x} ends past its configured size", where, "lba_offset")
        for off, n in taken.get(p.refnum, []):
            if p.lba < off + n and off < p.lba + blocks:
                raise _err(f"rebuild onto {p.refnum:08x} overlaps a recorded extent at {off}", where, "lba_offset")
        taken.setdefault(p.refnum, []).append((p.lba, blocks))
