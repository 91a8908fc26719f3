"""A container's merged DDF metadata (``ContainerMetadata``): merge, model, validate, apply, encode.

DDF splits its metadata in two (mdadm's ``struct ddf_super``): global sections
(header, controller data, PD and VD tables) that every disk carries the same
copy of, and local ones (config records, the disk's own identity) that differ
per disk.  We hold the global ones once, every VD config record once (keyed by
VD GUID and BVD number, the highest ``seqnum`` winning), and per disk which VD
each of its config slots holds.

One thing is held in memory only: a rebuild onto a disk that already holds
another VD (``pending``).  DDF records "Rebuilding" per physical disk, so such
a rebuild cannot be written down while it runs; it is recorded when md has
finished it (mdmon's ddf_set_disk also inserts a disk into a VD only once it
is in sync).  A crash before that leaves the VD degraded on disk, and it is
rebuilt again: nothing half-copied is ever trusted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from construct import Container as CContainer

from ..base import ContainerMetadata, Write
from ..blockio import Disk
from ..changes import Change, Environment
from ..errors import MetadataError
from ..model import Container
from . import model as M
from . import structs as S
from .codec import FORMAT, SPARE_ASSIGN, Sections, Slot, Table
from .disk import DDFDiskCopy, disk_writes
from .image import config_bytes, global_bytes, header_copies
from .load import effective_mppe


@dataclass
class Member:
    """One disk of the container: its local sections and where its bytes go."""

    refnum: int
    disk_data: Any
    vlist: list[bytes]  # the VD GUID in each of its config slots, in slot order (mdadm's dl->vlist)
    spare: bytes | None  # its spare-assignment record, kept verbatim (mdadm never creates one)
    disk: Disk | None  # None: known only by ref until ``attach``
    sectors: int  # disk size in 512-byte units
    primary_lba: int
    secondary_lba: int
    workspace_lba: int
    templates: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # extents as read
    serial: str | None = None  # the drive serial it was added under (``AddSpare``), for ``attach``
    # sectors == 0: added by an mdadm PHYS_RECORDS message, laid out at ``attach`` like the disk that
    # headed the list then: its (sectors, primary_lba, secondary_lba, workspace_lba), or None
    like: tuple[int, int, int, int] | None = None

    def copy(self) -> Member:
        return Member(
            self.refnum,
            CContainer(self.disk_data),
            list(self.vlist),
            self.spare,
            self.disk,
            self.sectors,
            self.primary_lba,
            self.secondary_lba,
            self.workspace_lba,
            self.templates,
            self.serial,
            self.like,
        )


@dataclass(frozen=True)
class Pending:
    """A rebuild of one VD slot onto a disk that holds another VD: recorded only once finished."""

    refnum: int
    lba: int
    done: bool = False  # md has it in sync; recorded with the disk's own rebuild, if one runs


def _err(msg: str, structure: str, field: str | None = None, disk: str | None = None) -> MetadataError:
    return MetadataError(msg, format=FORMAT, structure=structure, field=field, disk=disk)


def clone_config(c: Any) -> Any:
    out = CContainer(c)
    out.phys_refnum = list(c.phys_refnum)
    out.lba_offset = list(c.lba_offset)
    out.spare_refs = list(c.spare_refs)
    return out


class DDFContainer(ContainerMetadata):
    format = FORMAT

    def __init__(
        self,
        header: Any,
        controller: Any,
        phys: Table,
        virt: Table,
        configs: dict[tuple[bytes, int], Any],
        members: list[Member],
        sector_size: int,
        problems: list[str] | None = None,
        pending: dict[tuple[bytes, int], Pending] | None = None,
    ) -> None:
        self.header = header  # the active header of the newest copy; seq/timestamp are the container's
        self.controller = controller
        self.phys = phys
        self.virt = virt
        self.configs = configs  # (VD GUID, sec_elmnt_seq) -> vd_config
        self.members = members  # in mdadm's disk-list order
        self.sector_size = sector_size
        self.problems = problems or []
        #: (VD GUID, md slot) -> a rebuild onto a disk holding another VD, not recorded until done
        self.pending: dict[tuple[bytes, int], Pending] = pending or {}
        #: The VD config records the last ``apply`` rewrote (their keys): ``encode`` writes
        #: the disks holding them first.  A copy starts with none.
        self.changed_configs: set[tuple[bytes, int]] = set()

    # -- building -----------------------------------------------------------------------
    @classmethod
    def from_copies(cls, copies: Sequence[DDFDiskCopy]) -> DDFContainer:
        """load_super_ddf_all: globals from the copy with the highest seq (an open copy counts one less)."""
        if not copies:
            raise _err("no disks to assemble", "header")
        guid = copies[0].raw.anchor.guid
        for c in copies:
            if c.raw.anchor.guid != guid:
                raise MetadataError(
                    "belongs to another container (header GUID differs)",
                    format=FORMAT,
                    structure="anchor",
                    field="guid",
                    disk=c.disk.name,
                    offset=c.disk.size_bytes - S.SECTOR + 8,
                )
        if len({c.sector_size for c in copies}) > 1:
            raise _err("disks with different logical sector sizes", "header")
        winner = max(copies, key=lambda c: int(c.header.seq) - (1 if c.header.openflag else 0))
        ws = winner.sections
        header = CContainer(winner.header)
        configs: dict[tuple[bytes, int], Any] = {}
        for c in [winner] + [c for c in copies if c is not winner]:
            for slot in c.sections.slots:
                conf = slot.config
                if conf is None:
                    continue
                key = (bytes(conf.guid), int(conf.sec_elmnt_seq))
                if key not in configs or conf.seqnum > configs[key].seqnum:
                    configs[key] = clone_config(conf)
        # a disk recorded Missing was removed from the container: its stale copy takes no part
        by_guid = {
            bytes(e.guid): int(e.refnum) for e in ws.phys.entries if e is not None and not e.state & S.PD_MISSING
        }
        members: list[Member] = []
        seen: set[int] = set()
        for c in copies:
            ref = by_guid.get(bytes(c.sections.disk_data.guid))
            if ref is None or ref != c.refnum:
                continue  # not (or no longer) in the newest PD table
            if ref in seen:
                raise _err(f"two disks carry refnum {ref:08x}", "disk_data", "refnum", c.disk.name)
            seen.add(ref)
            h = c.header
            spare = next((s.raw for s in c.sections.slots if s.magic == S.SPARE_ASSIGN_MAGIC), None)
            members.append(
                Member(
                    ref,
                    CContainer(c.sections.disk_data),
                    [bytes(s.config.guid) for s in c.sections.slots if s.config is not None],
                    spare,
                    c.disk,
                    c.raw.sectors,
                    int(h.primary_lba),
                    int(h.secondary_lba),
                    int(h.workspace_lba),
                    c.raw.extents,
                )
            )
        problems = [f"{c.disk.name}: {p}" for c in copies for p in c.raw.problems]
        return cls(
            header, ws.controller, ws.phys.copy(), ws.virt.copy(), configs, members, winner.sector_size, problems
        )

    def copy(self) -> DDFContainer:
        return DDFContainer(
            CContainer(self.header),
            CContainer(self.controller),
            self.phys.copy(),
            self.virt.copy(),
            {k: clone_config(v) for k, v in self.configs.items()},
            [m.copy() for m in self.members],
            self.sector_size,
            list(self.problems),
            dict(self.pending),
        )

    # -- lookups --------------------------------------------------------------------------
    @property
    def mppe(self) -> int:
        return effective_mppe(self.header)

    def pd_index(self, refnum: int) -> int | None:
        for i, e in enumerate(self.phys.entries):
            if e is not None and e.refnum == refnum:
                return i
        return None

    def pd(self, refnum: int) -> Any | None:
        i = self.pd_index(refnum)
        return None if i is None else self.phys.entries[i]

    def vd_guid(self, index: int) -> bytes:
        """The GUID of VD entry ``index`` (KeyError if the entry is unused)."""
        e = self.virt.entries[index] if 0 <= index < len(self.virt.entries) else None
        if e is None or e.guid == b"\xff" * S.GUID_LEN:
            raise KeyError(index)
        return bytes(e.guid)

    def bvds(self, guid: bytes) -> list[Any]:
        return sorted((c for (g, _), c in self.configs.items() if g == guid), key=lambda c: int(c.sec_elmnt_seq))

    def member(self, refnum: int) -> Member | None:
        return next((m for m in self.members if m.refnum == refnum), None)

    def present(self, m: Member) -> bool:
        pd = self.pd(m.refnum)
        return m.disk is not None and pd is not None and not pd.state & S.PD_MISSING

    def spare_assignments(self) -> dict[str, dict[str, Any]]:
        """Each disk's spare assignment record: dedicated or not, and the volumes it names."""
        index = {bytes(e.guid): i for i, e in enumerate(self.virt.entries) if e is not None}
        out: dict[str, dict[str, Any]] = {}
        for m in self.members:
            if m.spare is None:
                continue
            head = SPARE_ASSIGN.parse(m.spare[: S.SPARE_ASSIGN_HEADER_SIZE])
            guids = [
                m.spare[S.SPARE_ASSIGN_HEADER_SIZE + k * S.SPARE_ENTRY_SIZE :][: S.GUID_LEN]
                for k in range(head.populated)
            ]
            out[M.ref_text(m.refnum)] = {
                "dedicated": bool(head.type & 0x01),
                "volumes": [index[g] for g in guids if g in index],
            }
        return out

    # -- ContainerMetadata -------------------------------------------------------------
    def model(self) -> Container:
        paths = {m.refnum: m.disk.name for m in self.members if m.disk is not None and self.present(m)}
        extra: dict[str, Any] = {"controller_guid": bytes(self.controller.guid).hex()}
        spares = self.spare_assignments()
        if spares:
            extra["spare_assignments"] = spares
        if self.problems:
            extra["problems"] = list(self.problems)
        return M.container(
            self.header,
            self.controller,
            self.phys.entries,
            self.virt.entries,
            self.bvds,
            paths,
            self.sector_size,
            extra,
            {k: (p.refnum, p.lba, p.done) for k, p in self.pending.items()},
        )

    def validate(self) -> None:
        from .validate import validate

        validate(self)

    def apply(self, changes: Sequence[Change], env: Environment | None = None) -> DDFContainer:
        from .apply import apply_changes

        new = self.copy()
        apply_changes(new, changes, env or Environment())
        new.validate()
        return new

    def encode(self) -> dict[str, list[Write]]:
        """Every present disk's bytes, each list in the crash-safe order documented in ``image.py``.

        Disks are written in mdadm's disk-list order, except that when VD
        config records changed, the disks holding the most of them go first
        (a stable sort, so mdadm's order otherwise).  mdadm's loader takes the
        global sections (the PD table above all) from the disk with the newest
        header and each config record from wherever its seqnum is highest: if
        the first disk to carry the new header held none of the new records
        (a spare no VD uses, the failed disk that just left the VD), a crash
        right after it would pair the new PD table with the old records.  The
        order is no part of the bytes; mdadm reads them the same.  A disk
        recorded Missing (removed from the container) is not written, as
        mdadm drops it.
        """
        self.validate()
        out: dict[str, list[Write]] = {}
        shared = global_bytes(self.controller, self.phys, self.virt)
        members = [m for m in self.members if m.disk is not None and self.present(m)]
        if self.changed_configs:
            members.sort(key=lambda m: -len(self.changed_configs & self._held(m)))
        for m in members:
            out[M.ref_text(m.refnum)] = self.disk_writes(m, shared)
        return out

    def _held(self, m: Member) -> set[tuple[bytes, int]]:
        """The config records the disk's slots carry (the BVDs of its VDs that have it)."""
        return {(guid, int(c.sec_elmnt_seq)) for guid in m.vlist for c in self.bvds(guid) if m.refnum in c.phys_refnum}

    def disk_writes(self, m: Member, shared: dict[str, bytes] | None = None) -> list[Write]:
        h = CContainer(self.header)
        h.primary_lba, h.secondary_lba, h.workspace_lba = m.primary_lba, m.secondary_lba, m.workspace_lba
        sections = Sections(self.controller, self.phys, self.virt, [], m.disk_data)
        return disk_writes(
            m.sectors * S.SECTOR,
            self.sector_size,
            header_copies(h),
            sections,
            self.slots_for(m),
            m.templates,
            shared or global_bytes(self.controller, self.phys, self.virt),
        )

    def slots_for(self, m: Member) -> list[bytes]:
        """__write_ddf_structure: slot i holds vlist[i]'s BVD that has this disk; the last slot the spare record."""
        crl_bytes = int(self.header.config_record_len) * S.SECTOR
        mppe = self.mppe
        empty = b"\xff" * crl_bytes
        out: list[bytes] = []
        for guid in m.vlist:
            conf = next((c for c in self.bvds(guid) if m.refnum in c.phys_refnum), None)
            out.append(empty if conf is None else config_bytes(Slot(b""), conf, crl_bytes, mppe))
        n = int(self.header.max_partitions)
        out = out[:n] + [empty] * (n - len(out))
        out.append(m.spare if m.spare is not None else empty)
        return out

    def disks(self) -> Mapping[str, Disk]:
        return {M.ref_text(m.refnum): m.disk for m in self.members if m.disk is not None and self.present(m)}

    def attach(self, ref: str, disk: Disk) -> None:
        """Say where a disk lives: a new spare or a member of a new container.

        ``ref`` is its refnum (8 hex digits) or the serial it was added or created under.
        """
        for m in self.members:
            if ref in (M.ref_text(m.refnum), m.serial):
                if disk.sector_size != self.sector_size:
                    raise ValueError(
                        f"{disk.name}: {disk.sector_size}-byte sectors in a {self.sector_size}-byte container"
                    )
                size = disk.size_bytes // S.SECTOR
                if m.sectors == 0:
                    self._lay_out(m, size, disk.name)
                if size != m.sectors:
                    raise ValueError(f"{disk.name}: {size} sectors, but {ref} was laid out for {m.sectors}")
                m.disk = disk
                return
        raise KeyError(ref)

    def _lay_out(self, m: Member, size: int, name: str) -> None:
        """add_to_super_ddf's LBAs for a disk whose PD entry came in a message; its config_size must agree."""
        from .apply import MIN_DISK_SECTORS, new_lbas, set_config_size

        pd = self.pd(m.refnum)
        if pd is None or size <= MIN_DISK_SECTORS:
            raise ValueError(f"{name}: {size} sectors cannot hold PD {M.ref_text(m.refnum)}")
        like = None if m.like is None else Member(0, None, [], None, None, *m.like)
        lbas = new_lbas(size, like)
        if set_config_size(size, *lbas) != pd.config_size:
            raise ValueError(
                f"{name}: {size} sectors give a configured size of {set_config_size(size, *lbas)},"
                f" but PD {M.ref_text(m.refnum)} records {pd.config_size}"
            )
        m.sectors = size
        m.primary_lba, m.secondary_lba, m.workspace_lba = lbas
