"""SNIA DDF metadata, as mdadm 4.2 reads and writes it (formats.md Part 2).

``structs`` declares the bytes, ``codec`` parses and builds sections, ``load``
reads a disk, ``image`` lays out and orders the writes, ``disk`` is one disk's
copy, ``geometry``/``model``/``examine`` interpret, ``container``, ``validate``
and ``apply`` merge, check and change, ``create`` builds new containers.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..base import DiskMetadata, FormatHandler
from ..blockio import Disk
from ..errors import MetadataError
from .codec import FORMAT
from .container import DDFContainer
from .create import DiskSpec, VolumeSpec, create
from .disk import DDFDiskCopy
from .load import probe


class DDFHandler(FormatHandler):
    name = FORMAT

    def probe(self, disk: Disk) -> bool:
        return probe(disk)

    def load(self, disk: Disk) -> DDFDiskCopy:
        return DDFDiskCopy.read(disk)

    def assemble(self, copies: Sequence[DiskMetadata]) -> DDFContainer:
        """Merge copies as mdadm's ``load_super_ddf_all`` does.

        Copies must share the header GUID; the global sections come from the
        copy with the highest sequence number (an open copy counts one less),
        every VD config record from wherever its highest ``seqnum`` is, and
        each disk keeps its own config slots.  A copy whose disk is not in the
        newest PD table (replaced, or stale) is left out.
        """
        ddf: list[DDFDiskCopy] = []
        for c in copies:
            if not isinstance(c, DDFDiskCopy):
                raise MetadataError(f"not a DDF copy ({c.format})", format=FORMAT, disk=c.disk.name)
            ddf.append(c)
        return DDFContainer.from_copies(ddf)


HANDLER = DDFHandler()

__all__ = ["HANDLER", "DDFContainer", "DDFHandler", "DiskSpec", "VolumeSpec", "create"]
