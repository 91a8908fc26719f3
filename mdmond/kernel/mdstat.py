"""``/proc/mdstat``: which arrays exist, what they are made of, whose member each is.

The manager reads it to find a container's member arrays (mdmon.md §3.2):
one entry per ``mdN :`` line with its continuation lines; ``super
external:/md127/0`` marks subarray 0 of container ``md127`` (``-`` instead of
the first ``/`` marks it blocked by mdadm), ``super external:imsm`` a
container.  Parsing is total: a line it does not understand is skipped, never
an exception, since the kernel's wording may grow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEAD = re.compile(r"^(md\w+)\s*:\s*(.*)$")
_DEV = re.compile(r"^(\w[\w.-]*)\[(\d+)\]((?:\([A-Z]\))*)$")
_DISKS = re.compile(r"\[(\d+)/(\d+)\]")
_PROGRESS = re.compile(r"(resync|recovery|reshape|check|repair)\s*=\s*[\d.]+%\s*\((\d+)/(\d+)\)")
_WAITING = re.compile(r"(resync|recovery|reshape|check|repair)\s*=\s*(DELAYED|PENDING|REMOTE)")


@dataclass(frozen=True)
class MdstatDevice:
    name: str  # "sda"
    index: int  # the number in brackets: md's descriptor number, not the slot
    spare: bool = False  # (S)
    faulty: bool = False  # (F)


@dataclass(frozen=True)
class MdstatEntry:
    name: str  # "md126"
    active: bool
    readonly: bool = False  # "(read-only)" or "(auto-read-only)"
    level: str | None = None  # "raid5"; None for a container
    devices: tuple[MdstatDevice, ...] = ()
    metadata: str | None = None  # "external:/md127/0", "external:imsm"
    raid_disks: int | None = None
    working_disks: int | None = None
    sync: str | None = None  # "recovery", "resync", ... while a pass runs or waits
    sync_done_kib: int | None = None
    sync_total_kib: int | None = None

    @property
    def external(self) -> bool:
        return self.metadata is not None and self.metadata.startswith("external:")

    @property
    def is_subarray(self) -> bool:
        return self.external and self.metadata is not None and self.metadata[9:10] in ("/", "-")

    @property
    def blocked(self) -> bool:
        """mdadm has asked the monitor to leave it alone (``external:-``)."""
        return self.is_subarray and self.metadata is not None and self.metadata[9] == "-"

    @property
    def container(self) -> str | None:
        """The container a subarray belongs to: ``md127``."""
        if not self.is_subarray or self.metadata is None:
            return None
        return self.metadata[10:].split("/", 1)[0]

    @property
    def subarray(self) -> str | None:
        """The subarray's name within its container: ``0``."""
        if not self.is_subarray or self.metadata is None:
            return None
        parts = self.metadata[10:].split("/", 1)
        return parts[1] if len(parts) == 2 else None

    @property
    def container_format(self) -> str | None:
        """``imsm`` / ``ddf`` for a container."""
        if self.external and not self.is_subarray and self.metadata is not None:
            return self.metadata[9:]
        return None


def parse_mdstat(text: str) -> list[MdstatEntry]:
    """Every array in ``/proc/mdstat``, in the kernel's order."""
    entries: list[MdstatEntry] = []
    block: list[str] = []
    for line in text.splitlines():
        if _HEAD.match(line):
            if block:
                entries.extend(_entry(block))
            block = [line]
        elif block and line.startswith((" ", "\t")) and line.strip():
            block.append(line.strip())
        elif block:
            entries.extend(_entry(block))
            block = []
    if block:
        entries.extend(_entry(block))
    return entries


def _entry(lines: list[str]) -> list[MdstatEntry]:
    m = _HEAD.match(lines[0])
    if m is None:
        return []
    name, rest = m.groups()
    words = rest.split()
    if not words or words[0] not in ("active", "inactive"):
        return []
    active = words[0] == "active"
    i = 1
    readonly = False
    while i < len(words) and words[i].startswith("("):
        readonly = readonly or "read-only" in words[i]
        i += 1
    level = None
    if active and i < len(words) and not _DEV.match(words[i]):
        level = words[i]
        i += 1
    devices = []
    for w in words[i:]:
        d = _DEV.match(w)
        if d:
            devices.append(MdstatDevice(d.group(1), int(d.group(2)), "(S)" in d.group(3), "(F)" in d.group(3)))
    metadata = raid = working = sync = done = total = None
    for line in lines[1:]:
        if line.startswith("bitmap:"):
            break
        words = line.split()
        if "super" in words and words.index("super") + 1 < len(words):
            metadata = words[words.index("super") + 1]
        if (dm := _DISKS.search(line)) is not None:
            raid, working = int(dm.group(1)), int(dm.group(2))
        if (pm := _PROGRESS.search(line)) is not None:
            sync, done, total = pm.group(1), int(pm.group(2)), int(pm.group(3))
        elif (wm := _WAITING.search(line)) is not None:
            sync = wm.group(1)
    return [MdstatEntry(name, active, readonly, level, tuple(devices), metadata, raid, working, sync, done, total)]
