"""Replaying a recorded real-kernel transcript (tests/data/transcripts) on the simulated md driver.

``replay(name)`` plays the scenario's actions on a ``SimKernel``, step by step:
what mdadm did (create, write, ``--fail``, ``--stop``, ``--assemble``, ``check``)
is done to the simulator directly, and mdmon's part (answer ``readonly``,
``write-pending``, ``active-idle``, unblock and remove a failed member,
activate the container's spare into its slot) is played by ``MdmonPart``.
After each step the simulator's sysfs text is read the way the test bed read
the kernel's, and ``differences`` compares the two.

What is compared is the kernel's behaviour, not timing: states, geometry,
sync action, degraded count, per-device state/slot, the *form* of progress
(``done / total`` with the same total, ``recovery_start`` equal to the
progress shown beside it) and its monotonicity, never progress values.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from mdmond.kernel.simulated import SimArray, SimKernel
from mdmond.kernel.values import MAX_SECTOR, ArrayState, SyncAction, parse_array_state

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "data" / "transcripts"
SCENARIOS = sorted(p.stem for p in TRANSCRIPTS.glob("*.json"))

#: Compared exactly.
EXACT = ("array_state", "level", "raid_disks", "component_size", "sync_action", "degraded", "consistency_policy")
#: Recorded but not the simulator's business (data, geometry it does not model, udev-less names).
NOT_MODELLED = {
    "mismatch_cnt": "the simulator holds no data: a check cannot find mismatches",
    "chunk_size": "layout is not simulated",
    "reshape_position": "reshape is not simulated",
    "metadata_version": "given by the replay (mdadm writes it)",
    "names": "/dev/md links are mdadm's, not the kernel's",
    "devs/offset": "data offset: written by mdadm from the metadata, stored as given",
    "devs/size": "per-device size: written by mdadm from the metadata, stored as given",
    "containers": "a container is not a SimArray: SimKernel only lists its disks in /proc/mdstat",
    "mdstat": "/proc/mdstat text: its numbers are timing (speed, finish) and its layout line is per level",
}
#: Recorded sync speeds (the scenario throttles recovery), sectors per second.
THROTTLED = 2000  # 1000 KB/s
THROTTLED_ASSEMBLY = 400  # 200 KB/s


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TRANSCRIPTS / f"{name}.json").read_text())
    return data


def volume_name(array: dict[str, Any]) -> str:
    """``/dev/md/vol0_0`` -> ``vol0`` (mdadm appends ``_N`` on re-assembly without udev)."""
    return str(array["names"][0]).rsplit("/", 1)[1].split("_")[0]


def volumes(step: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The member arrays of a step, by volume name: (kernel name, attributes)."""
    return {
        volume_name(a): (kname, a)
        for kname, a in step["arrays"].items()
        if str(a["metadata_version"]).startswith("external:/")
    }


def container_devs(step: dict[str, Any]) -> list[str]:
    return sorted(
        d for a in step["arrays"].values() if not str(a["metadata_version"]).startswith("external:/") for d in a["devs"]
    )


# -- reading the simulator as the test bed read the kernel ------------------------------


def observe(a: SimArray) -> dict[str, Any] | None:
    """The sysfs text of one simulated array, missing attributes as None; None when stopped."""
    if a.array_state is ArrayState.CLEAR:
        return None

    def attr(name: str) -> str | None:
        try:
            return a.read(name).rstrip("\n")
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise

    out: dict[str, Any] = {k: attr(k) for k in (*EXACT, "sync_completed", "resync_start")}
    out["devs"] = {e[4:]: {k: attr(f"{e}/{k}") for k in ("state", "slot", "recovery_start")} for e in a.devices()}
    return out


def _done(sync_completed: str | None) -> int | None:
    if sync_completed is None or "/" not in sync_completed:
        return None
    return int(sync_completed.split("/")[0])


