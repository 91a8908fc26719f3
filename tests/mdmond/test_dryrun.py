"""The dry run over the golden images: the daemon's decisions, in simulated time, nothing written."""

from __future__ import annotations

import hashlib
from pathlib import Path

from formats.model import MemberState, VolumeState
from mdmond.dryrun import Action, describe, dry_run
from tests.golden import GOLDEN, disk_count, golden_serial, image_path


def specs(scenario: str) -> list[str]:
    return [f"{image_path(scenario, n)},serial={golden_serial(n)}" for n in range(disk_count(scenario))]


def digest(paths: list[str]) -> list[str]:
    return [hashlib.sha256(Path(p.split(",")[0]).read_bytes()).hexdigest() for p in paths]


def test_failure_spare_rebuild_and_nothing_written_to_the_images() -> None:
    images = specs("imsm-raid5-spare")
    before = digest(images)
    report = dry_run(images, actions=[Action(1, "write"), Action(10, "fail", "sdb")], duration=40)
    assert digest(images) == before
    assert report.errors == []
    (c,) = report.containers
    kinds = [e.kind for e in c.events]
    assert kinds.index("script-fail") < kinds.index("unblocked") < kinds.index("spare-activated")
    vol = c.after.volume(0)
    assert vol.state is VolumeState.NORMAL and vol.member(1).disk_ref == "MDVM00000003"
    assert vol.member(1).state is MemberState.IN_SYNC
    assert sum(n for w in c.writes.values() for _, n in w) > 0
    assert "nothing was written to the originals" in describe(report)


def test_rebuild_stopped_mid_way_resumes_from_its_checkpoint() -> None:
    report = dry_run(specs("imsm-raid5-rebuild-stopped"), duration=30)
    (c,) = report.containers
    cp = c.before.volume(0).migration.checkpoint_sectors  # type: ignore[union-attr]
    resumed = [e for e in c.events if e.kind == "rebuild-resumed"]
    assert resumed and resumed[0].fields["recovery_start"] == cp > 0
    assert c.after.volume(0).migration is None and c.after.volume(0).state is VolumeState.NORMAL


def test_bad_image_is_reported_by_name_and_the_rest_still_run(tmp_path: Path) -> None:
    bad = tmp_path / "zero.img"
    bad.write_bytes(bytes(1 << 20))
    report = dry_run([*specs("imsm-raid1"), str(bad)], duration=5)
    assert len(report.containers) == 1
    (err,) = report.errors
    assert err.what.endswith("zero.img") and err.kind == "no-metadata"


def test_every_golden_container_runs_clean_and_no_write_hangs() -> None:
    for scenario in sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()):
        report = dry_run(specs(scenario), actions=[Action(1, "write")], duration=20)
        assert report.errors == [], scenario
        for c in report.containers:
            assert "WRITE-HUNG" not in [e.kind for e in c.events], scenario
            for v in c.after.volumes:
                assert not v.dirty or v.migration is not None or v.state is not VolumeState.NORMAL, (scenario, v.name)
