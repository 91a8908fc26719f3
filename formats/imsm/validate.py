"""What must hold before an IMSM container's bytes are built (formats.md §1.16), plus states that cannot be.

Structural checks keep the bytes buildable; semantic ones refuse what no
writer produces and what would mislead md or the daemon: one disk in two
slots of a volume, a checkpoint past the member's end (a resumed rebuild
would skip it all), a member extent running into the metadata or past the
disk, an array larger than its members can hold.  mdadm 4.2 writes none of
these (every golden disk passes).

Every error names the disk and the byte: the first present member's copy for
the shared structures, the member's own copy for its extent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from construct import Renamed

from ..blockio import Disk
from ..errors import MetadataError
from . import structs as S
from .codec import FORMAT
from .geometry import blocks_per_migr_unit, component_size
from .records import MpbRec

if TYPE_CHECKING:
    from .container import IMSMContainer


def _offsets(st: Any) -> dict[str, int]:
    """Field name -> byte offset inside a fixed-size construct Struct."""
    out: dict[str, int] = {}
    off = 0
    for sc in st.subcons:
        out[sc.name] = off
        try:
            off += (sc.subcon if isinstance(sc, Renamed) else sc).sizeof()
        except Exception:  # the trailing variable array (a map's ord table)
            break
    return out


MPB_F, DISK_F, DEV_F, VOL_F, MAP_F, BBM_F = (
    _offsets(st) for st in (S.MpbHeader, S.DiskEntry, S.DevHeader, S.Vol, S.Map, S.BbmLogHeader)
)


@dataclass(frozen=True)
class Layout:
    """Where each structure of an MPB starts, in MPB bytes, as ``build_mpb`` lays it out."""

    devs: list[int]
    vols: list[int]
    maps: list[list[int]]
    bbm: int

    @classmethod
    def of(cls, mpb: MpbRec) -> Layout:
        off = S.MPB_HEADER_SIZE + S.DISK_ENTRY_SIZE * len(mpb.disks)
        devs, vols, maps = [], [], []
        for dev in mpb.devs:
            devs.append(off)
            vols.append(off + S.DEV_HEADER_SIZE)
            off += S.DEV_HEADER_SIZE + S.VOL_SIZE
            here = []
            for m in dev.maps:
                here.append(off)
                off += m.size
            maps.append(here)
        return cls(devs, vols, maps, off)


@dataclass(frozen=True)
class Site:
    """Turns an MPB offset into an error naming a disk and its byte (the anchor, then the extension sectors)."""

    disk: Disk | None
    mpb_size: int
    ss: int

    def offset(self, mpb_off: int | None) -> int | None:
        if self.disk is None or mpb_off is None:
            return None
        n = self.disk.size_bytes // self.ss
        sector, within = divmod(mpb_off, self.ss)
        if sector == 0:
            return (n - 2) * self.ss + within
        sectors = -(-self.mpb_size // self.ss)
        return (n - 1 - sectors + sector - 1) * self.ss + within

    def error(self, msg: str, structure: str, field: str | None = None, mpb_off: int | None = None) -> MetadataError:
        return MetadataError(
            msg,
            format=FORMAT,
            structure=structure,
            field=field,
            disk=None if self.disk is None else self.disk.name,
            offset=self.offset(mpb_off),
        )


def validate(c: IMSMContainer) -> None:
    mpb = c.mpb
    present = {i: d for i, d in sorted(c.members.items()) if i < len(mpb.disks)}
    first = next(iter(present.values()), None)
    site = Site(first, mpb.computed_size(), c.sector_size)
    validate_mpb(mpb, c.sector_size, site)
    names = {d.serial for d in mpb.disks}
    for s in c.spares:
        if s.rec.serial in names:
            i = next(k for k, d in enumerate(mpb.disks) if d.serial == s.rec.serial)
            raise site.error(
                f"spare {s.rec.serial_text} is also in the disk table",
                f"disk[{i}]",
                "serial",
                S.MPB_HEADER_SIZE + S.DISK_ENTRY_SIZE * i,
            )
    for i in c.members:
        if i >= len(mpb.disks):
            raise site.error(f"present disk at table index {i} is outside the table", "mpb", "num_disks", 0x38)
    check_semantics(mpb, c.sector_size, site)


def validate_mpb(mpb: MpbRec, ss: int, site: Site | None = None) -> None:
    """What must hold before a byte is built (formats.md §1.16), plus mdadm's own limits."""
    site = site or Site(None, mpb.computed_size(), ss)
    if len(mpb.disks) > 255:
        raise site.error(f"{len(mpb.disks)} disks (max 255)", "mpb", "num_disks", MPB_F["num_disks"])
    if len(mpb.devs) > 255:
        raise site.error(f"{len(mpb.devs)} volumes", "mpb", "num_raid_devs", MPB_F["num_raid_devs"])
    if mpb.num_disks != len(mpb.disks) or mpb.num_raid_devs != len(mpb.devs):
        raise site.error("counts do not match the tables", "mpb", "num_disks", MPB_F["num_disks"])
    size = mpb.computed_size()
    if size > S.MAX_MPB_SIZE:
        raise site.error(f"MPB of {size} bytes exceeds the reserved area", "mpb", "mpb_size", MPB_F["mpb_size"])
    if mpb.mpb_size != size:
        raise site.error(f"mpb_size {mpb.mpb_size} is stale ({size})", "mpb", "mpb_size", MPB_F["mpb_size"])
    # compared as mdadm prints them (up to the first NUL): that text is the disk's ref in the model,
    # and two entries that print alike could not be told apart by the daemon or an administrator
    serials: dict[str, int] = {}
    for i, d in enumerate(mpb.disks):
        if d.serial_text in serials:
            raise site.error(
                f"disk entries {serials[d.serial_text]} and {i} share the serial {d.serial_text!r}",
                f"disk[{i}]",
                "serial",
                S.MPB_HEADER_SIZE + S.DISK_ENTRY_SIZE * i,
            )
        serials[d.serial_text] = i
    lay = Layout.of(mpb)
    names: dict[bytes, int] = {}
    for i, dev in enumerate(mpb.devs):
        if dev.volume in names:
            raise site.error(f"volumes {names[dev.volume]} and {i} share a name", f"dev[{i}]", "volume", lay.devs[i])
        names[dev.volume] = i
    for i, dev in enumerate(mpb.devs):
        where = f"dev[{i}]"
        vol = lay.vols[i]
        if dev.vol.migr_state not in (0, 1) or len(dev.maps) != 1 + dev.vol.migr_state:
            raise site.error(
                "migr_state does not match the maps", f"{where}.vol", "migr_state", vol + VOL_F["migr_state"]
            )
        if dev.vol.migr_type > S.MIGR_STATE_CHANGE:
            raise site.error(f"migr_type {dev.vol.migr_type}", f"{where}.vol", "migr_type", vol + VOL_F["migr_type"])
        for j, m in enumerate(dev.maps):
            mw, mo = f"{where}.map[{j}]", lay.maps[i][j]
            if m.num_members < 1 or m.num_members != len(m.disk_ord_tbl):
                raise site.error(
                    "num_members does not match the ord table", mw, "num_members", mo + MAP_F["num_members"]
                )
            if m.map_state > S.MAP_STATE_FAILED:
                raise site.error(f"map_state {m.map_state}", mw, "map_state", mo + MAP_F["map_state"])
            if m.failed_disk_num != 0xFF and m.failed_disk_num >= m.num_members:
                raise site.error(
                    f"failed_disk_num {m.failed_disk_num}", mw, "failed_disk_num", mo + MAP_F["failed_disk_num"]
                )
            if m.blocks_per_strip == 0 or (ss == 4096 and m.blocks_per_strip % 8):
                raise site.error(
                    f"blocks_per_strip {m.blocks_per_strip}", mw, "blocks_per_strip", mo + MAP_F["blocks_per_strip"]
                )
            for slot, o in enumerate(m.disk_ord_tbl):
                if o & S.ORD_INDEX_MASK >= len(mpb.disks) or o & ~(S.ORD_INDEX_MASK | S.IMSM_ORD_REBUILD):
                    raise site.error(f"ord {o:#x} in slot {slot}", mw, f"disk_ord_tbl[{slot}]", mo + 48 + 4 * slot)
    if mpb.bbm is not None:
        if len(mpb.bbm.entries) > S.BBM_LOG_MAX_ENTRIES:
            raise site.error("too many BBM entries", "bbm_log", "entry_count", lay.bbm + BBM_F["entry_count"])
        for k, e in enumerate(mpb.bbm.entries):
            if e.disk_ordinal >= len(mpb.disks):
                raise site.error(
                    f"BBM entry {k} is for disk {e.disk_ordinal}, the table has {len(mpb.disks)}",
                    f"bbm_log.entry[{k}]",
                    "disk_ordinal",
                    lay.bbm + S.BBM_LOG_HEADER_SIZE + S.BBM_ENTRY_SIZE * k + 1,
                )


