"""Every recorded real-kernel scenario (tests/data/transcripts) replayed on the simulated md driver.

At every recorded step, for every volume, the simulator must show what Debian
6.1's md showed: ``array_state`` (mdmon's part played by ``replay.MdmonPart``),
level, raid_disks, component_size, sync_action (absent for a RAID0 and an
array not started), degraded, consistency_policy, resync_start, the member
set and each member's state and slot, ``recovery_start`` of a rebuilding
member equal to the progress beside it, and the form of ``sync_completed``
(``done / total`` with total = 2 x component_size, in sectors).  Progress
values are timing; only their order is compared.  What the simulator does
not model is listed in ``replay.NOT_MODELLED`` and ``KNOWN`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from mdmond.kernel import simulated
from mdmond.kernel.simulated import SimArray, SimDevice
from mdmond.kernel.values import ArrayState

from .replay import EXACT, NOT_MODELLED, SCENARIOS, Replay, load, replay, volumes

#: (scenario, step, volume) -> why the simulator is allowed to differ there.  Each entry must still
#: differ (a stale excuse fails ``test_known_differences_are_still_there``).
KNOWN: dict[tuple[str, str, str], str] = {}


def test_every_transcript_is_replayed() -> None:
    assert SCENARIOS == [
        "ddf-raid1-raid0",
        "ddf-raid10",
        "ddf-raid5-rebuild",
        "imsm-raid1-raid0",
        "imsm-raid10",
        "imsm-raid5-rebuild",
    ]


def test_every_recorded_attribute_is_compared_or_excused() -> None:
    """A new attribute in a transcript must be compared or listed, with a reason, as not modelled."""
    compared = {*EXACT, "sync_completed", "resync_start", "devs"}
    for name in SCENARIOS:
        for step in load(name)["steps"]:
            for _kname, a in volumes(step).values():
                assert set(a) - compared <= set(NOT_MODELLED), (name, set(a) - compared - set(NOT_MODELLED))
                for d in a["devs"].values():
                    extra = {f"devs/{k}" for k in d} - {"devs/state", "devs/slot", "devs/recovery_start"}
                    assert extra <= set(NOT_MODELLED), (name, extra)


async def test_known_differences_are_still_there(autojump_clock: trio.testing.MockClock) -> None:
    for name in sorted({k[0] for k in KNOWN}):
        r = await _play(name)
        for x in r.results:
            if (name, x.step, x.volume) in KNOWN:
                assert x.differences, f"{name}/{x.step}/{x.volume}: KNOWN excuse is stale (it matches now)"


async def _play(name: str) -> Replay:
    return await replay(name)


@pytest.mark.parametrize("name", SCENARIOS)
async def test_replay_matches_the_kernel(name: str, autojump_clock: trio.testing.MockClock) -> None:
    r = await _play(name)
    data = load(name)
    compared = {(x.step, x.volume) for x in r.results}
    for step in data["steps"]:
        for vol in volumes(step):
            assert (step["step"], vol) in compared, f"{step['step']}/{vol} was not compared"
    problems = [
        f"{x.step}/{x.volume}: {d}" for x in r.results if (name, x.step, x.volume) not in KNOWN for d in x.differences
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", [s for s in SCENARIOS if not s.endswith("-rebuild")])
async def test_write_to_a_clean_volume_takes_the_recorded_states(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    """clean -> write-pending -> active -> active-idle -> clean (array_state_trace); timing not compared."""
    r = await _play(name)
    trace = next(x for x in r.results if x.step == "array_state_trace")
    assert trace.recorded is not None and trace.simulated is not None
    assert trace.recorded["trace"] == ["clean", "write-pending", "active", "active-idle", "clean"]
    assert trace.simulated["trace"] == trace.recorded["trace"]


@pytest.mark.parametrize("name", [s for s in SCENARIOS if not s.endswith("-rebuild")])
async def test_check_is_refused_exactly_where_the_attribute_is_missing(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    """``echo check > sync_action`` has no file to write on a RAID0."""
    r = await _play(name)
    created = volumes(load(name)["steps"][0])
    assert r.check_refused == {vol: a["sync_action"] is None for vol, (_k, a) in created.items()}
    if "raid0" in name:
        assert any(r.check_refused.values()) and not all(r.check_refused.values())


def _progress(results: list[Any], side: str) -> list[tuple[str, int]]:
    out = []
    for x in results:
        obs = getattr(x, side)
        if x.volume == "vol0" and obs and obs.get("sync_action") == "recover":
            out.append((x.step, int(obs["sync_completed"].split("/")[0])))
    return out


@pytest.mark.parametrize("name", [s for s in SCENARIOS if s.endswith("-rebuild")])
async def test_rebuild_progress_only_moves_forward(name: str, autojump_clock: trio.testing.MockClock) -> None:
    r = await _play(name)
    for side in ("recorded", "simulated"):
        progress = _progress(r.results, side)
        assert [s for s, _ in progress][:3] == ["failed", "rebuilding", "half-rebuilt"], (side, progress)
        values = [v for _, v in progress]
        assert values == sorted(values), (side, progress)
        assert values[0] > 0
    if name.startswith("imsm"):
        # re-assembled, the rebuild resumes where it stopped (not from 0) and, throttled, has
        # not published a step a second later
        sim = dict(_progress(r.results, "simulated"))
        rec = dict(_progress(r.results, "recorded"))
        for p in (rec, sim):
            assert p["assembled"] == p["assembled-1s"] >= p["half-rebuilt"], p


# -- a replay that cannot fail is no test: each broken behaviour must be caught -----------------


def _old_state_text(self: SimDevice) -> str:  # "spare" only while slotless, as the simulator used to say
    return ",".join(f for f in simulated._FLAG_ORDER if f in self.flags)


def _no_raid0_exception(self: SimArray) -> bool:
    return self.array_state.running


def _degraded_off_by_one(self: SimArray) -> int:
    return sum(1 for d in self.devs.values() if d.slot is None)


_real_write = SimArray._write_array_state


def _read_auto_is_clean(self: SimArray, value: str) -> None:
    _real_write(self, "clean" if value.strip() == "read-auto" and self.array_state.running else value)


def _raid0_read_auto(self: SimArray, value: str) -> None:
    if value.strip() == "read-auto" and self.level == 0:
        self._set(ArrayState.READ_AUTO)
        return
    _real_write(self, value)


def _starts_anyway(self: SimArray) -> None:
    pass


def _no_checkpoint(self: SimArray, done: int) -> None:
    pass


_real_write_dev = SimArray._write_dev


def _recovery_start_keeps_in_sync(self: SimArray, d: SimDevice, what: str, value: str) -> None:
    was = "in_sync" in d.flags
    _real_write_dev(self, d, what, value)
    if what == "recovery_start" and was:
        d.flags.add("in_sync")


MUTATIONS: dict[str, tuple[str, str, Callable[..., Any] | property, str]] = {
    # name: (attribute of SimDevice/SimArray, scenario, replacement, what the replay must report)
    "spare-flag-dropped-in-slot": ("SimDevice.state_text", "imsm-raid5-rebuild", _old_state_text, "dev-sdd/state"),
    "raid0-has-sync-action": (
        "SimArray.has_redundancy_attrs",
        "imsm-raid1-raid0",
        property(_no_raid0_exception),
        "sync_action",
    ),
    "degraded-miscounted": ("SimArray.degraded", "ddf-raid5-rebuild", property(_degraded_off_by_one), "degraded"),
    "assembled-not-read-auto": ("SimArray._write_array_state", "imsm-raid10", _read_auto_is_clean, "array_state"),
    "dirty-degraded-raid5-starts": ("SimArray._check_startable", "ddf-raid5-rebuild", _starts_anyway, "array_state"),
    "recovery-start-not-published": ("SimArray._checkpoint", "imsm-raid5-rebuild", _no_checkpoint, "recovery_start"),
    "recovery-start-keeps-in-sync": (
        "SimArray._write_dev",
        "imsm-raid5-rebuild",
        _recovery_start_keeps_in_sync,
        "sync_action",
    ),
    "raid0-read-auto": ("SimArray._write_array_state", "ddf-raid1-raid0", _raid0_read_auto, "array_state"),
}


@pytest.fixture
def mutation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    target, scenario, replacement, expect = MUTATIONS[request.param]
    cls, attr = target.split(".")
    monkeypatch.setattr({"SimDevice": SimDevice, "SimArray": SimArray}[cls], attr, replacement)
    yield scenario, expect


@pytest.mark.parametrize("mutation", sorted(MUTATIONS), indirect=True)
async def test_a_broken_simulator_is_caught(mutation: tuple[str, str], autojump_clock: trio.testing.MockClock) -> None:
    scenario, expect = mutation
    try:
        r = await _play(scenario)
    except Exception as e:  # a replay that cannot even run is no report
        pytest.fail(f"the mutation broke the replay itself instead of being reported: {e!r}")
    found = [d for x in r.results for d in x.differences]
    assert any(expect in d for d in found), found
