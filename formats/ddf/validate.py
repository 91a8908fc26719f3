"""What must hold before a DDF container's bytes are built (formats.md §2.14), plus states that cannot be.

Structural checks keep the bytes buildable.  Semantic ones refuse what no
writer produces and what would mislead md or the daemon: a RAID level or
qualifier outside the spec's table, members that do not match the level
(a RAID1 "two-disk" qualifier over three), BVDs of one VD that disagree
(mdadm's ``check_secondary``), a disk twice in one VD, a member extent past
its disk, an array larger than its members hold, and in a container whose
every disk is present, a BVD recorded nowhere.  mdadm 4.2 writes none of
these (every golden disk passes).

Every error names the disk and the byte, on the first present disk holding
the structure (the global sections: the first present disk), in its primary
copy (the secondary holds the same bytes at its own LBA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MetadataError
from . import structs as S
from .codec import FORMAT
from .geometry import member_refs

if TYPE_CHECKING:
    from .container import DDFContainer, Member

#: The SNIA DDF 2.0 primary RAID levels and the qualifiers each may carry.
RLQS: dict[int, tuple[int, ...]] = {
    S.PRL_RAID0: (0,),
    S.PRL_RAID1: (0, 1),
    S.PRL_RAID3: (0, 1),
    S.PRL_RAID4: (0, 1),
    S.PRL_RAID5: (0, 1, 2, 3),
    S.PRL_RAID6: (1, 2, 3),
    0x07: (0, 1, 2, 3),  # MDF RAID
    S.PRL_JBOD: (0,),
    S.PRL_RAID1E: (0, 1),
    S.PRL_RAID5E: (0, 1, 2, 3),
    S.PRL_CONCAT: (0,),
    S.PRL_RAID5EE: (0, 1, 2, 3),
    0x35: (0, 1, 2, 3),  # RAID5R
}
SRLS = (S.SRL_STRIPED, S.SRL_MIRRORED, S.SRL_CONCAT, S.SRL_SPANNED, S.NO_SECONDARY)

# Byte offsets of the fields named in errors.
PHYS_USED, VIRT_POPULATED = 8, 8
PE_GUID, PE_REFNUM, PE_CONFIG_SIZE = 0, 24, 32
VE_GUID = 0
VC = {
    "guid": 8,
    "prim_elmnt_count": 64,
    "chunk_shift": 66,
    "prl": 67,
    "rlq": 68,
    "sec_elmnt_count": 69,
    "sec_elmnt_seq": 70,
    "srl": 71,
    "blocks": 72,
    "array_blocks": 80,
}


class Site:
    """Byte offsets on the container's disks of the structures an error is about."""

    def __init__(self, c: DDFContainer) -> None:
        self.c = c
        self.h = c.header
        self.present = [m for m in c.members if c.present(m)]

    def _base(self, m: Member | None) -> int | None:
        return None if m is None else m.primary_lba * S.SECTOR

    def _error(self, msg: str, structure: str, field: str, m: Member | None, offset: int | None) -> MetadataError:
        name = None if m is None or m.disk is None else m.disk.name
        return MetadataError(msg, format=FORMAT, structure=structure, field=field, disk=name, offset=offset)

    def section(self, name: str, m: Member | None) -> int | None:
        base = self._base(m)
        return None if base is None else base + int(getattr(self.h, f"{name}_section_offset")) * S.SECTOR

    def table(self, msg: str, name: str, index: int | None, field: str, at: int) -> MetadataError:
        """An error about the PD or VD table (``index`` None: its header)."""
        m = self.present[0] if self.present else None
        off = self.section(name, m)
        if off is not None:
            off += at if index is None else S.PD_SECTION_HEADER_SIZE + S.ENTRY_SIZE * index + at
        return self._error(msg, name if index is None else f"{name}[{index}]", field, m, off)

    def config(self, msg: str, conf: Any, field: str, at: int) -> MetadataError:
        """An error about a VD config record, located in the slot of the first present disk holding it."""
        guid = bytes(conf.guid)
        where = f"vd_config[{guid[-4:].hex()}/{int(conf.sec_elmnt_seq)}]"
        # a disk the record names first; else one holding a record of the VD (the record, if it has one BVD)
        holders = [m for m in self.present if m.refnum in conf.phys_refnum]
        holders += [m for m in self.present if m not in holders and len(self.c.bvds(guid)) == 1]
        for m in holders:
            for k, g in enumerate(m.vlist):
                if g == guid:
                    off = self.section("config", m)
                    assert off is not None
                    crl = int(self.h.config_record_len) * S.SECTOR
                    return self._error(msg, where, field, m, off + k * crl + at)
        return self._error(msg, where, field, None, None)


