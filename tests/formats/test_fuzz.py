"""The fuzz harness's bounded CI slice: every structure of both formats, every mutation, no bug class.

The long run is ``scripts/fuzz --cases N``; this is a seeded few hundred cases, well under a minute.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from formats.model import Member
from tests import fuzzing as F

from .ddf.helpers import container as ddf_container


@functools.cache
def seeds() -> tuple[F.Seed, ...]:
    return tuple(F.load_seeds())


def test_every_structure_of_both_formats_has_targets() -> None:
    structures = {t.structure.split("[")[0] for s in seeds() for t in s.targets}
    assert {"imsm.mpb", "imsm.disk", "imsm.dev", "imsm.migr_record", "imsm.bbm_log"} <= structures
    assert any(t.structure.endswith(".vol") for s in seeds() for t in s.targets)
    assert any(".map" in t.structure for s in seeds() for t in s.targets)
    ddf = {"ddf.anchor", "ddf.header", "ddf.controller", "ddf.phys", "ddf.virt", "ddf.vd_config", "ddf.spare_assign"}
    assert ddf | {"ddf.disk_data"} <= structures


@pytest.mark.parametrize("fmt", ["imsm", "ddf"])
def test_seeded_slice_finds_no_bug(fmt: str) -> None:
    mine = [s for s in seeds() if s.format == fmt]
    report = F.run(mine, 400, seed=2026, time_limit=10.0)
    assert report.total == 400
    assert not report.bugs, report.text()
    # the mutations reach past the checksums: most cases are refused or accepted, not lost at the signature
    assert report.counts["refused"] + report.counts["refused-vague"] > 25, report.text()
    assert report.counts["accepted-roundtrips"] + report.counts["accepted-rewritten"] > 40, report.text()


def test_allocation_is_bounded() -> None:
    """A traced slice: no case may allocate more than ``HUGE`` (a corrupt length must never size a buffer)."""
    report = F.run(list(seeds()), 40, seed=7, trace_memory=True)
    assert report.counts["bug-huge-allocation"] == 0, report.text()


def test_time_bound_turns_a_hang_into_a_class() -> None:
    case = next(F.cases(list(seeds()), 1, seed=1))

    def slow(case: F.Case) -> str:
        while True:  # a loop that never ends burns CPU: the bound is CPU time
            pass

    original = F.pipeline
    F.pipeline = slow  # type: ignore[assignment]
    try:
        assert F.run_case(case, time_limit=0.05).cls == "bug-hang"
    finally:
        F.pipeline = original  # type: ignore[assignment]


def test_the_oracle_refuses_what_validation_must() -> None:
    """The oracle is the fuzzer's teeth: a disk in two slots, a checkpoint past the end, an oversized array."""
    model = ddf_container("ddf-raid5").model()
    v = model.volumes[0]
    F.impossible(model, "golden")
    twice = replace(v, members=(*v.members[:2], replace(v.members[2], disk_ref=v.members[0].disk_ref)))
    big = replace(v, size_sectors=v.component_sectors * v.raid_disks)
    far = replace(v, members=(*v.members[:2], Member(2, v.members[2].disk_ref, v.members[2].state, 10**12)))
    for bad in (twice, big, far):
        with pytest.raises(F.Impossible):
            F.impossible(replace(model, volumes=(bad,)), "mutated")
