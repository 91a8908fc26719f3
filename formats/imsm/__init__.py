"""Intel Matrix Storage Manager (IMSM) metadata, as mdadm 4.2 reads and writes it.

``structs`` declares the bytes, ``codec`` walks and builds them, ``load`` reads
a disk, ``model``/``geometry``/``examine`` interpret, ``container`` and
``apply`` change and write, ``create`` builds new containers.

``updates`` (with ``update_structs``) applies the messages mdadm 4.2 sends a
running mdmon instead of writing itself (``MdadmUpdate``), with mdmon's rules:
``update_create_array`` (a second volume; first come wins), ``update_kill_array``,
``update_rename_array``, ``update_size_change``, ``update_rwh_policy``, and, as
no-ops here, ``update_add_remove_disk`` (the daemon's manager reports container
disks as ``AddSpare``/``RemoveDisk``) and ``update_prealloc_badblocks_mem``.
The reshape family (``update_reshape_container_disks``, ``update_reshape_migration``,
``update_takeover``, ``update_general_migration_checkpoint``) and
``update_activate_spare`` are refused.  Kill and rename are refused while the
volumes they touch are active: the caller says which are, through
``IMSMContainer.active_volumes``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..base import DiskMetadata, FormatHandler
from ..blockio import Disk
from ..errors import MetadataError
from .codec import FORMAT
from .container import IMSMContainer, Spare
from .disk import IMSMDiskCopy
from .load import probe
from .structs import FAILED_DISK


class IMSMHandler(FormatHandler):
    name = FORMAT

    def probe(self, disk: Disk) -> bool:
        return probe(disk)

    def load(self, disk: Disk) -> IMSMDiskCopy:
        return IMSMDiskCopy.read(disk)

    def assemble(self, copies: Sequence[DiskMetadata]) -> IMSMContainer:
        """Merge copies as mdadm does (formats.md §1.12 "Family and generation").

        Populated copies must share one container identity (orig_family_num, or
        family_num where that is 0); the newest generation wins and FAILED is
        OR-merged from every copy.  Spare records join as spares.  A copy whose
        disk is not in the winner's table (a stale member that was replaced) is
        left out, as mdadm leaves it out.
        """
        imsm: list[IMSMDiskCopy] = []
        for c in copies:
            if not isinstance(c, IMSMDiskCopy):
                raise MetadataError(f"not an IMSM copy ({c.format})", format=FORMAT, disk=c.disk.name)
            imsm.append(c)
        if not imsm:
            raise MetadataError("no disks to assemble", format=FORMAT)
        if len({c.sector_size for c in imsm}) > 1:
            raise MetadataError("disks with different logical sector sizes", format=FORMAT)
        populated = [c for c in imsm if c.mpb.num_raid_devs > 0]
        spare_copies = [c for c in imsm if c.mpb.num_raid_devs == 0]
        if populated:
            ids = {c.mpb.uuid_family for c in populated}
            if len(ids) > 1:
                first = populated[0]
                other = next(c for c in populated if c.mpb.uuid_family != first.mpb.uuid_family)
                raise MetadataError(
                    f"belongs to another container (family {other.mpb.uuid_family:08x}, "
                    f"not {first.mpb.uuid_family:08x})",
                    format=FORMAT,
                    structure="mpb",
                    field="orig_family_num" if other.mpb.orig_family_num else "family_num",
                    disk=other.disk.name,
                    offset=other.raw.anchor_offset + (0x40 if other.mpb.orig_family_num else 0x28),
                )
            winner = max(populated, key=lambda c: c.mpb.generation_num)
        else:
            winner = spare_copies[0]
        table = {d.serial: i for i, d in enumerate(winner.mpb.disks)}
        members = {}
        for c in imsm if populated else [winner]:
            if c.own is None:
                continue
            i = table.get(c.mpb.disks[c.own].serial)
            if i is not None and (c is winner or c.mpb.num_raid_devs > 0):
                members[i] = c.disk
        merged = IMSMContainer.from_copies(winner, members, [])
        for c in populated:
            for d in c.mpb.disks:
                i = table.get(d.serial)
                if i is not None and d.is_failed:
                    merged.mpb.disks[i].status |= FAILED_DISK
        if populated:
            for c in spare_copies:
                rec = c.mpb.disks[0]
                if rec.serial not in table:
                    merged.spares.append(Spare(rec, c.disk, c.mpb.family_num))
        else:
            for c in spare_copies[1:]:
                merged.spares.append(Spare(c.mpb.disks[0], c.disk, c.mpb.family_num))
        return merged


HANDLER = IMSMHandler()

__all__ = ["HANDLER", "IMSMHandler"]
