"""The crash harness's scenarios: every change type the daemon makes, on both formats, several geometries.

Each scenario is a sequence of commits as the monitor, the manager and mdadm's
socket would make them, starting from real mdadm images.  ``SCENARIOS`` lists
them all (``scripts/crash-harness`` runs them exhaustively); a new change type
gets its steps here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import formats
from formats.base import write_all
from formats.changes import (
    ActivateSpare,
    AddSpare,
    Change,
    ClearBadBlock,
    EndMigration,
    FailDisk,
    MdadmUpdate,
    MemberInSync,
    RecordBadBlock,
    RemoveDisk,
    SetCheckpoint,
    SetDirty,
    StartResync,
)
from formats.imsm.create import VolumeSpec, create
from formats.model import Container, DiskState, MemberState

from .crash import BlankDisk, Recorder, RecordingDisk, Rig, Scenario, Step, environment
from .golden import disk_count, golden_serial, guest_device, open_disk


# -- rigs ------------------------------------------------------------------------------------------
def golden(fmt: str, scenario: str, blanks: int = 0) -> Callable[[], Rig]:
    """The golden disks of ``scenario``, plus ``blanks`` empty disks of the same size (spares to be)."""

    def build() -> Rig:
        rec = Recorder()
        n = disk_count(scenario)
        disks = [RecordingDisk(open_disk(scenario, i), rec) for i in range(n)]
        h = formats.handler(fmt)
        metadata = h.assemble([h.load(d) for d in disks])
        size = disks[0].size_bytes
        for i in range(n, n + blanks):
            disks.append(RecordingDisk(BlankDisk(guest_device(scenario, i), size, golden_serial(i)), rec))
        return Rig(metadata, disks, rec)

    return build


def created(disks: int, blanks: int, volumes: Callable[[], Sequence[VolumeSpec]]) -> Callable[[], Rig]:
    """An IMSM container ``create`` lays out on ``disks`` blank 64 MiB disks (``blanks`` more), written and read back.

    DDF scenarios start from the goldens, which cover its geometries.
    """

    def build() -> Rig:
        rec = Recorder()
        size = 64 << 20
        all_disks = [
            RecordingDisk(BlankDisk(guest_device("created", i), size, golden_serial(i)), rec)
            for i in range(disks + blanks)
        ]
        h = formats.handler("imsm")
        new = create([(golden_serial(i), size // 512) for i in range(disks)], volumes(), environment())
        for d in all_disks[:disks]:
            assert d.serial is not None
            new.attach(d.serial, d)
        for ref, writes in new.encode().items():
            write_all(new.disks()[ref], writes)
        rec.log.clear()
        return Rig(h.assemble([h.load(d) for d in all_disks[:disks]]), all_disks, rec)

    return build


def rewritten(build: Callable[[], Rig], change: Callable[[Rig], object]) -> Callable[[], Rig]:
    """A rig whose metadata ``change`` replaces (returning it) and writes in full before the scenario starts."""

    def wrapped() -> Rig:
        rig = build()
        new = change(rig)
        assert isinstance(new, type(rig.metadata))
        for ref, writes in new.encode().items():
            write_all(new.disks()[ref], writes)
        rig.recorder.log.clear()
        return Rig(new, rig.disks, rig.recorder)

    return wrapped


# -- steps -----------------------------------------------------------------------------------------
def step(label: str, plan: Callable[[Container, Rig], Sequence[Change]]) -> Step:
    return Step(label, plan)


def dirty(v: int, flag: bool = True) -> Step:
    return step(f"{'dirty' if flag else 'clean'} vol{v}", lambda m, r: [SetDirty(v, flag)])


def fail(v: int, slot: int) -> Step:
    return step(f"fail vol{v} slot {slot}", lambda m, r: [FailDisk(_ref(m, v, slot))])


def add_spare(i: int) -> Step:
    def plan(m: Container, r: Rig) -> list[Change]:
        d = r.disks[i]
        assert d.serial is not None
        return [AddSpare(d.serial, d.size_bytes // 512, d.name, disk=d)]

    return step(f"add spare disk{i}", plan)


def activate(v: int, which: int = 0) -> Step:
    """The ``which``-th spare into the first failed or empty slot of volume ``v``."""

    def plan(m: Container, r: Rig) -> list[Change]:
        vol = m.volume(v)
        slot = next(x.slot for x in vol.members if x.state in (MemberState.FAILED, MemberState.MISSING))
        spares = [d.ref for d in m.disks if d.state is DiskState.SPARE]
        return [ActivateSpare(v, slot, spares[which])]

    return step(f"activate spare {which} in vol{v}", plan)


def activate_onto(v: int, other: int) -> Step:
    """Into the first failed or empty slot of volume ``v``, the disk being rebuilt into volume ``other``.

    One replacement disk serving both matrix volumes: on DDF, the second rebuild is held in
    memory and recorded only once md has it in sync (``DDFContainer.pending``).
    """

    def plan(m: Container, r: Rig) -> list[Change]:
        vol = m.volume(v)
        slot = next(x.slot for x in vol.members if x.state in (MemberState.FAILED, MemberState.MISSING))
        mine = {x.disk_ref for x in vol.members}
        ref = next(
            x.disk_ref for x in m.volume(other).members if x.state is MemberState.REBUILDING and x.disk_ref not in mine
        )
        assert ref is not None
        return [ActivateSpare(v, slot, ref)]

    return step(f"activate vol{other}'s new disk in vol{v}", plan)


def checkpoint(v: int, sectors: int) -> Step:
    return step(f"checkpoint vol{v} at {sectors}", lambda m, r: [SetCheckpoint(v, sectors)])


def in_sync(v: int) -> Step:
    def plan(m: Container, r: Rig) -> list[Change]:
        vol = m.volume(v)
        return [
            MemberInSync(v, x.slot) for x in vol.members if x.state in (MemberState.REBUILDING, MemberState.OUT_OF_SYNC)
        ]

    return step(f"rebuild of vol{v} done", plan)


def resync(v: int) -> Step:
    return step(f"resync vol{v} starts", lambda m, r: [StartResync(v)])


def end(v: int) -> Step:
    return step(f"resync vol{v} ends", lambda m, r: [EndMigration(v)])


def remove_failed() -> Step:
    def plan(m: Container, r: Rig) -> list[Change]:
        used = {x.disk_ref for vol in m.volumes for x in vol.members if x.state is not MemberState.FAILED}
        return [RemoveDisk(d.ref) for d in m.disks if d.state is DiskState.FAILED and d.ref not in used]

    return step("remove failed disks", plan)


def bad_block(v: int, slot: int, clear: bool = False) -> Step:
    def plan(m: Container, r: Rig) -> list[Change]:
        x = m.volume(v).member(slot)
        assert x.disk_ref is not None
        cls = ClearBadBlock if clear else RecordBadBlock
        return [cls(x.disk_ref, x.offset_sectors + 4096, 8)]

    return step(f"{'clear' if clear else 'record'} bad block on vol{v} slot {slot}", plan)


def message(label: str, payloads: Callable[[Container, Rig], Sequence[bytes]]) -> Step:
    return step(label, lambda m, r: [MdadmUpdate(p) for p in payloads(m, r)])


def _ref(m: Container, v: int, slot: int) -> str:
    ref = m.volume(v).member(slot).disk_ref
    assert ref is not None
    return ref


# -- mdadm's socket updates --------------------------------------------------------------------------
def _imsm_updates() -> Scenario:
    from formats.imsm.container import IMSMContainer
    from tests.formats.imsm import helpers as T

    state: dict[str, bytes] = {}

    def before(rig: Rig) -> IMSMContainer:
        after = rig.metadata
        assert isinstance(after, IMSMContainer)
        state["create"] = T.vol1_message(T.real_mpb(rig.disks[0]), after)
        return T.before_state(after, "imsm-raid1")

    return Scenario(
        "imsm-updates",
        "imsm",
        rewritten(golden("imsm", "imsm-two-volumes"), before),
        (
            message("create vol1", lambda m, r: [state["create"]]),
            message("rename vol1", lambda m, r: [T.rename_payload(1, b"data")]),
            message("size change vol1", lambda m, r: [T.size_change_payload(1, 80007)]),
            message("rwh policy vol0", lambda m, r: [T.rwh_payload(0, 1)]),
            message("kill vol1", lambda m, r: [T.kill_payload(1)]),
        ),
    )


def _ddf_updates() -> Scenario:
    from formats.ddf import updates as U
    from formats.ddf.container import DDFContainer
    from tests.formats.ddf import helpers as T

    state: dict[str, list[bytes]] = {}

    def before(rig: Rig) -> DDFContainer:
        after = rig.metadata
        assert isinstance(after, DDFContainer)
        state["create"] = T.creation_messages(after, 1)
        state["guid"] = [after.vd_guid(1)]
        return T.without_volume(after, 1)

    def remove_spare(m: Container, r: Rig) -> list[bytes]:
        c = r.current
        assert isinstance(c, DDFContainer)
        ref = next(d.ref for d in m.disks if d.state is DiskState.SPARE)
        index = c.pd_index(int(ref, 16))
        assert index is not None
        return [U.phys_remove(index)]

    return Scenario(
        "ddf-updates",
        "ddf",
        rewritten(golden("ddf", "ddf-two-volumes", blanks=1), before),
        (
            message("create vol1", lambda m, r: state["create"]),
            dirty(1),
            dirty(1, False),
            message("kill vol1", lambda m, r: [U.virt_delete(state["guid"][0])]),
            add_spare(3),
            message("remove the spare (PHYS_RECORDS)", remove_spare),
        ),
    )


# -- the scenarios ---------------------------------------------------------------------------------
def _rebuild(v: int, spare_disk: int | None, slot: int = 1) -> tuple[Step, ...]:
    """Fail a member, write while degraded, take a spare (added first if ``spare_disk``), rebuild, drop the failed."""
    steps: list[Step] = [fail(v, slot), dirty(v), dirty(v, False)]
    if spare_disk is not None:
        steps.append(add_spare(spare_disk))
    steps += [activate(v), checkpoint(v, 2048), checkpoint(v, 6144), in_sync(v), remove_failed()]
    return tuple(steps)


def all_scenarios() -> list[Scenario]:
    return [
        Scenario(
            "imsm-raid1",
            "imsm",
            golden("imsm", "imsm-raid1", blanks=1),
            (dirty(0), dirty(0, False), *_rebuild(0, 2), dirty(0), dirty(0, False)),
        ),
        Scenario(
            "imsm-raid5",
            "imsm",
            golden("imsm", "imsm-raid5", blanks=1),
            (
                dirty(0),
                bad_block(0, 2),
                dirty(0, False),
                bad_block(0, 2, clear=True),
                resync(0),
                checkpoint(0, 4096),
                end(0),
                *_rebuild(0, 3),
            ),
        ),
        Scenario(
            "imsm-raid5-spare",
            "imsm",
            golden("imsm", "imsm-raid5-spare"),
            (dirty(0), *_rebuild(0, None)),
        ),
        Scenario(
            "imsm-two-volumes",  # a 2-disk container: after a failure one disk carries the only current copy
            "imsm",
            golden("imsm", "imsm-two-volumes", blanks=1),
            (dirty(0), dirty(1), dirty(0, False), dirty(1, False), *_rebuild(0, 2)),
        ),
        Scenario(
            "imsm-raid5-raid1",
            "imsm",
            golden("imsm", "imsm-raid5-raid1", blanks=2),
            (
                dirty(1),
                dirty(1, False),
                fail(1, 0),
                dirty(0),
                add_spare(4),
                add_spare(5),
                step("activate spares in both volumes", _activate_all),
                checkpoint(1, 2048),
                step("rebuilds done", _all_in_sync),
                dirty(0, False),
                remove_failed(),
            ),
        ),
        Scenario(
            # 2 disks, two RAID1: after a failure the survivor alone carries the MPB, and vol1's record lies
            # past the anchor sector, so vol1's dirty/clean rewrites two sectors of the one current copy.  Torn
            # there, that copy fails its checksum and the failed disk's stale copy is the only one left: known
            # open (tests/formats/test_crash.py KNOWN); no order of writes helps with a single carrier.
            "imsm-two-raid1",
            "imsm",
            created(2, 1, _two_raid1),
            (
                dirty(1),
                dirty(1, False),
                fail(0, 1),
                dirty(1),
                dirty(0),
                dirty(1, False),
                add_spare(2),
                activate(0),
                step("the same disk into vol1", _second_volume_too),
                checkpoint(1, 2048),
                step("rebuilds done", _all_in_sync),
                dirty(0, False),
            ),
        ),
        Scenario(
            "imsm-raid10",
            "imsm",
            created(4, 1, lambda: [VolumeSpec("vol0", 10, (0, 1, 2, 3))]),
            (dirty(0), dirty(0, False), *_rebuild(0, 4, slot=2)),
        ),
        _imsm_updates(),
        Scenario(
            "ddf-raid1",
            "ddf",
            golden("ddf", "ddf-raid1", blanks=1),
            (dirty(0), dirty(0, False), *_rebuild(0, 2), dirty(0), dirty(0, False)),
        ),
        Scenario(
            "ddf-raid5",
            "ddf",
            golden("ddf", "ddf-raid5", blanks=1),
            (dirty(0), dirty(0, False), resync(0), checkpoint(0, 4096), end(0), *_rebuild(0, 3)),
        ),
        Scenario(
            "ddf-raid5-spare",
            "ddf",
            golden("ddf", "ddf-raid5-spare"),
            (dirty(0), *_rebuild(0, None)),
        ),
        Scenario(
            "ddf-two-volumes",
            "ddf",
            golden("ddf", "ddf-two-volumes", blanks=2),
            (
                dirty(1),
                fail(1, 0),  # a disk both volumes use
                dirty(0),
                add_spare(3),
                add_spare(4),
                activate(0, 0),
                activate(1, 0),
                in_sync(0),
                in_sync(1),
                dirty(0, False),
                dirty(1, False),
                remove_failed(),
            ),
        ),
        Scenario(
            "ddf-one-spare-two-volumes",  # the spare rebuilds both; vol1's copy ends first, then vol0's
            "ddf",
            golden("ddf", "ddf-two-volumes", blanks=1),
            (
                fail(1, 0),
                add_spare(3),
                activate(0, 0),
                activate_onto(1, 0),
                in_sync(1),
                in_sync(0),
                remove_failed(),
            ),
        ),
        Scenario(
            "ddf-raid10",  # two BVDs (secondary elements): the activation changes one of them
            "ddf",
            golden("ddf", "ddf-raid10", blanks=1),
            (dirty(0), *_rebuild(0, 4, slot=2)),
        ),
        _ddf_updates(),
    ]


def _activate_all(m: Container, r: Rig) -> list[Change]:
    """One spare per degraded volume, in one commit (as the manager batches them)."""
    spares = [d.ref for d in m.disks if d.state is DiskState.SPARE]
    out: list[Change] = []
    for vol in m.volumes:
        for x in vol.members:
            if x.state in (MemberState.FAILED, MemberState.MISSING) and spares:
                out.append(ActivateSpare(vol.index, x.slot, spares.pop(0)))
    return out


def _all_in_sync(m: Container, r: Rig) -> list[Change]:
    return [
        MemberInSync(vol.index, x.slot)
        for vol in m.volumes
        for x in vol.members
        if x.state in (MemberState.REBUILDING, MemberState.OUT_OF_SYNC)
    ]


def _two_raid1() -> list[VolumeSpec]:
    return [VolumeSpec("vol0", 1, (0, 1), 16 * 2048), VolumeSpec("vol1", 1, (0, 1), 16 * 2048)]


def _second_volume_too(m: Container, r: Rig) -> list[Change]:
    """The disk just rebuilding vol0 takes vol1's failed slot as well (IMSM: free space on a member)."""
    ref = next(x.disk_ref for x in m.volume(0).members if x.state is MemberState.REBUILDING)
    slot = next(x.slot for x in m.volume(1).members if x.state in (MemberState.FAILED, MemberState.MISSING))
    assert ref is not None
    return [ActivateSpare(1, slot, ref)]
