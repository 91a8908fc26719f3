"""The seam between the daemon and a metadata format.

Modelled on mdadm's per-format function table, without its global state: a
``FormatHandler`` turns one disk's bytes into a ``DiskMetadata`` copy, merges
the copies of a container's disks into a ``ContainerMetadata``, and that object
answers everything else: the neutral model, changes (applied to a copy and
validated), and the exact bytes to write to each disk.

Everything here is pure: no I/O happens except through a ``Disk`` passed in,
so the daemon decides when and where (and on which thread) bytes move.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .blockio import Disk
from .changes import Change, Environment
from .model import Container


@dataclass(frozen=True)
class Write:
    """Bytes for one run of whole sectors of a disk, at a byte offset."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


class DiskMetadata(ABC):
    """One disk's copy of the metadata, exactly as read from that disk."""

    format: str
    disk: Disk

    @abstractmethod
    def encode(self) -> list[Write]:
        """Rebuild this disk's metadata bytes from the parsed structures.

        For metadata written by mdadm the result equals what was read, byte for
        byte; ``first_difference`` checks that.
        """

    @abstractmethod
    def regions(self) -> list[Write]:
        """The bytes as they were read, in the same extents as ``encode`` returns."""

    @abstractmethod
    def examine(self) -> str:
        """Human-readable report of this disk's copy, laid out as ``mdadm --examine`` prints it."""


class ContainerMetadata(ABC):
    """A container's metadata, merged from its disks' copies, as the monitor holds it."""

    format: str

    @abstractmethod
    def model(self) -> Container:
        """The neutral picture (``formats.model``)."""

    @abstractmethod
    def validate(self) -> None:
        """Raise ``MetadataError`` unless the metadata is fit to be written."""

    @abstractmethod
    def apply(self, changes: Sequence[Change], env: Environment | None = None) -> ContainerMetadata:
        """Return a new, validated metadata with the changes made; ``self`` is untouched.

        Raises ``ChangeRejected`` when a change does not fit (unknown slot, a
        spare too small, ...) and ``MetadataError`` if the result fails
        validation.  The generation or sequence number moves on exactly as
        mdadm moves it for one metadata write.
        """

    @abstractmethod
    def encode(self) -> dict[str, list[Write]]:
        """Every present disk's new bytes, keyed by disk ref, each list in write order."""

    @abstractmethod
    def disks(self) -> Mapping[str, Disk]:
        """The present disks by ref: where ``encode``'s writes go."""

    @abstractmethod
    def attach(self, ref: str, disk: Disk) -> None:
        """Say where a disk known only by ref (just added as a spare, or just created) lives.

        This is the one mutation outside ``apply``: it changes no bytes, only
        where ``encode``'s writes for ``ref`` go.
        """


class FormatHandler(ABC):
    """One metadata format."""

    name: str

    @abstractmethod
    def probe(self, disk: Disk) -> bool:
        """Cheap check: does the disk carry this format's signature?"""

    @abstractmethod
    def load(self, disk: Disk) -> DiskMetadata:
        """Parse and validate the disk's metadata (``NoMetadata`` if there is none)."""

    @abstractmethod
    def assemble(self, copies: Sequence[DiskMetadata]) -> ContainerMetadata:
        """Merge the copies of one container's disks, as mdadm's loader does."""


def first_difference(disk: Disk, writes: Iterable[Write]) -> int | None:
    """Byte offset of the first byte where ``writes`` differ from the disk, or None."""
    for w in sorted(writes, key=lambda w: w.offset):
        have = disk.read(w.offset, len(w.data))
        if have != w.data:
            return w.offset + _mismatch(have, w.data)
    return None


def _mismatch(a: bytes, b: bytes) -> int:
    """Index of the first differing byte of two unequal, equally long strings (halving: slices compare in C)."""
    lo, hi = 0, len(a)
    while hi - lo > 64:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return next(i for i in range(lo, hi) if a[i] != b[i])


def write_all(disk: Disk, writes: Iterable[Write]) -> None:
    """Write in the given order, then flush: the order is the format's crash-safety contract."""
    for w in writes:
        disk.write(w.offset, w.data)
    disk.flush()