def _form(sync_completed: str | None) -> str | tuple[str, int]:
    """``done / total`` -> ("progress", total); anything else as it is."""
    if sync_completed is None or "/" not in sync_completed:
        return str(sync_completed)
    done, total = (int(x) for x in sync_completed.split("/"))
    assert 0 <= done <= total, sync_completed
    return ("progress", total)


def differences(recorded: dict[str, Any] | None, simulated: dict[str, Any] | None) -> list[str]:
    """What the simulator shows differently from the kernel, one line each."""
    if recorded is None or simulated is None:
        return (
            []
            if recorded is simulated
            else [f"array: recorded {recorded is not None}, simulated {simulated is not None}"]
        )
    out = [f"{k}: kernel {recorded[k]!r}, simulator {simulated[k]!r}" for k in EXACT if recorded[k] != simulated[k]]
    if _form(recorded["sync_completed"]) != _form(simulated["sync_completed"]):
        out.append(
            f"sync_completed form: kernel {recorded['sync_completed']!r}, simulator {simulated['sync_completed']!r}"
        )
    rs_k, rs_s = recorded["resync_start"], simulated["resync_start"]
    if recorded["sync_action"] == "resync":
        if rs_k.isdigit() != rs_s.isdigit():
            out.append(f"resync_start form: kernel {rs_k!r}, simulator {rs_s!r}")
    elif rs_k != rs_s:
        out.append(f"resync_start: kernel {rs_k!r}, simulator {rs_s!r}")
    if sorted(recorded["devs"]) != sorted(simulated["devs"]):
        out.append(f"devices: kernel {sorted(recorded['devs'])}, simulator {sorted(simulated['devs'])}")
        return out
    for dev, kd in recorded["devs"].items():
        sd = simulated["devs"][dev]
        for k in ("state", "slot"):
            if kd[k] != sd[k]:
                out.append(f"dev-{dev}/{k}: kernel {kd[k]!r}, simulator {sd[k]!r}")
        out += _recovery_start(dev, kd["recovery_start"], recorded, sd["recovery_start"], simulated)
    return out


def _recovery_start(dev: str, k: str, recorded: dict[str, Any], s: str, simulated: dict[str, Any]) -> list[str]:
    """A recovering device's ``recovery_start`` is the progress shown beside it; otherwise exact."""
    if recorded["sync_action"] == "recover" and k.isdigit():
        # the kernel's own data says so; the simulator must say the same of itself
        assert int(k) == _done(recorded["sync_completed"]), (dev, k, recorded["sync_completed"])
        if not (s.isdigit() and int(s) == _done(simulated["sync_completed"])):
            return [f"dev-{dev}/recovery_start: {s!r} is not the progress shown ({simulated['sync_completed']!r})"]
        return []
    return [] if k == s else [f"dev-{dev}/recovery_start: kernel {k!r}, simulator {s!r}"]


# -- mdmon's part -----------------------------------------------------------------------


@dataclass
class MdmonPart:
    """What stock mdmon did in the transcripts, reduced to its sysfs writes (mdmon.md §2.3-§2.5)."""

    imsm: bool
    spares: list[str] = field(default_factory=list)  # the container's spare disks, in order

    async def serve(self, a: SimArray, *, consistent: bool) -> None:
        while True:
            st = parse_array_state(a.read("array_state"))
            if st is ArrayState.CLEAR:
                return
            if st is ArrayState.READONLY:
                a.write("array_state", "read-auto" if consistent else "active")
            elif st is ArrayState.WRITE_PENDING:
                a.write("array_state", "active")
            elif st is ArrayState.ACTIVE_IDLE:
                a.write("array_state", "clean")
            for entry in a.devices():
                try:
                    state = a.read(f"{entry}/state").strip().split(",")
                    slot = a.read(f"{entry}/slot").strip()
                except OSError:
                    continue
                if "faulty" in state and "blocked" in state:
                    a.write(f"{entry}/state", "-blocked")
                elif "faulty" in state and slot == "none" and st.running:
                    a.write(f"{entry}/state", "remove")
                    self._activate_spare(a)
            await a.wait_change()

    def _activate_spare(self, a: SimArray) -> None:
        free = sorted(set(range(a.raid_disks)) - {d.slot for d in a.devs.values() if d.slot is not None})
        if not free or not self.spares or a.array_state in (ArrayState.READONLY, ArrayState.READ_AUTO):
            return
        dev = self.spares.pop(0)
        a.add_spare(dev)
        if self.imsm:
            a.write(f"dev-{dev}/state", "external_bbl")
        a.write(f"dev-{dev}/slot", str(free[0]))
        a.write("sync_action", "recover")