def validate(c: DDFContainer) -> None:
    h = c.header
    site = Site(c)
    if len(c.phys.entries) != c.phys.header.max_pdes or c.phys.header.max_pdes > h.max_pd_entries:
        raise site.table("PD table size does not match max_pdes", "phys", None, "max_pdes", 10)
    if len(c.virt.entries) != c.virt.header.max_vdes or c.virt.header.max_vdes > h.max_vd_entries:
        raise site.table("VD table size does not match max_vdes", "virt", None, "max_vdes", 10)
    refs: dict[int, int] = {}
    used = 0
    for i, e in enumerate(c.phys.entries):
        if e is None or e.guid == b"\xff" * S.GUID_LEN:
            continue
        used += 1
        if e.refnum in (0, S.NO_REFNUM):
            raise site.table(f"PD entry {i} has refnum {e.refnum:#x}", "phys", i, "refnum", PE_REFNUM)
        if e.refnum in refs:
            raise site.table(
                f"PD entries {refs[e.refnum]} and {i} share refnum {e.refnum:08x}", "phys", i, "refnum", PE_REFNUM
            )
        refs[e.refnum] = i
    if c.phys.header.used_pdes != used:
        raise site.table(
            f"used_pdes {c.phys.header.used_pdes} but {used} entries are in use", "phys", None, "used_pdes", PHYS_USED
        )
    guids: set[bytes] = set()
    for i, ve in enumerate(c.virt.entries):
        if ve is None or ve.guid == b"\xff" * S.GUID_LEN:
            continue
        if bytes(ve.guid) in guids:
            raise site.table(f"VD entry {i} repeats a GUID", "virt", i, "guid", VE_GUID)
        guids.add(bytes(ve.guid))
    if c.virt.header.populated_vdes != len(guids):
        raise site.table(
            f"populated_vdes {c.virt.header.populated_vdes} but {len(guids)} entries",
            "virt",
            None,
            "populated_vdes",
            VIRT_POPULATED,
        )
    mppe = c.mppe
    for conf in c.configs.values():
        if bytes(conf.guid) not in guids:
            raise site.config("config record for a VD not in the VD table", conf, "guid", VC["guid"])
        if not 1 <= conf.prim_elmnt_count <= mppe or len(conf.phys_refnum) != mppe:
            raise site.config(
                f"prim_elmnt_count {conf.prim_elmnt_count} (mppe {mppe})",
                conf,
                "prim_elmnt_count",
                VC["prim_elmnt_count"],
            )
        members = member_refs(conf)
        if len(members) != conf.prim_elmnt_count:
            raise site.config("fewer member refnums than elements", conf, "phys_refnum", S.VD_CONFIG_FIXED)
        check_level(conf, site)
        positions = [k for k, r in enumerate(conf.phys_refnum) if r != S.NO_REFNUM]
        seen: set[int] = set()
        for k, r in zip(positions, members, strict=False):
            if r == 0:
                continue
            if r in seen:
                raise site.config(f"disk {r:08x} appears twice in one BVD", conf, f"phys_refnum[{k}]", 512 + 4 * k)
            seen.add(r)
            if r not in refs:
                raise site.config(f"member {r:08x} is not in the PD table", conf, f"phys_refnum[{k}]", 512 + 4 * k)
            pd = c.phys.entries[refs[r]]
            assert pd is not None
            off = int(conf.lba_offset[k])
            at = 512 + 4 * mppe + 8 * k
            if off + conf.blocks > pd.config_size:
                raise site.config(
                    f"member {r:08x} extent ({off}+{conf.blocks} sectors) ends past its configured size"
                    f" ({pd.config_size})",
                    conf,
                    f"lba_offset[{k}]",
                    at,
                )
            m = c.member(r)
            if m is not None and m.sectors and off + conf.blocks > m.sectors:
                raise site.config(
                    f"member {r:08x} extent ({off}+{conf.blocks} sectors) runs past the end of its disk"
                    f" ({m.sectors} sectors)",
                    conf,
                    f"lba_offset[{k}]",
                    at,
                )
        for name in ("blocks", "array_blocks"):
            if conf[name] == 0:
                raise site.config(f"{name} is 0: a volume of no size", conf, name, VC[name])
        room = capacity(conf)
        if conf.array_blocks > room:
            raise site.config(
                f"array_blocks {conf.array_blocks} exceeds what its members hold ({room})",
                conf,
                "array_blocks",
                VC["array_blocks"],
            )
    check_vds(c, site, guids)
    check_holders(c, site)
    _validate_pending(c, guids, refs)
    for m in c.members:
        if len(m.vlist) > h.max_partitions:
            raise MetadataError(
                f"disk {m.refnum:08x} holds more than {h.max_partitions} config records",
                format=FORMAT,
                structure="header",
                field="max_partitions",
                disk=None if m.disk is None else m.disk.name,
                offset=site.section("config", m) if m.disk is not None else None,
            )


def _err(msg: str, structure: str, field: str | None = None) -> MetadataError:
    """An error of the daemon's own in-memory state (no disk holds it, so no disk or byte to name)."""
    return MetadataError(msg, format=FORMAT, structure=structure, field=field)


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