def check_semantics(mpb: MpbRec, ss: int, site: Site) -> None:
    """States no writer produces, however well-formed their bytes."""
    hi = mpb.hi_valid
    lay = Layout.of(mpb)
    for i, dev in enumerate(mpb.devs):
        m0 = dev.map0
        for j, m in enumerate(dev.maps):
            mw, mo = f"dev[{i}].map[{j}]", lay.maps[i][j]
            seen: dict[int, int] = {}
            for slot in range(m.num_members):
                idx = m.idx(slot)
                if idx in seen:
                    raise site.error(
                        f"disk {idx} ({mpb.disks[idx].serial_text!r}) is in slots {seen[idx]} and {slot}",
                        mw,
                        f"disk_ord_tbl[{slot}]",
                        mo + 48 + 4 * slot,
                    )
                seen[idx] = slot
            start, length = m.pba_of_lba0(hi), m.blocks_per_member(hi)
            for slot in range(m.num_members):
                rec = mpb.disks[m.idx(slot)]
                size = rec.total_blocks(hi)
                # the MPB's own sectors at the end of the disk (anchor, extension, migration record) are not data;
                # the size recorded in the table is the one mdadm lays volumes out in (a placeholder records 0)
                room = size - (1 + -(-site.mpb_size // ss)) * ss // 512
                if size and start + length > room:
                    raise site.error(
                        f"slot {slot}'s extent ({start}+{length} sectors) runs past the data area of disk"
                        f" {rec.serial_text!r} ({size} sectors, {room} before the metadata)",
                        mw,
                        "blocks_per_member_lo",
                        mo + MAP_F["blocks_per_member_lo"],
                    )
        if dev.map1 is not None and dev.vol.migr_type != S.MIGR_GEN_MIGR:
            # mdadm's migrate() copies map 0 to map 1 and changes only its state: outside a reshape
            # (general migration) both maps have one geometry
            m1, mo = dev.map1, lay.maps[i][0]
            for name in ("raid_level", "num_members", "blocks_per_strip"):
                if getattr(m0, name) != getattr(m1, name):
                    raise site.error(
                        f"{name} {getattr(m0, name)} differs from map 1's {getattr(m1, name)} outside a reshape",
                        f"dev[{i}].map[0]",
                        name,
                        mo + MAP_F[name],
                    )
        comp = component_size(dev, hi, ss)  # what md is given as component_size
        extent = min(m.blocks_per_member(hi) for m in dev.maps)
        data = dev.map_x.data_members
        # mdadm derives the component from the array size when the stripes disagree with it, so the
        # size is bounded by the members' extents, not by the component derived from it
        if dev.size_sectors == 0:
            raise site.error("a volume of 0 sectors", f"dev[{i}]", "size_low", lay.devs[i] + DEV_F["size_low"])
        if data and dev.size_sectors > data * extent:
            raise site.error(
                f"array size {dev.size_sectors} sectors exceeds its {data} data members' extents of {extent} sectors",
                f"dev[{i}]",
                "size_low",
                lay.devs[i] + DEV_F["size_low"],
            )
        if dev.map1 is not None and dev.vol.migr_type != S.MIGR_GEN_MIGR:
            bpu = blocks_per_migr_unit(dev)
            done = dev.vol.curr_migr_unit * bpu
            if bpu and done > comp:
                raise site.error(
                    f"checkpoint of {dev.vol.curr_migr_unit} units ({done} sectors) is past the member's end"
                    f" ({comp} sectors): a resumed rebuild would skip the rest",
                    f"dev[{i}].vol",
                    "curr_migr_unit_lo",
                    lay.vols[i] + VOL_F["curr_migr_unit_lo"],
                )