# -- the replay ---------------------------------------------------------------------------


@dataclass
class StepResult:
    step: str
    volume: str
    recorded: dict[str, Any] | None
    simulated: dict[str, Any] | None
    differences: list[str]


@dataclass
class Replay:
    name: str
    data: dict[str, Any]
    nursery: trio.Nursery
    kernel: SimKernel = field(default_factory=SimKernel)
    arrays: dict[str, SimArray] = field(default_factory=dict)  # by volume name
    results: list[StepResult] = field(default_factory=list)
    history: dict[str, list[ArrayState]] = field(default_factory=dict)
    check_refused: dict[str, bool] = field(default_factory=dict)  # volume -> sync_action write was ENOENT
    checkpoint: dict[str, dict[str, int]] = field(default_factory=dict)  # volume -> dev -> recovery_start at stop

    def __post_init__(self) -> None:
        self.imsm = self.name.startswith("imsm")
        self.mdmon = MdmonPart(self.imsm)

    # mdadm's part

    def start(
        self,
        volume: str,
        kname: str,
        *,
        level: int,
        component_size: int,
        slots: dict[str, int | None],
        in_sync: set[str],
        recovery: dict[str, int],
        resync_start: int | None,
        consistent: bool,
        speed: int | None = None,
        start_dirty_degraded: bool = False,
    ) -> SimArray:
        order = sorted(slots, key=lambda d: (slots[d] is None, slots[d] or 0))
        a = SimArray(
            kname,
            state=ArrayState.INACTIVE,
            level=level,
            devices=order,
            component_sectors=2 * component_size,
            resync_start=resync_start,
        )
        a.start_dirty_degraded = start_dirty_degraded
        if speed:
            a.sync_speed = speed
        # What mdadm writes into the inactive array before starting it (sysfs_set_array, sysfs_add_disk).
        for d in order:
            a.write(f"dev-{d}/slot", "none" if slots[d] is None else str(slots[d]))
            if d not in in_sync:
                a.write(f"dev-{d}/recovery_start", str(recovery.get(d, 0)))
            if self.imsm:
                a.write(f"dev-{d}/state", "external_bbl")
        a.raid_disks = max((s for s in slots.values() if s is not None), default=-1) + 1  # no sysfs write simulated
        self.kernel.add_array(a)
        self.arrays[volume] = a
        self.history[volume] = a.history
        try:
            a.write("array_state", "readonly")  # mdadm starts every member readonly
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            return a  # refused: stays inactive
        self.nursery.start_soon(a.run)
        self.nursery.start_soon(lambda: self.mdmon.serve(a, consistent=consistent))
        return a

    async def settle(self, *, limit: float = 600) -> None:
        """Until every running array is idle and clean (or read-auto), as mdadm --wait-clean waits."""
        with trio.fail_after(limit):
            while True:
                await trio.sleep(0.5)
                busy = [
                    a
                    for a in self.arrays.values()
                    if a.array_state.running
                    and (
                        a.sync_action is not SyncAction.IDLE
                        or a.array_state not in (ArrayState.CLEAN, ArrayState.READ_AUTO)
                    )
                ]
                if not busy:
                    return

    async def progress(self, volume: str, at_least: int) -> None:
        a = self.arrays[volume]
        with trio.fail_after(600):
            while a.sync_done is None or a.sync_done < at_least:
                await trio.sleep(0.05)

    def stop(self, volume: str) -> None:
        a = self.arrays[volume]
        a.write("array_state", "clear")
        self.checkpoint[volume] = {d.name: d.recovery_start for d in a.devs.values()}

    async def write_all(self) -> None:
        async with trio.open_nursery() as n:
            for a in self.arrays.values():
                if a.array_state.running:
                    n.start_soon(a.submit_write, 0.01)

    def sync_request(self, action: str) -> None:
        for vol, a in self.arrays.items():
            if not a.array_state.running:
                continue
            try:
                a.write("sync_action", action)
                self.check_refused[vol] = False
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
                self.check_refused[vol] = True

    # comparing

    def compare(self, step: dict[str, Any]) -> None:
        rec = volumes(step)
        for vol in sorted(set(rec) | set(self.arrays)):
            recorded = rec[vol][1] if vol in rec else None
            simulated = observe(self.arrays[vol]) if vol in self.arrays else None
            self.results.append(StepResult(step["step"], vol, recorded, simulated, differences(recorded, simulated)))


