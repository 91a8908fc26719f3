"""Each transcript scenario on the real kernel under stock mdadm, with mdmon and with mdmond.

Every scenario runs once per session and daemon (``recording`` fixture); the
tests read its steps, and each test runs for both daemons: mdmon's run is the
ground truth the simulated driver replays, mdmond's must behave the same
(where a test allows a difference, it says why).  ``test_mdmond_examine_agrees`` is the point of the exercise: at
every step, on every disk, ``mdmond examine --json`` over the metadata bytes
the guest copied must say what ``mdadm --examine`` said about the same bytes.
The other tests pin the kernel and mdmon behaviour the daemon must reproduce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from testbed import transcript

from .examine_compare import ddf_available, disagreements, mdmond_examine

pytestmark = pytest.mark.vm

Get = Callable[[str], transcript.Recording]
#: Every scenario is played under stock mdadm with each daemon as its mdmon.
DAEMONS = ["mdmon", "mdmond"]
SCENARIOS = list(transcript.SCENARIOS)
REBUILD = [s for s in SCENARIOS if s.endswith("-rebuild")]
VOLUMES = [s for s in SCENARIOS if not s.endswith("-rebuild")]


@pytest.fixture(params=DAEMONS)
def daemon(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def played(recording: Callable[..., transcript.Recording], daemon: str) -> Get:
    """``played(scenario)``: the scenario's recording under this test's daemon."""
    return lambda name: recording(name, daemon)


def _ok(recording: Get, name: str) -> transcript.Recording:
    rec = recording(name)
    assert rec.result.returncode == 0, (
        f"{name} failed in the guest:\n{rec.result.stdout[-3000:]}\n{rec.result.stderr[-3000:]}"
    )
    return rec


def _step(rec: transcript.Recording, name: str) -> dict[str, Any]:
    return next(s for s in rec.steps if s["step"] == name)


def _volume(step: dict[str, Any], name: str = "vol0") -> dict[str, Any]:
    """The array whose /dev/md link is NAME or NAME_N (mdadm appends _0 on re-assembly without udev)."""
    for a in step["arrays"].values():
        if any(n.rsplit("/", 1)[1].split("_")[0] == name for n in a["names"]):
            return dict(a)
    raise AssertionError(f"no array {name} in step {step['step']}: {sorted(step['arrays'])}")


@pytest.mark.parametrize("name", SCENARIOS)
def test_mdmond_examine_agrees(played: Get, name: str) -> None:
    rec = _ok(played, name)
    if name.startswith("ddf") and (why := ddf_available()):
        pytest.skip(f"DDF comparison skipped: {why}")
    compared = 0
    problems: list[str] = []
    for i, step in enumerate(rec.steps):
        specs, texts = [], []
        for spec, (dev, text) in zip(rec.images(i), step["examine"].items(), strict=True):
            if step["examine_rc"][dev] == 0:
                specs.append(spec)
                texts.append((dev, text))
        if not specs:
            continue
        for (dev, text), got in zip(texts, mdmond_examine(specs), strict=True):
            problems += disagreements(text, got, f"{name} step {i} {step['step']} {dev}", step["examine_scan"])
            compared += 1
    assert compared >= len(rec.steps) * 2, "too few disks with metadata were compared"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", SCENARIOS)
def test_data_survives_and_check_finds_no_mismatch(played: Get, name: str) -> None:
    rec = _ok(played, name)
    log = rec.result.stdout
    if "vol0 cannot be started" in log:
        pytest.skip("DDF: the volume stopped mid-rebuild could not be started even when forced")
    assert "pattern ok" in log and "MISMATCH" not in log
    checked = _step(rec, "checked")
    redundant = [a for a in checked["arrays"].values() if a["sync_action"] is not None]
    assert redundant, "no redundant volume was checked"
    assert all(a["mismatch_cnt"] == "0" and a["sync_action"] == "idle" for a in redundant)


@pytest.mark.parametrize("name", REBUILD)
def test_fail_activates_the_spare_and_rebuild_runs(played: Get, name: str) -> None:
    rec = _ok(played, name)
    failed = _volume(_step(rec, "failed"))
    # the failed member leaves the volume at once; mdmon puts the container's spare in its slot
    assert "sdb" not in failed["devs"]
    assert failed["sync_action"] == "recover" and failed["degraded"] == "1"
    spare = failed["devs"]["sdd"]
    assert spare["state"].split(",")[0] == "spare" and spare["slot"] == "1"
    done, total = failed["sync_completed"].split(" / ")
    assert int(total) == 2 * int(failed["component_size"])
    # both advance in the same steps; read a moment apart they may be one step apart
    assert abs(int(spare["recovery_start"]) - int(done)) <= int(total) // 4
    # the stopped rebuild is recorded in the metadata
    exam = _step(rec, "volume-stopped")["examine"]["/dev/sda"]
    if name.startswith("imsm"):
        assert "Migrate State : rebuild" in exam and "Checkpoint : " in exam
    else:
        assert "Rebuilding" in exam
    if any(st["step"] == "forced" for st in rec.steps):
        return  # DDF recorded the stop as dirty: see test_ddf_rebuild_after_reassembly
    # after re-assembly the rebuild completes onto the same disk
    done_step = _volume(_step(rec, "rebuilt"))
    assert done_step["degraded"] == "0" and done_step["devs"]["sdd"]["state"].split(",")[0] == "in_sync"
    assert done_step["devs"]["sdd"]["slot"] == "1"


def test_imsm_rebuild_resumes_from_the_checkpoint(played: Get) -> None:
    rec = _ok(played, "imsm-raid5-rebuild")
    exam = _step(rec, "volume-stopped")["examine"]["/dev/sda"]
    units, per = next(ln for ln in exam.splitlines() if "Checkpoint :" in ln).split(":")[1].split()
    checkpoint = int(units) * int(per.strip("()"))
    resumed = _volume(_step(rec, "assembled"))
    assert resumed["sync_action"] == "recover"
    # md counts recovery in sectors of the whole volume's members: resumed at (or after) the checkpoint
    assert int(resumed["devs"]["sdd"]["recovery_start"]) >= checkpoint > 0


def test_ddf_rebuild_after_reassembly(played: Get) -> None:
    """DDF records no rebuild position, and mdmon records the stop mid-rebuild either way.

    Seen both ways on the same kernel: "Degraded, Consistent" (the volume starts
    and the recovery starts over from the beginning) or "Degraded, Not
    Consistent" (md refuses a dirty degraded RAID5 until start_dirty_degraded).
    """
    rec = _ok(played, "ddf-raid5-rebuild")
    stopped = _step(rec, "volume-stopped")["examine"]["/dev/sda"]
    assert "state[0] : Degraded, " in stopped
    assembled = _volume(_step(rec, "assembled"))
    if "Degraded, Not Consistent" in stopped:
        assert assembled["array_state"] == "inactive"
        assert "cannot be started" in rec.result.stdout
        assert any(st["step"] == "forced" for st in rec.steps)
    else:
        before = int(_volume(_step(rec, "half-rebuilt"))["devs"]["sdd"]["recovery_start"])
        assert assembled["sync_action"] == "recover"
        assert int(assembled["devs"]["sdd"]["recovery_start"]) < before


@pytest.mark.parametrize("name", REBUILD)
def test_check_counts_a_corrupted_block_and_repair_fixes_it(played: Get, name: str) -> None:
    rec = _ok(played, name)
    if not any(st["step"] == "corrupted-checked" for st in rec.steps):
        assert name.startswith("ddf"), "IMSM always rebuilds after re-assembly: the check must have run"
        pytest.skip("DDF kept the volume degraded after re-assembly: nothing to check")
    corrupted = _volume(_step(rec, "corrupted-checked"))
    assert int(corrupted["mismatch_cnt"]) > 0 and corrupted["sync_action"] == "idle"
    assert _volume(_step(rec, "repaired"))["mismatch_cnt"] == "0"


@pytest.mark.parametrize("name", VOLUMES)
def test_array_state_around_one_write(played: Get, name: str) -> None:
    rec = _ok(played, name)
    trace = rec.array_state_trace()
    assert trace is not None
    states = [t["state"] for t in trace]
    print(name, trace)
    assert states[0] == "clean" and states[-1] == "clean"
    # write-pending (until mdmon has marked the metadata dirty) and active-idle (until
    # it has marked it clean) last ~10 ms each: a busy machine's poll may miss them
    assert [s for s in states if s not in ("write-pending", "active-idle")] == ["clean", "active", "clean"]
    if "write-pending" in states:
        assert states.index("write-pending") < states.index("active")
    assert states[-2] in ("active", "active-idle")
    clean_at = trace[-1]["t"]
    assert 2 < clean_at < 12  # back to clean only after mdmon's safe-mode delay (~5-7.5 s seen)


@pytest.mark.parametrize("name", VOLUMES)
def test_reassembled_volumes_start_read_auto(played: Get, name: str) -> None:
    rec = _ok(played, name)
    step = _step(rec, "assembled")
    vols = [a for a in step["arrays"].values() if a["metadata_version"].startswith("external:/")]
    assert vols
    for a in vols:
        # redundant volumes wait in read-auto for the first write; RAID0 (no resync to track) comes up clean
        assert a["array_state"] == ("clean" if a["level"] == "raid0" else "read-auto"), a
