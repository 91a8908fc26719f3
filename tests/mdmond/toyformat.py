"""A deliberately tiny format for testing the daemon's own logic.

One sector at the end of each disk: magic, generation, and a dirty byte per
volume.  It implements the real seam (``formats.base``) so the daemon code
under test is exactly what runs with IMSM and DDF; format fidelity itself is
tested against mdadm in ``tests/formats``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from formats.base import ContainerMetadata, Write
from formats.blockio import Disk, MemoryDisk
from formats.changes import Change, Environment, SetDirty
from formats.errors import ChangeRejected, DiskIOError, MetadataError
from formats.model import Container, DiskState, Member, MemberState, Volume, VolumeState
from formats.model import Disk as ModelDisk

MAGIC = b"TOYMETA1"


class FlakyDisk(MemoryDisk):
    """A memory disk whose ``fail_after``-th write (and every one after) fails."""

    def __init__(self, size: int, name: str) -> None:
        super().__init__(bytes(size), name=name)
        self.fail_after: int | None = None
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        return super().read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        if self.fail_after is not None:
            if self.fail_after <= 0:
                raise DiskIOError("injected write failure", disk=self.name, offset=offset)
            self.fail_after -= 1
        super().write(offset, data)


class ToyMetadata(ContainerMetadata):
    format = "toy"

    def __init__(self, disks: Mapping[str, Disk], volumes: int = 1) -> None:
        self._disks = dict(disks)
        self.generation = 0
        self.dirty = [False] * volumes

    def model(self) -> Container:
        refs = sorted(self._disks)
        return Container(
            format="toy",
            uuid="0",
            identity="toy",
            generation=self.generation,
            sector_size=512,
            disks=tuple(ModelDisk(r, r, 0, DiskState.ACTIVE, r) for r in refs),
            volumes=tuple(
                Volume(
                    i,
                    f"v{i}",
                    str(i),
                    1,
                    0,
                    len(refs),
                    0,
                    0,
                    0,
                    tuple(Member(s, r, MemberState.IN_SYNC) for s, r in enumerate(refs)),
                    VolumeState.NORMAL,
                    d,
                )
                for i, d in enumerate(self.dirty)
            ),
        )

    def validate(self) -> None:
        if len(self.dirty) > 255:
            raise MetadataError("too many volumes", format="toy")

    def apply(self, changes: Sequence[Change], env: Environment | None = None) -> ToyMetadata:
        new = copy.copy(self)
        new.dirty = list(self.dirty)
        for c in changes:
            if not isinstance(c, SetDirty) or not 0 <= c.volume < len(new.dirty):
                raise ChangeRejected(f"toy format cannot apply {c!r}")
            new.dirty[c.volume] = c.dirty
        new.generation = self.generation + 1
        new.validate()
        return new

    def encode(self) -> dict[str, list[Write]]:
        body = MAGIC + self.generation.to_bytes(4, "little") + bytes(self.dirty)
        return {ref: [Write(d.size_bytes - 512, body.ljust(512, b"\0"))] for ref, d in self._disks.items()}

    def disks(self) -> Mapping[str, Disk]:
        return self._disks

    def attach(self, ref: str, disk: Disk) -> None:
        if ref not in self._disks:
            raise ChangeRejected(f"toy format has no disk {ref!r}")
        self._disks[ref] = disk


def read_back(disk: Disk) -> tuple[int, list[int]] | None:
    """What the toy sector on a disk says: (generation, dirty bytes), or None if absent."""
    raw = disk.read(disk.size_bytes - 512, 512)
    if not raw.startswith(MAGIC):
        return None
    return int.from_bytes(raw[8:12], "little"), list(raw[12:13])
