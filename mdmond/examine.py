"""``mdmond examine``: what the metadata on each disk says, for people and for programs.

The JSON form is a stable interface (event-log consumers and the test bed read
it); the text form is the format's own, laid out as ``mdadm --examine`` prints
it so that an administrator finds what they expect where they expect it.
"""

from __future__ import annotations

from typing import Any

from formats.errors import DiskIOError, MetadataError
from formats.model import Container, Volume

from .usage import Problem, problem_of


def container_json(c: Container, device: str) -> dict[str, Any]:
    return {
        "device": device,
        "format": c.format,
        "uuid": c.uuid,
        "identity": c.identity,
        "generation": c.generation,
        "sector_size": c.sector_size,
        "disks": [
            {
                "ref": d.ref,
                "path": d.path,
                "serial": d.serial,
                "size_sectors": d.size_sectors,
                "state": d.state.value,
            }
            for d in c.disks
        ],
        "volumes": [volume_json(c, v) for v in c.volumes],
    }


def volume_json(c: Container, v: Volume) -> dict[str, Any]:
    return {
        "index": v.index,
        "name": v.name,
        "uuid": v.uuid,
        "level": v.level,
        "layout": v.layout,
        "raid_disks": v.raid_disks,
        "chunk_sectors": v.chunk_sectors,
        "size_sectors": v.size_sectors,
        "component_sectors": v.component_sectors,
        "consistency_policy": v.consistency_policy.value,
        "members": [
            {
                "slot": m.slot,
                "ref": m.disk_ref,
                "serial": c.serial_of(m.disk_ref),
                "state": m.state.value,
                "offset_sectors": m.offset_sectors,
                "ppl": None
                if (a := v.ppl(m.offset_sectors)) is None
                else {"sector": a.sector, "size_sectors": a.size_sectors},
            }
            for m in v.members
        ],
        "state": v.state.value,
        "dirty": v.dirty,
        "migration": (
            None
            if v.migration is None
            else {"type": v.migration.type.value, "checkpoint_sectors": v.migration.checkpoint_sectors}
        ),
    }


def error_json(device: str, err: MetadataError | DiskIOError) -> dict[str, Any]:
    """``{"device", "error"}``: the one error shape (kind, message, what, where) and the format's detail."""
    if isinstance(err, MetadataError):
        detail: dict[str, Any] = {
            "kind": "no-metadata" if type(err).__name__ == "NoMetadata" else "bad-metadata",
            "format": err.format,
            "structure": err.structure,
            "field": err.field,
            "disk": err.disk,
            "offset": err.offset,
            "message": err.message,
        }
    else:
        detail = {"kind": "io", "disk": err.disk, "offset": err.offset, "message": err.message}
    # The format's own fields keep their meaning; what and where are added.
    return {"device": device, "error": {**problem_of(device, err).json(), **detail}}


def warnings_of(what: str, c: Container, disk: str) -> list[Problem]:
    """Defects the format read past on ``disk`` (a DDF header copy unusable), as mdadm --examine warns of them.

    ``c`` is the model of that one disk's copy; ``what`` names the disk as the command line did.
    """
    prefix = f"{disk}: "
    return [Problem(p.removeprefix(prefix), what=what, kind="damaged") for p in c.extra.get("problems", [])]
