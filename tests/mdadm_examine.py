"""Read ``mdadm --examine`` text (IMSM and DDF) into plain dictionaries.

The real mdadm is the reference for every format test: golden images carry the
``--examine`` output mdadm printed for them, and the VM tests capture it at
each step.  This module turns that text into structures a test can compare
with ``mdmond examine --json``; it interprets nothing beyond the layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_KV = re.compile(r"^\s*([^:\[]+?)(?:\[(\d+)\])?\s+:\s?(.*)$")
_IMSM_DISK = re.compile(r"^\s*Disk(\d+) Serial\s+:\s?(.*)$")
_PD_ROW = re.compile(r"^\s+(\d+)\s+([0-9a-f]{8})\s+(\d+)K\s+(/dev/\S+)?\s*(\S.*)$")


@dataclass
class Examine:
    device: str
    fields: dict[str, str] = field(default_factory=dict)
    # IMSM: disk-table entries ("DiskNN Serial" blocks) and the "Disk Serial" block of a spare record
    disks: list[dict[str, str]] = field(default_factory=list)
    # IMSM: "[name]:" sections; DDF: the "key[i]" groups, in index order
    volumes: list[dict[str, str]] = field(default_factory=list)
    # DDF: the "Physical Disks" table
    pds: list[dict[str, str]] = field(default_factory=list)

    @property
    def format(self) -> str:
        return "ddf" if self.fields.get("Magic") == "de11de11" else "imsm"


def parse(text: str) -> Examine:
    lines = text.splitlines()
    if not lines or not lines[0].endswith(":"):
        raise ValueError("not mdadm --examine output: no '<device>:' first line")
    ex = Examine(device=lines[0][:-1])
    current: dict[str, str] = ex.fields
    last_key: str | None = None
    ddf_vds: dict[int, dict[str, str]] = {}
    in_pd_table = False
    for line in lines[1:]:
        if not line.strip():
            continue
        if in_pd_table:
            m = _PD_ROW.match(line)
            if m:
                ex.pds.append(
                    {
                        "number": m.group(1),
                        "refno": m.group(2),
                        "size_k": m.group(3),
                        "device": m.group(4) or "",
                        "type_state": m.group(5).strip(),
                    }
                )
            continue
        m = re.match(r"^\[(.+)\]:$", line.strip())
        if m:
            current = {"name": m.group(1)}
            ex.volumes.append(current)
            continue
        m = _IMSM_DISK.match(line)
        if m:
            current = {"index": m.group(1), "Serial": m.group(2)}
            ex.disks.append(current)
            continue
        if line.strip().startswith("Disk Serial"):
            current = {"index": "self", "Serial": line.split(":", 1)[1].strip()}
            ex.disks.append(current)
            continue
        if line.strip().startswith("Number") and "RefNo" in line:
            in_pd_table = True
            continue
        if line.startswith(" " * 18) and line.strip().startswith("(") and last_key:
            # DDF's decoded GUID line under "Controller GUID" / "VD GUID[i]"
            target = current
            target[last_key + " text"] = line.strip()[1:-1]
            continue
        m = _KV.match(line)
        if not m:
            raise ValueError(f"unrecognised --examine line: {line!r}")
        key, idx, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if idx is not None:
            current = ddf_vds.setdefault(int(idx), {"index": idx})
        elif key == "Physical Disks":
            current = ex.fields
        current[key] = value
        last_key = key
    ex.volumes.extend(ddf_vds[i] for i in sorted(ddf_vds))
    return ex


def split_arrow(value: str) -> tuple[str, str | None]:
    """IMSM prints ``new <-- old`` while migrating: return (map0 value, map1 value or None)."""
    if "<--" in value:
        a, b = value.split("<--", 1)
        return a.strip(), b.strip()
    return value.strip(), None
