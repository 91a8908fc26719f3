"""Reference transcripts: what the real kernel, mdadm and mdmon did, step by step.

A scenario (``guest/transcripts.sh``) runs in the guest and records each step
with ``guest/snap.py``; this module boots the guest for it, reads the steps
back, and writes the commit-ready ``tests/data/transcripts/<scenario>.json``
(schema in that folder's README.md).  Each step also leaves a sparse copy of
every disk's metadata region, so the host can examine exactly what mdadm
examined (``Recording.images``).

    python -m testbed transcripts [SCENARIO...] [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import lzma
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import vm

GUEST = Path(__file__).resolve().parent / "guest"
TRANSCRIPTS = vm.PROJECT / "tests" / "data" / "transcripts"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    disks: int
    size_mib: int
    timeout: float
    description: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "imsm-raid5-rebuild",
            4,
            32,
            240,
            "IMSM RAID5 on disks 0-2 + spare; fail disk1, mdmon rebuilds onto the spare, stop at ~50 %, "
            "re-assemble (recovery resumes), verify the data, check",
        ),
        Scenario(
            "ddf-raid5-rebuild",
            4,
            64,
            240,
            "DDF RAID5 on disks 0-2 + spare; fail disk1, mdmon rebuilds onto the spare, stop at ~50 %, "
            "re-assemble, verify the data, check",
        ),
        Scenario(
            "imsm-raid1-raid0",
            2,
            32,
            240,
            "two IMSM volumes in one container (RAID1 8 MiB + RAID0 on the rest); array_state traced around "
            "one write; check; stop; re-assemble; verify",
        ),
        Scenario("imsm-raid10", 4, 32, 240, "IMSM RAID10 on 4 disks; write, array_state trace, check, re-assemble"),
        Scenario("ddf-raid1-raid0", 2, 64, 240, "two DDF volumes (RAID1 8 MiB + RAID0 8 MiB); as imsm-raid1-raid0"),
        Scenario("ddf-raid10", 4, 64, 240, "DDF RAID10 on 4 disks; write, array_state trace, check, re-assemble"),
    )
}


@dataclass
class Recording:
    """One scenario run: the guest's result and the steps it recorded in ``outdir``."""

    scenario: Scenario
    outdir: Path
    result: vm.Result
    steps: list[dict[str, Any]] = field(default_factory=list)

    def images(self, index: int) -> list[str]:
        """``mdmond examine`` arguments for step ``index``: each region copy with its disk's serial."""
        step = self.steps[index]
        d = self.outdir / f"{index:02d}-{step['step']}"
        return [f"{d / f'disk{i}.img'},serial={vm.SERIAL_FORMAT.format(i)}" for i in range(len(step["examine"]))]

    def array_state_trace(self) -> list[dict[str, Any]] | None:
        """The polled array_state changes around one write.

        ``[{"t": seconds after the write started, "state": ...}, ...]``, or None
        for scenarios that do not trace.
        """
        f = self.outdir / "array_state_trace"
        if not f.exists():
            return None
        t0 = float((self.outdir / "array_state_trace.t0").read_text())
        trace = []
        for line in f.read_text().splitlines():
            t, state = line.split(" ", 1)
            trace.append({"t": round(float(t) - t0, 4), "state": state})
        return trace


def record(name: str, outdir: Path, *, mdmon: str | None = None, echo: bool = False) -> Recording:
    """Run scenario ``name`` in a guest with fresh disks, recording into ``outdir``."""
    sc = SCENARIOS[name]
    outdir.mkdir(parents=True, exist_ok=True)
    script = f"bash {GUEST / 'transcripts.sh'} {name} {outdir}"
    r = vm.run(
        script,
        disks=sc.disks,
        disk_size_mib=sc.size_mib,
        timeout=sc.timeout,
        shares=[outdir],
        mdmon=mdmon,
        echo=echo,
    )
    (outdir / "log.txt").write_text(r.stdout + ("\n--- stderr\n" + r.stderr if r.stderr else ""))
    steps = [json.loads(p.read_text()) for p in sorted(outdir.glob("[0-9][0-9]-*.json"))]
    return Recording(sc, outdir, r, steps)


