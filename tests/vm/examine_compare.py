"""Does ``mdmond examine --json`` say what ``mdadm --examine`` said about the same disk?

Both read the same bytes: the guest recorded mdadm's text and a copy of each
disk's metadata region at the same moment, and ``mdmond examine`` runs on the
host over that copy.  ``disagreements`` lists every field where they differ, as
readable strings, so a failing test says what differs where.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from typing import Any

from tests.mdadm_examine import Examine, parse, split_arrow

_IMSM_MIGRATION = {"rebuild": "rebuild", "initialize": "init", "verify": "verify", "repair": "repair"}
#: mdadm's "RWH Policy" text -> md's consistency policy (getinfo_super_imsm_volume), for a RAID5.
_IMSM_RWH = {
    "off": "resync",
    "PPL distributed": "ppl",
    "Multiple distributed PPLs": "ppl",
    "PPL journaling drive": "resync",
    "Multiple PPLs on journaling drive": "resync",
    "Write-intent bitmap": "bitmap",
}
_DDF_LEVEL = {"RAID0": 0, "RAID1": 1, "RAID5": 5, "RAID6": 6}


def ddf_available() -> str | None:
    """None when ``formats.ddf`` imports; else why not (it is being written in parallel)."""
    try:
        importlib.import_module("formats.ddf")
    except Exception as e:  # any import-time failure of a module under construction
        return f"formats.ddf cannot be imported yet ({type(e).__name__}: {e})"
    return None


def mdmond_examine(specs: list[str]) -> list[dict[str, Any]]:
    """Run the project's CLI exactly as an administrator would (``python -m mdmond examine --json``)."""
    r = subprocess.run(
        [sys.executable, "-m", "mdmond", "examine", "--json", *specs], capture_output=True, text=True, timeout=120
    )
    if r.returncode not in (0, 1) or not r.stdout.strip():
        raise AssertionError(f"mdmond examine failed (exit {r.returncode}): {r.stderr[-2000:]}")
    data: list[dict[str, Any]] = json.loads(r.stdout)
    return data


def _disk_state_ok(text: str, state: str) -> bool:
    if "Failed" in text or "failed" in text:
        return state in ("failed", "missing")
    if "Missing" in text:
        return state == "missing"
    if text.startswith("active"):
        return state == "active"
    return state == "spare"


def _imsm(ex: Examine, got: dict[str, Any], where: str) -> list[str]:
    bad: list[str] = []

    def eq(what: str, a: object, b: object) -> None:
        if a != b:
            bad.append(f"{where}: {what}: mdadm {a!r} != mdmond {b!r}")

    eq("uuid", ex.fields.get("UUID"), got["uuid"])
    eq("family", ex.fields.get("Family"), got["identity"])
    eq("generation", int(ex.fields["Generation"], 16), got["generation"])
    eq("volume count", int(ex.fields["RAID Devices"]), len(got["volumes"]))
    disks = {d["ref"]: d for d in got["disks"]}
    for d in ex.disks:
        md = disks.get(d["Serial"])
        if md is None:
            bad.append(f"{where}: disk {d['Serial']} missing from mdmond's disks {sorted(disks)}")
            continue
        if "State" in d and not _disk_state_ok(d["State"], md["state"]):
            bad.append(f"{where}: disk {d['Serial']}: mdadm state {d['State']!r}, mdmond {md['state']!r}")
    for xv, v in zip(ex.volumes, got["volumes"], strict=False):
        w = f"volume {xv['name']}"
        eq(f"{w} name", xv["name"], v["name"])
        eq(f"{w} uuid", xv["UUID"], v["uuid"])
        new_level, old_level = split_arrow(xv["RAID Level"])
        eq(f"{w} level", int(old_level or new_level), v["level"])
        eq(f"{w} raid_disks", int(split_arrow(xv["Members"])[0]), v["raid_disks"])
        eq(f"{w} size", int(xv["Array Size"].split()[0]), v["size_sectors"])
        new_state, old_state = split_arrow(xv["Map State"])
        eq(f"{w} state", old_state or new_state, v["state"])
        eq(f"{w} dirty", xv["Dirty State"] == "dirty", v["dirty"])
        chunk = split_arrow(xv["Chunk Size"])
        chunk_kib = int((chunk[1] or chunk[0]).split()[0])
        eq(f"{w} chunk", 0 if v["level"] == 1 else chunk_kib * 2, v["chunk_sectors"])
        rwh = _IMSM_RWH.get(xv.get("RWH Policy", ""))
        if rwh is not None and v["level"] == 5:
            eq(f"{w} consistency policy", rwh, v["consistency_policy"])
        mig = xv.get("Migrate State", "idle")
        if mig == "idle":
            eq(f"{w} migration", None, v["migration"])
        elif mig in _IMSM_MIGRATION:
            eq(f"{w} migration", _IMSM_MIGRATION[mig], (v["migration"] or {}).get("type"))
        if "Checkpoint" in xv:
            units, per = xv["Checkpoint"].split()
            eq(f"{w} checkpoint", int(units) * int(per.strip("()")), (v["migration"] or {}).get("checkpoint_sectors"))
    return bad