def check_level(conf: Any, site: Site) -> None:
    """The level, its qualifier and the member count agree with the spec's table (and md's reading of it)."""
    prl, rlq, n = int(conf.prl), int(conf.rlq), int(conf.prim_elmnt_count)
    if prl not in RLQS:
        raise site.config(f"primary RAID level {prl:#04x} is not a DDF level", conf, "prl", VC["prl"])
    if rlq not in RLQS[prl]:
        raise site.config(f"RAID level qualifier {rlq} is not defined for level {prl:#04x}", conf, "rlq", VC["rlq"])
    if prl == S.PRL_RAID1 and ((rlq == 0 and n != 2) or (rlq == 1 and n < 3)):
        kind = "two-disk" if rlq == 0 else "multi-disk"
        raise site.config(f"a {kind} RAID1 qualifier over {n} members", conf, "prim_elmnt_count", 64)
    if conf.srl not in SRLS:
        raise site.config(f"secondary RAID level {conf.srl} is not a DDF level", conf, "srl", VC["srl"])
    if conf.sec_elmnt_count > 1 and conf.srl == S.NO_SECONDARY:
        raise site.config(
            f"{conf.sec_elmnt_count} secondary elements without a secondary level", conf, "srl", VC["srl"]
        )


def capacity(conf: Any) -> int:
    """The most data a VD's members hold (all its BVDs), in sectors: an upper bound on array_blocks."""
    prl, n, blocks = int(conf.prl), int(conf.prim_elmnt_count), int(conf.blocks)
    if prl == S.PRL_RAID1:
        per = blocks
    elif prl == S.PRL_RAID1E:
        per = n * blocks // 2  # two copies of every strip, over any number of disks
    elif prl == S.PRL_RAID6:
        per = max(n - 2, 1) * blocks
    elif prl in (S.PRL_RAID3, S.PRL_RAID4, S.PRL_RAID5, S.PRL_RAID5E, S.PRL_RAID5EE, 0x35):
        per = max(n - 1, 1) * blocks
    else:
        per = n * blocks
    return per * (1 if conf.srl == S.SRL_MIRRORED else int(conf.sec_elmnt_count))


def check_vds(c: DDFContainer, site: Site, guids: set[bytes]) -> None:
    """The BVDs of each VD agree (mdadm's check_secondary), hold each disk once, and are all recorded."""
    everyone = all(c.present(m) for m in c.members) and {m.refnum for m in c.members} >= {
        int(e.refnum)
        for e in c.phys.entries
        if e is not None and e.guid != b"\xff" * S.GUID_LEN and not e.state & (S.PD_FAILED | S.PD_MISSING)
    }
    for guid in guids:
        bvds = c.bvds(guid)
        if not bvds:
            continue
        first = bvds[0]
        for b in bvds[1:]:
            for name in ("prl", "rlq", "srl", "prim_elmnt_count", "sec_elmnt_count", "chunk_shift", "array_blocks"):
                if b[name] != first[name]:
                    raise site.config(
                        f"{name} {b[name]} differs from BVD {first.sec_elmnt_seq}'s {first[name]}", b, name, VC[name]
                    )
        seen: dict[int, int] = {}
        for b in bvds:
            for k, r in enumerate(b.phys_refnum):
                if r in (0, S.NO_REFNUM):
                    continue
                if r in seen and seen[r] != b.sec_elmnt_seq:
                    raise site.config(
                        f"disk {r:08x} is in BVDs {seen[r]} and {b.sec_elmnt_seq} of one VD",
                        b,
                        f"phys_refnum[{k}]",
                        512 + 4 * k,
                    )
                seen[r] = int(b.sec_elmnt_seq)
        if everyone and len(bvds) != first.sec_elmnt_count:
            have = sorted(int(b.sec_elmnt_seq) for b in bvds)
            raise site.config(
                f"{first.sec_elmnt_count} BVDs, but every disk is present and only {have} are recorded",
                first,
                "sec_elmnt_count",
                VC["sec_elmnt_count"],
            )


def check_holders(c: DDFContainer, site: Site) -> None:
    """A working disk's config slot holds a BVD that names it: mdadm writes a record only to its members.

    Otherwise the next write drops the record from that disk (it is in no BVD to write), and a
    record that lost its last holder is gone: seen as a BVD whose members all read as missing.
    A failed or missing disk may keep a stale record (it was replaced), so only working ones count.
    """
    crl = int(site.h.config_record_len) * S.SECTOR
    for m in site.present:
        pd = c.pd(m.refnum)
        if pd is None or pd.state & (S.PD_FAILED | S.PD_MISSING) or not pd.type & S.PD_ACTIVE:
            continue
        for k, guid in enumerate(m.vlist):
            bvds = c.bvds(guid)  # none: a hole left by a deleted VD, written empty
            if bvds and not any(m.refnum in b.phys_refnum for b in bvds):
                off = site.section("config", m)
                raise MetadataError(
                    f"config record {k} is for VD {guid[-4:].hex()}, but no BVD of it names this disk ({m.refnum:08x})",
                    format=FORMAT,
                    structure=f"vd_config[{k}]",
                    field="phys_refnum",
                    disk=None if m.disk is None else m.disk.name,
                    offset=None if off is None else off + k * crl + S.VD_CONFIG_FIXED,
                )
