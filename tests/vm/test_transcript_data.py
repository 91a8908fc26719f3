"""The committed transcripts, without a VM: well formed, and mdmond still reads them as mdadm did.

Each step's metadata bytes are rebuilt into sparse images and ``mdmond
examine`` must agree with the ``mdadm --examine`` text recorded with them, so a
format change that breaks agreement with the real mdadm shows here on every
machine, qemu or not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testbed.transcript import TRANSCRIPTS, decode_metadata

from .examine_compare import ddf_available, disagreements, mdmond_examine

FILES = sorted(TRANSCRIPTS.glob("*.json"))
ARRAY_KEYS = {"array_state", "sync_action", "sync_completed", "resync_start", "degraded", "metadata_version", "devs"}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _images(t: dict[str, Any], i: int, into: Path) -> list[str]:
    """Sparse images of step ``i``'s metadata, as ``mdmond examine`` arguments (serial attached)."""
    specs = []
    for n, disk in enumerate(t["disks"]):
        entry = t["steps"][i]["metadata"][disk["device"]]
        while "same_as_step" in entry:
            entry = t["steps"][entry["same_as_step"]]["metadata"][disk["device"]]
        img = into / f"step{i}-disk{n}.img"
        with open(img, "wb") as f:
            f.truncate(entry["size"])
            for off, data in decode_metadata(entry):
                f.seek(off)
                f.write(data)
        specs.append(f"{img},serial={disk['serial']}")
    return specs


def test_there_are_transcripts() -> None:
    names = {p.stem for p in FILES}
    assert {"imsm-raid5-rebuild", "ddf-raid5-rebuild", "imsm-raid1-raid0"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_transcript_schema(path: Path) -> None:
    t = _load(path)
    assert t["schema"] == 1 and t["scenario"] == path.stem
    assert t["steps"] and all(
        set(s) >= {"step", "action", "mdstat", "arrays", "examine", "metadata"} for s in t["steps"]
    )
    for s in t["steps"]:
        assert s["mdstat"].startswith("Personalities : ")
        for a in s["arrays"].values():
            assert set(a) >= ARRAY_KEYS
            for d in a["devs"].values():
                assert {"state", "slot", "recovery_start"} <= set(d)
        assert set(s["examine"]) == {d["device"] for d in t["disks"]} == set(s["metadata"])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_mdmond_reads_recorded_metadata_as_mdadm_did(path: Path, tmp_path: Path) -> None:
    t = _load(path)
    if t["scenario"].startswith("ddf") and (why := ddf_available()):
        pytest.skip(f"DDF comparison skipped: {why}")
    problems: list[str] = []
    compared = 0
    for i, step in enumerate(t["steps"]):
        specs = _images(t, i, tmp_path)
        keep = [(spec, dev) for spec, dev in zip(specs, step["examine"], strict=True) if step["examine_rc"][dev] == 0]
        if not keep:
            continue
        for (_, dev), got in zip(keep, mdmond_examine([s for s, _ in keep]), strict=True):
            problems += disagreements(step["examine"][dev], got, f"step {i} {step['step']} {dev}", step["examine_scan"])
            compared += 1
    assert compared > len(t["steps"])
    assert not problems, "\n".join(problems)


def test_comparison_notices_a_difference(tmp_path: Path) -> None:
    """The comparer is not blind: change one fact in mdadm's text and it must object."""
    t = _load(TRANSCRIPTS / "imsm-raid5-rebuild.json")
    i = next(n for n, s in enumerate(t["steps"]) if s["step"] == "half-rebuilt")
    step = t["steps"][i]
    spec = _images(t, i, tmp_path)[0]
    text = step["examine"]["/dev/sda"]
    got = mdmond_examine([spec])[0]
    assert disagreements(text, got, "sda") == []
    assert any("checkpoint" in p for p in disagreements(text.replace("Checkpoint : ", "Checkpoint : 1"), got, "sda"))
    assert any("generation" in p for p in disagreements(text.replace("Generation : 0", "Generation : 1"), got, "sda"))
    assert any(
        "state" in p
        for p in disagreements(text.replace("Map State : normal <-- degraded", "Map State : normal"), got, "sda")
    )
