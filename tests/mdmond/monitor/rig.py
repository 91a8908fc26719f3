"""A monitor under test: a simulated md array over real IMSM metadata (golden images, copy-on-write).

``CheckedArray`` checks the ordering invariants at the moment they matter,
reading the metadata back from the disks as mdadm would:

* when ``active`` is written, every disk already says the volume is dirty;
* when ``-blocked`` is written, every disk already records the member failed
  or, for a working member held for bad blocks, every one of its bad blocks;
* when a bad block is acknowledged (``bad_blocks``), every disk records it;
* whenever metadata is written, a clean record never lands while md is
  active (writes may be in flight).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import formats
from formats.base import FormatHandler
from formats.blockio import OverlayDisk
from formats.changes import Environment
from formats.model import Container, MemberState
from mdmond.kernel.simulated import SimArray
from mdmond.kernel.values import MAX_SECTOR, ArrayState
from mdmond.metadata import MetadataStore
from mdmond.monitor.container import ContainerMonitor, Request
from tests.golden import disk_count, overlay


def on_disk(h: FormatHandler, disks: list[OverlayDisk]) -> Container:
    """The container as mdadm would read it back from the disks now."""
    return h.assemble([h.load(d) for d in disks]).model()


class CheckedArray(SimArray):
    def __init__(self, name: str, h: FormatHandler, disks: list[OverlayDisk], volume: int, **kw: object) -> None:
        super().__init__(name, **kw)  # type: ignore[arg-type]
        self.handler = h
        self.disks = disks
        self.volume = volume
        self.violations: list[str] = []
        self.refs: dict[str, str] = {}  # device name -> disk ref

    def on_disk(self) -> Container:
        return on_disk(self.handler, self.disks)

    def bad_blocks_on_disk(self, dev: str) -> set[tuple[int, int]]:
        """The BBM log's ranges for the device's disk, as mdadm would read them back (IMSM only)."""
        c = self.handler.assemble([self.handler.load(d) for d in self.disks])
        mpb = getattr(c, "mpb", None)
        if mpb is None or mpb.bbm is None:
            return set()
        idx = next((i for i, d in enumerate(mpb.disks) if d.serial_text == self.refs.get(dev)), -1)
        return {(e.start, e.marked_count + 1) for e in mpb.bbm.entries if e.disk_ordinal == idx}

    def write(self, attr: str, value: str) -> None:
        if attr == "array_state" and value == "active" and not self.on_disk().volume(self.volume).dirty:
            self.violations.append("active written before the dirty record was on disk")
        if attr.endswith("/bad_blocks") and attr.startswith("dev-"):
            dev = attr[4:].split("/")[0]
            sector, length = (int(x) for x in value.split())
            if (sector, length) not in self.bad_blocks_on_disk(dev):
                self.violations.append(f"bad block {value} of {dev} acknowledged before it was on disk")
        if attr.endswith("/state") and value == "-blocked" and "faulty" not in self._dev(attr[4:].split("/")[0]).flags:
            d = self._dev(attr[4:].split("/")[0])
            if d.unacked and "external_bbl" in d.flags:
                self.violations.append(f"-blocked written to {d.name} with bad blocks unacknowledged")
            if not set(d.acked) <= self.bad_blocks_on_disk(d.name):
                self.violations.append(f"-blocked written to {d.name} before its bad blocks were on disk")
        elif attr.endswith("/state") and value == "-blocked":
            dev = attr[4:].split("/")[0]
            vol = self.on_disk().volume(self.volume)
            if any(m.disk_ref == self.refs.get(dev) and m.state is not MemberState.FAILED for m in vol.members):
                self.violations.append(f"-blocked written to {dev} before its failure was on disk")
        super().write(attr, value)


@dataclass
class Rig:
    disks: list[OverlayDisk]
    store: MetadataStore
    md: CheckedArray
    monitor: ContainerMonitor
    requests: list[Request] = field(default_factory=list)
    fail_writes: list[int] = field(default_factory=list)  # commits (counted from now) whose disk write fails

    def model(self) -> Container:
        return on_disk(self.md.handler, self.disks)


def make_rig(
    scenario: str,
    *,
    volume: int = 0,
    state: ArrayState = ArrayState.CLEAN,
    resync_start: int = MAX_SECTOR,
    safe_mode_delay: float = 5.0,
    checkpoint_interval: float = 1.0,
    sync_speed: int = 20480,
) -> Rig:
    disks = [overlay(scenario, n) for n in range(disk_count(scenario))]
    env = Environment(now=lambda: 1_800_000_000.0, rng=random.Random(7))
    rig: Rig
    violations: list[str] = []

    async def checked_write(fn: Callable[[], None]) -> None:
        if rig.fail_writes and rig.fail_writes[0] == 0:
            rig.fail_writes.pop(0)
            from formats.errors import DiskIOError

            raise DiskIOError("injected metadata write failure", disk=disks[0].name)
        rig.fail_writes[:] = [n - 1 for n in rig.fail_writes]
        fn()
        vol = on_disk(h, disks).volume(volume)
        if not vol.dirty and rig.md.array_state in (ArrayState.ACTIVE, ArrayState.ACTIVE_IDLE):
            violations.append(f"clean recorded while md is {rig.md.array_state.value}")

    h = formats.handler(scenario.split("-")[0])
    metadata = h.assemble([h.load(d) for d in disks])
    store = MetadataStore(metadata, env=env, runner=checked_write)
    model = store.model()
    vol = model.volume(volume)
    names = [(model.disk(m.disk_ref).path or "").removeprefix("/dev/") if m.disk_ref else "" for m in vol.members]
    md = CheckedArray(
        "md126",
        h,
        disks,
        volume,
        state=state,
        level=vol.level,
        devices=names,
        component_sectors=vol.component_sectors,
        resync_start=resync_start,
        safe_mode_delay=safe_mode_delay,
        sync_speed=sync_speed,
    )
    md.violations = violations
    for m, name in zip(vol.members, names, strict=True):
        if m.disk_ref:
            md.refs[name] = m.disk_ref
        if m.state is MemberState.REBUILDING:
            d = md.devs[name]
            d.flags.discard("in_sync")
            cp = vol.migration.checkpoint_sectors if vol.migration else None
            d.recovery_start = cp or 0
    requests: list[Request] = []
    monitor = ContainerMonitor(store, checkpoint_interval=checkpoint_interval, on_request=requests.append)
    monitor.adopt(md, volume)
    rig = Rig(disks, store, md, monitor, requests)
    return rig