def _metadata(image: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The non-zero 512-byte sectors of a region copy: extents + their bytes (xz, base64)."""
    data = bytearray()
    extents: list[list[int]] = []
    zero = bytes(512)
    with open(image, "rb") as f:
        for start, length in info["regions"]:
            f.seek(start)
            buf = f.read(length)
            for i in range(0, len(buf), 512):
                sec = buf[i : i + 512]
                if sec == zero:
                    continue
                off = start + i
                if extents and extents[-1][0] + extents[-1][1] == off:
                    extents[-1][1] += 512
                else:
                    extents.append([off, 512])
                data += sec
    return {
        "size": info["size"],
        "regions": info["regions"],
        "extents": extents,
        "xz_base64": base64.b64encode(lzma.compress(bytes(data))).decode(),
    }


def decode_metadata(entry: dict[str, Any]) -> list[tuple[int, bytes]]:
    """``(offset, bytes)`` of each non-zero extent of a transcript ``metadata`` entry."""
    raw = lzma.decompress(base64.b64decode(entry["xz_base64"]))
    out, pos = [], 0
    for off, length in entry["extents"]:
        out.append((off, raw[pos : pos + length]))
        pos += length
    return out


def to_json(rec: Recording) -> dict[str, Any]:
    """The commit-ready transcript (see tests/data/transcripts/README.md)."""
    steps: list[dict[str, Any]] = []
    previous: dict[str, tuple[int, str]] = {}
    for i, st in enumerate(rec.steps):
        meta: dict[str, Any] = {}
        for n, dev in enumerate(st["examine"]):
            image = rec.outdir / f"{i:02d}-{st['step']}" / f"disk{n}.img"
            m = _metadata(image, st["regions"][dev])
            key = json.dumps(m, sort_keys=True)
            if dev in previous and previous[dev][1] == key:
                meta[dev] = {"same_as_step": previous[dev][0]}
            else:
                meta[dev] = m
                previous[dev] = (i, key)
        steps.append(
            {
                "step": st["step"],
                "action": st["action"],
                "uptime": st["uptime"],
                "mdstat": st["mdstat"],
                "arrays": st["arrays"],
                "examine": st["examine"],
                "examine_rc": st["examine_rc"],
                "examine_scan": st["examine_scan"],
                "metadata": meta,
            }
        )
    head = rec.result.stdout.splitlines()[0] if rec.result.stdout else ""
    return {
        "schema": SCHEMA_VERSION,
        "scenario": rec.scenario.name,
        "description": rec.scenario.description,
        "environment": head.lstrip("# "),
        "disks": [
            {
                "device": f"/dev/sd{chr(ord('a') + i)}",
                "serial": vm.SERIAL_FORMAT.format(i),
                "size_mib": rec.scenario.size_mib,
            }
            for i in range(rec.scenario.disks)
        ],
        "steps": steps,
        "array_state_trace": rec.array_state_trace(),
        "log": rec.result.stdout,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed transcripts", description=__doc__)
    ap.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(SCENARIOS)}")
    ap.add_argument("--out", type=Path, default=TRANSCRIPTS)
    a = ap.parse_args(argv)
    names = a.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {' '.join(unknown)}")
    from . import provision

    provision.prepare(install=True)
    status = 0
    for name in names:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"testbed-{name}-") as td:
            rec = record(name, Path(td))
            ok = rec.result.returncode == 0
            if ok:
                a.out.mkdir(parents=True, exist_ok=True)
                (a.out / f"{name}.json").write_text(json.dumps(to_json(rec), indent=1) + "\n")
        took = time.monotonic() - t0
        verdict = "ok" if ok else f"FAILED (exit {rec.result.returncode})"
        print(f"{name}: {verdict}, {len(rec.steps)} steps, {took:.0f} s")
        if not ok:
            sys.stderr.write(rec.result.stdout[-3000:] + rec.result.stderr[-3000:])
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
