"""Errors raised by the format layer.

Every error names what was wrong and where: the format, the on-disk structure,
the field, the disk and the byte offset on that disk.  The daemon and the CLI
print them as they are; a storage administrator should never need a traceback
to find the bad sector.
"""

from __future__ import annotations


class MetadataError(Exception):
    """Metadata that cannot be trusted: unreadable, inconsistent or corrupt."""

    def __init__(
        self,
        message: str,
        *,
        format: str,
        structure: str | None = None,
        field: str | None = None,
        disk: str | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.format = format
        self.structure = structure
        self.field = field
        self.disk = disk
        self.offset = offset

    def where(self) -> str:
        """The location part of the message: ``disk /dev/sda, MPB.check_sum at byte 0x...``."""
        parts: list[str] = []
        if self.disk is not None:
            parts.append(f"disk {self.disk}")
        what = ".".join(p for p in (self.structure, self.field) if p)
        if what and self.offset is not None:
            parts.append(f"{what} at byte {self.offset:#x}")
        elif what:
            parts.append(what)
        elif self.offset is not None:
            parts.append(f"at byte {self.offset:#x}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.format}: {where}: {self.message}" if where else f"{self.format}: {self.message}"


class NoMetadata(MetadataError):
    """The disk carries no metadata of this format (not an error in itself)."""


class ChangeRejected(Exception):
    """A requested change would produce metadata that fails validation.

    Nothing has been written when this is raised: changes are applied to a copy
    and validated before any byte is built.
    """


class DiskIOError(Exception):
    """Reading or writing a disk failed; names the disk, the offset and the cause."""

    def __init__(self, message: str, *, disk: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.disk = disk
        self.offset = offset

    def __str__(self) -> str:
        at = f" at byte {self.offset:#x}" if self.offset is not None else ""
        return f"disk {self.disk}{at}: {self.message}"