Play = Callable[[Replay, dict[str, Any], dict[str, Any]], Any]


async def replay(name: str) -> Replay:
    """Play one transcript on the simulator; the results are compared, step by step, in ``results``."""
    data = load(name)
    steps = {s["step"]: s for s in data["steps"]}
    async with trio.open_nursery() as nursery:
        r = Replay(name, data, nursery)
        created = volumes(steps["created"])
        r.kernel.add_container("md127", "imsm" if r.imsm else "ddf", container_devs(steps["created"]))
        members = {d for _, a in created.values() for d in a["devs"]}
        r.mdmon.spares = sorted(set(container_devs(steps["created"])) - members)
        for step in data["steps"]:
            play = STEPS.get(step["step"])
            if play is None:
                raise AssertionError(f"{name}: step {step['step']!r} has no replay")
            await play(r, step, steps)
            r.compare(step)
        for a in r.arrays.values():
            if a.array_state is not ArrayState.CLEAR:
                a.write("array_state", "clear")
    return r


# The steps, by name (testbed/guest/transcripts.sh).


async def _created(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    # What mdadm was asked to create: level, members and their slots, size; new volumes need a resync.
    for vol, (kname, a) in volumes(step).items():
        level = int(a["level"].removeprefix("raid"))
        r.start(
            vol,
            kname,
            level=level,
            component_size=int(a["component_size"]),
            slots={d: int(v["slot"]) for d, v in a["devs"].items()},
            in_sync=set(a["devs"]),
            recovery={},
            resync_start=None if level == 0 else 0,
            consistent=level == 0,
        )
    await r.settle()


async def _settled(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    await r.settle()


async def _written(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    for _ in range(4):
        await r.write_all()
    await r.settle()


async def _after_write(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    a = r.arrays["vol0"]
    before = len(a.history)
    await a.submit_write(0.001)
    await r.settle()
    r.results.append(
        StepResult(
            "array_state_trace",
            "vol0",
            {"trace": [e["state"] for e in r.data["array_state_trace"]]},
            {"trace": [s.value for s in a.history[before - 1 :]]},
            [],
        )
    )


async def _checked(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    r.sync_request("check")
    await r.settle()


async def _repaired(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    r.sync_request("repair")
    await r.settle()
    r.sync_request("check")
    await r.settle()


async def _stopped(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    for vol, a in r.arrays.items():
        if a.array_state is not ArrayState.CLEAR:
            r.stop(vol)
    await trio.sleep(0.1)


async def _failed(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    a = r.arrays["vol0"]
    a.sync_speed = THROTTLED
    failed = next(d.name for d in a.devs.values() if d.slot == 1)  # the scenario fails disk 1
    a.fail_device(failed)
    await r.progress("vol0", 1)


async def _rebuilding(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    a = r.arrays["vol0"]
    assert a.sync_done is not None
    await r.progress("vol0", a.sync_done + 1)


async def _half_rebuilt(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    await r.progress("vol0", r.arrays["vol0"].component_sectors // 2)


async def _volume_stopped(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    r.stop("vol0")
    await trio.sleep(0.1)


def _assemble_as_stopped(r: Replay, step: dict[str, Any], *, consistent: bool, speed: int | None = None) -> None:
    """mdadm --assemble: every volume again, as the simulator left it at the stop (its own checkpoint)."""
    rec = volumes(step)
    for vol, old in list(r.arrays.items()):
        kname = rec[vol][0] if vol in rec else old.name
        rs = r.checkpoint.get(vol, {})
        members = {d.name: d.slot for d in old.devs.values() if "faulty" not in d.flags}
        r.start(
            vol,
            kname,
            level=old.level,
            component_size=old.component_sectors // 2,
            slots=members,
            in_sync={d for d in members if rs.get(d, MAX_SECTOR) == MAX_SECTOR},
            recovery={d: p for d, p in rs.items() if p != MAX_SECTOR},
            resync_start=old.resync_start,
            consistent=consistent and old.degraded == 0,
            speed=speed,
        )


async def _assembled(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    if "rebuilding" not in steps:
        _assemble_as_stopped(r, step, consistent=True)  # stopped clean: mdmon's handler says consistent
    elif r.imsm:
        # IMSM records the rebuild's checkpoint; the degraded volume is reported dirty to mdmon.
        _assemble_as_stopped(r, step, consistent=False, speed=THROTTLED_ASSEMBLY)
    else:
        # DDF recorded the stop as "Degraded, Not Consistent" and mdadm leaves the rebuilding disk
        # out (metadata decisions, not the kernel's): a dirty degraded RAID5 on two members.
        kname, a = volumes(step)["vol0"]
        old = r.arrays["vol0"]
        r.start(
            "vol0",
            kname,
            level=old.level,
            component_size=old.component_sectors // 2,
            slots={d: int(v["slot"]) for d, v in a["devs"].items()},
            in_sync=set(a["devs"]),
            recovery={},
            resync_start=0,
            consistent=False,
        )
    await trio.sleep(0.5)


async def _assembled_1s(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    await trio.sleep(1)


async def _forced(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    # mdadm --stop; start_dirty_degraded=1; mdadm --assemble --scan --force --run: mdadm's --force
    # rewrote the metadata (all three members in sync, consistent); mdmon then wrote active.
    kname, a = volumes(step)["vol0"]
    old = r.arrays["vol0"]
    old.write("array_state", "clear")
    r.start(
        "vol0",
        kname,
        level=old.level,
        component_size=old.component_sectors // 2,
        slots={d: int(v["slot"]) for d, v in a["devs"].items()},
        in_sync=set(a["devs"]),
        recovery={},
        resync_start=MAX_SECTOR,
        consistent=False,
        start_dirty_degraded=True,
    )
    await r.settle()


async def _rebuilt(r: Replay, step: dict[str, Any], steps: dict[str, Any]) -> None:
    for a in r.arrays.values():
        a.sync_speed = 200000 * 2
        a.write("safe_mode_delay", "0.2")
    await r.settle()


STEPS: dict[str, Callable[[Replay, dict[str, Any], dict[str, Any]], Any]] = {
    "created": _created,
    "resynced": _settled,
    "written": _written,
    "after-write": _after_write,
    "checked": _checked,
    "stopped": _stopped,
    "assembled": _assembled,
    "failed": _failed,
    "rebuilding": _rebuilding,
    "half-rebuilt": _half_rebuilt,
    "volume-stopped": _volume_stopped,
    "assembled-1s": _assembled_1s,
    "forced": _forced,
    "rebuilt": _rebuilt,
    "settled": _settled,
    "corrupted-checked": _checked,
    "repaired": _repaired,
}