def _ddf(ex: Examine, got: dict[str, Any], where: str, scan: str) -> list[str]:
    bad: list[str] = []

    def eq(what: str, a: object, b: object) -> None:
        if a != b:
            bad.append(f"{where}: {what}: mdadm {a!r} != mdmond {b!r}")

    eq("generation", int(ex.fields["Seq"], 16), got["generation"])
    eq("container guid", ex.fields["Container GUID"].split("(")[0].replace(":", "").strip().lower(), got["identity"])
    m = re.search(r"ARRAY metadata=ddf UUID=(\S+)", scan)
    if m:
        eq("uuid (mdadm --examine --scan)", m.group(1), got["uuid"])
    disks = {d["ref"]: d for d in got["disks"]}
    eq("disk refs", sorted(p["refno"] for p in ex.pds), sorted(disks))
    for p in ex.pds:
        if p["refno"] in disks and not _disk_state_ok(p["type_state"], disks[p["refno"]]["state"]):
            bad.append(f"{where}: disk {p['refno']}: mdadm {p['type_state']!r}, mdmond {disks[p['refno']]['state']!r}")
    by_index = {v["index"]: v for v in got["volumes"]}
    described = [xv for xv in ex.volumes if "Raid Devices" in xv]
    eq("volume indexes", sorted(int(xv["index"]) for xv in described), sorted(by_index))
    rebuilding = any("Rebuilding" in p["type_state"] for p in ex.pds)
    for xv in described:
        v = by_index.get(int(xv["index"]))
        if v is None:
            continue
        w = f"volume {xv['Name']}"
        eq(f"{w} name", xv["Name"], v["name"])
        eq(f"{w} size", int(xv["Array Size"]) * 2, v["size_sectors"])
        state, consistency = xv["state"].split(", ")
        eq(f"{w} dirty", consistency == "Not Consistent", v["dirty"])
        eq(f"{w} degraded", state in ("Degraded", "Partially Optimal"), v["state"] == "degraded")
        eq(f"{w} chunk", int(xv.get("Chunk Size", "0 sectors").split()[0]), v["chunk_sectors"])
        level = 10 if "Secondary Level" in xv and xv["Raid Level"] == "RAID1" else _DDF_LEVEL.get(xv["Raid Level"])
        eq(f"{w} level", level, v["level"])
        if "Secondary Level" not in xv:
            eq(f"{w} raid_disks", int(xv["Raid Devices"].split()[0]), v["raid_disks"])
        mig = (v["migration"] or {}).get("type")
        if rebuilding:
            eq(f"{w} migration (a disk is Rebuilding)", "rebuild", mig)
        elif "in Progress" not in xv.get("init state", ""):
            eq(f"{w} migration", None, mig)
    return bad


def disagreements(mdadm_text: str, got: dict[str, Any], where: str, scan: str = "") -> list[str]:
    """Every difference between mdadm's ``--examine`` text and one ``mdmond examine --json`` entry."""
    if "error" in got:
        return [f"{where}: mdmond could not read the metadata: {got['error']}"]
    ex = parse(mdadm_text)
    fmt = ex.format
    if got["format"] != fmt:
        return [f"{where}: format: mdadm {fmt}, mdmond {got['format']}"]
    return _imsm(ex, got, where) if fmt == "imsm" else _ddf(ex, got, where, scan)
