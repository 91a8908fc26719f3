"""The manager: everything about a container that may block or allocate, beside its monitor.

It follows ``/proc/mdstat`` (md's event counter wakes it), adopts the
container's member arrays (opening their attributes ahead of the monitor's
first read), removes failed members from a worker thread (``remove`` can block
in the kernel), and activates spares in mdmon's order (mdmon.md §3.5):

1. only when no failed member of the array awaits removal, the array is not
   frozen (mdadm's ``external:-`` flag, or a sync running) and no metadata
   update is queued, since a queued update may be the assignment that decides;
2. freeze (``sync_action`` = ``frozen``), then ``new_dev``, the member's
   offset and size, for an array md runs with a partial parity log the
   member's log (``ppl_sector``, ``ppl_size``: md refuses a PPL array's slot
   to a device without one), then its ``slot``; a disk md refuses is reported
   once (``spare-refused``) and not offered to that array again until it
   leaves the container (a bitmap array needs nothing per member: md writes
   its bitmap to the new member itself);
3. the assignment goes through the update queue and is on every disk;
4. only then ``recover``.

Recovery resume at start-up (seeds.md §1): an array found in the middle of a
rebuild gets the disk that was being rebuilt back into its slot *before* the
monitor first marks the array active.  The stored checkpoint is written to
``recovery_start`` only when the assignment is certain: the metadata names the
disk (by serial, not by position) in that slot as rebuilding, the disk is
present, and re-activating it would change nothing in the metadata.  Then
every rebuilding member of the migration resumes from the checkpoint (they
were rebuilt together, so the one checkpoint covers each) — where mdmon gives
up as soon as two devices rebuild.  Anything else rebuilds from 0.

Disks added to or removed from the container (mdmon's ``manage_container``,
mdmon.md §3.6): the container's line in ``/proc/mdstat`` lists its disks; the
set seen at start-up is the baseline.  A disk that appears is opened read-write
off the event loop and, unless the metadata already names it, joins as a spare
in one update that also carries the open disk, so its own metadata is written
with the record on the others (mdadm writes none while a monitor runs); then
every array is checked for a slot it could fill.  A disk that leaves is
dropped from the records (a spare, or a failed disk; the format refuses one
still working in a volume, which is only reported) and closed.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from functools import partial

import trio

import formats
from formats.blockio import Disk, FileDisk
from formats.changes import ActivateSpare, AddSpare, RemoveDisk
from formats.errors import ChangeRejected, DiskIOError, MetadataError
from formats.model import Container, DiskState, MemberState, MigrationType, PplArea, Volume, VolumeState
from formats.model import Disk as NamedDisk  # a disk the metadata names (blockio.Disk is one to read and write)

from .events import EventLog
from .kernel.interface import Kernel, ManagedArray
from .kernel.mdstat import parse_mdstat
from .kernel.snapshot import read_snapshot
from .kernel.values import SyncAction
from .metadata import CommitFailed, Runner, in_thread
from .monitor.container import ContainerMonitor, Request

#: Levels with nothing to monitor (mdmon.md §3.4).
UNMONITORED = ("raid0", "linear")
#: safe_mode_delay below this is a restart's leftover: pick our own (mdmon.md §3.4).
MIN_SAFE_MODE = 0.05
DEFAULT_SAFE_MODE = 4.0
#: Retry delay for deferred work (a removal refused with EBUSY, a frozen array).
RETRY = 0.1
#: The unit of ``AddSpare.size_sectors`` (mdadm's ``size /= 512``, whatever the disk's sector size).
SECTOR = 512


class ContainerReload(Exception):
    """The container's disks changed in a way only a reload from all of them can follow."""


def open_container_disk(dev: str) -> Disk:
    """A disk just added to the container, by kernel name: read-write (block devices also ``O_DIRECT``).

    It stays open for the life of the service, as the disks found at start-up
    do, so no metadata write ever has to open a file.  May block.
    """
    path = "/dev/" + dev.replace("!", "/")  # the kernel's cciss!c0d0 is /dev/cciss/c0d0
    return FileDisk(path, writable=True, name=path)


class Manager:
    """Manages one container's arrays for its monitor."""

    def __init__(
        self,
        container: str,
        kernel: Kernel,
        monitor: ContainerMonitor,
        *,
        events: EventLog | None = None,
        runner: Runner = in_thread,
        open_disk: Callable[[str], Disk] = open_container_disk,
    ):
        self.container = container
        self._open_disk = open_disk
        self._run_blocking = runner  # where calls that may block in the kernel run
        self.kernel = kernel
        self.monitor = monitor
        self.store = monitor.store
        self.events = events or monitor.events
        self.arrays: dict[str, ManagedArray] = {}
        self.volumes: dict[str, int] = {}
        self.pending: list[Request] = []
        self._woken = trio.Event()
        self._retry_at = float("inf")
        self.scans = 0
        self.adopting = True
        #: Disks of ours udev saw leave (kernel name -> disk ref), to recognise them if they come back.
        self.vanished: dict[str, str | None] = {}
        #: The container's disks as last seen in /proc/mdstat (None until the first scan: the baseline).
        self.container_disks: set[str] | None = None
        #: Per array, the disks (refs) md or the format refused as its spare: never offered again, so a
        #: refusal is reported once instead of retried for ever; forgotten when the disk leaves.
        self.refused: dict[str, set[str]] = {}
        monitor.on_request = self.request

    # -- requests from the monitor and the control socket ---------------------------

    def request(self, r: Request) -> None:
        if r not in self.pending:
            self.pending.append(r)
        self._woken.set()

    async def ping(self) -> None:
        """mdadm's "ping manager": re-scan now and do what is due."""
        await self.scan()
        await self.handle()

    # -- the loop ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.scan()
        task_status.started()
        async with trio.open_nursery() as n:
            n.start_soon(self._watch_mdstat)
            n.start_soon(self._watch_disks)
            while True:
                self._woken = trio.Event()
                await self.handle()
                with trio.move_on_at(self._retry_at):
                    await self._woken.wait()

    async def _watch_mdstat(self) -> None:
        while True:
            await self.kernel.wait_mdstat()
            await self.scan()
            self._woken.set()

    async def _watch_disks(self) -> None:
        """Follow disks coming and going (udev), so a vanished member is failed before I/O finds out."""
        try:
            async for e in self.kernel.block_events():
                if e.action == "remove":
                    self._disk_vanished(e.device)
                elif e.action == "add":
                    self._disk_appeared(e.device, e.serial)
        except OSError as e:
            # No uevent socket (a container without netlink): md's own I/O errors remain the path.
            self.events.emit("disk-watch-unavailable", error=str(e))

    def _disk_vanished(self, dev: str) -> None:
        """A disk of ours left the system: fail it in every array it serves (mdadm's udev rule does
        ``mdadm -If``; mdmon waits for I/O to fail).  The monitor then records the failure on the
        remaining disks before md lets writes go on, as for any failure."""
        holding = [name for name, md in self.arrays.items() if f"dev-{dev}" in md.devices()]
        ours = holding or (self.container_disks is not None and dev in self.container_disks)
        if not ours:
            return
        ref = self._ref_of(dev)
        self.vanished[dev] = ref
        self.events.emit("device-disappeared", device=dev, disk=ref, arrays=holding)
        for name in holding:
            try:
                self.arrays[name].write(f"dev-{dev}/state", "faulty")
            except OSError as e:
                self.events.emit("attr-write-failed", array=name, attr=f"dev-{dev}/state", error=str(e))

    def _disk_appeared(self, dev: str, serial: str | None) -> None:
        """A disk of ours that vanished came back: reported, never trusted again on its own say-so.

        Its own copy of the metadata is older than the others' (which record it
        failed, or no longer name it once it was replaced); it rejoins only the
        way any disk does, when mdadm adds it to the container.
        """
        gone = next((d for d, ref in self.vanished.items() if d == dev or (serial and serial == ref)), None)
        if gone is None:
            return
        ref = self.vanished.pop(gone)
        disk = next((d for d in self.store.model().disks if d.ref == ref), None)
        recorded = disk.state.value if disk is not None else "not in the metadata any more"
        self.events.emit("device-reappeared", device=dev, disk=ref, recorded=recorded)

    def stop_adopting(self) -> None:
        """SIGTERM (mdmon.md §1.7): adopt nothing new; make the arrays go clean quickly."""
        self.adopting = False
        for md in self.arrays.values():
            with contextlib.suppress(OSError):
                md.write_once("safe_mode_delay", "0.001")
        self._woken.set()

    async def scan(self) -> None:
        """Adopt the container's new member arrays; forget the ones that are gone."""
        self.scans += 1
        seen = set()
        disks: set[str] | None = None
        for e in parse_mdstat(self.kernel.mdstat()):
            if e.name == self.container:
                disks = {d.name for d in e.devices}
            if e.container != self.container:
                continue
            seen.add(e.name)
            if e.name in self.arrays or not e.active or e.level in (None, *UNMONITORED) or e.subarray is None:
                continue
            if not self.adopting:
                continue
            if not e.subarray.isdigit():
                continue
            await self._adopt(e.name, int(e.subarray))
        for name in set(self.arrays) - seen:
            del self.arrays[name]
            self.volumes.pop(name, None)
            self.refused.pop(name, None)
        if disks is not None:
            await self._follow_container(disks)

    async def _adopt(self, name: str, volume: int) -> None:
        try:
            md = self.kernel.open_array(name)
            self.store.model().volume(volume)
        except (OSError, KeyError, IndexError) as e:
            self.events.emit("adopt-failed", array=name, volume=volume, error=str(e))
            return
        self._set_safe_mode(md)
        self.arrays[name] = md
        self.volumes[name] = volume
        self._resume_rebuild(name, md, volume)
        self.monitor.adopt(md, volume)
        self.events.emit("array-adopted", array=name, volume=volume)
        self.request(Request("spare", name, volume))  # missing slots at start-up

    # -- disks added to and removed from the container (mdmon.md §3.6) ---------------

    async def _follow_container(self, disks: set[str]) -> None:
        if self.container_disks is None:
            self.container_disks = set(disks)  # start-up: the loader read every one of them
            return
        # The baseline moves before anything is awaited, so a concurrent scan (a ping) sees no change.
        removed = sorted(self.container_disks - disks)
        added = sorted(disks - self.container_disks)
        self.container_disks = set(disks)
        for dev in removed:
            await self._disk_left(dev)
        joined = False
        for dev in added:
            joined |= await self._disk_joined(dev)
        if joined:
            for name, volume in self.volumes.items():
                self.request(Request("spare", name, volume))

    def _ref_of(self, dev: str) -> str | None:
        path = "/dev/" + dev.replace("!", "/")
        return next((d.ref for d in self.store.model().disks if d.path == path), None)

    async def _disk_joined(self, dev: str) -> bool:
        """Record a disk mdadm added to the container as a spare, its own metadata written too."""
        if (ref := self._ref_of(dev)) is not None:
            self.events.emit("container-disk-known", device=dev, disk=ref)
            return False
        box: list[Disk] = []
        try:
            await self._run_blocking(lambda: box.append(self._open_disk(dev)))
        except (DiskIOError, OSError) as e:
            assert self.container_disks is not None
            self.container_disks.discard(dev)  # tried again at the next change of /proc/mdstat
            self.events.emit("container-disk-open-failed", device=dev, error=str(e))
            return False
        disk = box[0]
        if await self._names_ours(disk):
            # One of our own disks arriving late (mdadm -I adds a container's disks one by one):
            # its metadata is this container's and names a disk we hold no copy of.  Recording it
            # as a new spare would give it a second identity; the service reloads instead, from
            # every disk now in the container (the newest copy wins, as at assembly).
            await self._close(disk)
            self.events.emit("container-disk-member", device=dev, action="reload")
            raise ContainerReload(f"{dev} carries this container's metadata")
        if not disk.serial:
            self.events.emit("container-disk-refused", device=dev, error="the disk reports no serial number")
            await self._close(disk)
            return False
        size = disk.size_bytes // SECTOR
        try:
            await self.monitor.queue.submit([AddSpare(disk.serial, size, disk.name, disk=disk)])
        except (ChangeRejected, MetadataError, CommitFailed, DiskIOError, OSError) as e:
            # Already recorded (a failed member re-added), too small, wrong sector size ...
            self.events.emit("container-disk-refused", device=dev, serial=disk.serial, error=str(e))
            await self._close(disk)
            return False
        self.events.emit(
            "container-disk-added", device=dev, disk=self._ref_of(dev), serial=disk.serial, size_sectors=size
        )
        return True

    async def _names_ours(self, disk: Disk) -> bool:
        """The disk's own metadata belongs to this container and names a disk we have no copy of."""
        model = self.store.model()
        box: list[Container] = []

        def work() -> None:
            h = formats.handler(model.format)
            box.append(h.assemble([h.load(disk)]).model())

        try:
            await self._run_blocking(work)
        except (MetadataError, DiskIOError, OSError):
            return False  # no metadata, another format, unreadable: a new disk
        own = box[0]
        ref = next((d.ref for d in own.disks if d.path == disk.name), None)
        ours = next((d for d in model.disks if d.ref == ref), None)
        return own.identity == model.identity and ours is not None and ours.path is None

    async def _disk_left(self, dev: str) -> None:
        """Drop a disk that left the container from the records, then let go of it."""
        ref = self._ref_of(dev)
        if ref is None:
            return  # never recorded (refused when it came)
        for refs in self.refused.values():
            refs.discard(ref)  # if it comes back, it is a disk to try again
        disk = self.store.metadata.disks().get(ref)
        try:
            await self.monitor.queue.submit([RemoveDisk(ref)])
        except (ChangeRejected, MetadataError, CommitFailed, DiskIOError, OSError) as e:
            # Still working in a volume: md fails it there first, and the failure is recorded then.
            self.events.emit("container-disk-remove-refused", device=dev, disk=ref, error=str(e))
            return
        self.events.emit("container-disk-removed", device=dev, disk=ref)
        if disk is not None and ref not in self.store.metadata.disks():
            await self._close(disk)

    async def _close(self, disk: Disk) -> None:
        close = getattr(disk, "close", None)
        if callable(close):
            with contextlib.suppress(OSError):
                await self._run_blocking(close)

    def restore_safe_mode(self) -> None:
        """After a takeover: the predecessor's SIGTERM set 1 ms on arrays we had already adopted.

        Left so, every write would be followed by a clean/dirty metadata cycle
        (mdmon met this too, mdmon.md §1.4); we set our own delay again.
        """
        for md in self.arrays.values():
            self._set_safe_mode(md)

    def _set_safe_mode(self, md: ManagedArray) -> None:
        try:
            delay = float(md.read("safe_mode_delay"))
            if delay < MIN_SAFE_MODE:
                md.write_once("safe_mode_delay", f"{DEFAULT_SAFE_MODE:g}")
        except (OSError, ValueError):
            pass

    # -- doing what was requested ------------------------------------------------------

    async def handle(self) -> None:
        """Removals first (a spare may not be placed while one is outstanding), then spares."""
        now = trio.current_time()
        if now >= self._retry_at:
            self._retry_at = float("inf")
        requests, self.pending = self.pending, []
        for r in [r for r in requests if r.kind == "remove"]:
            if not await self._remove(r):
                self._defer(r)
        for r in [r for r in requests if r.kind == "spare"]:
            if any(p.kind == "remove" and p.array == r.array for p in self.pending):
                self._defer(r)
                continue
            if not await self._activate_spare(r):
                self._defer(r)

    def _defer(self, r: Request) -> None:
        if r not in self.pending:
            self.pending.append(r)
        self._retry_at = min(self._retry_at, trio.current_time() + RETRY)

    async def _remove(self, r: Request) -> bool:
        md = self.arrays.get(r.array)
        if md is None or r.device is None or f"dev-{r.device}" not in md.devices():
            return True  # gone already (the monitor asks on every pass until it is)
        try:
            await self._run_blocking(partial(self.kernel.remove_member, r.array, r.device))
        except OSError as e:
            if e.errno == errno.EBUSY:
                return False  # still blocked or in its slot: md has not let go yet
            if e.errno not in (errno.ENOENT, errno.ENODEV):
                self.events.emit("remove-failed", array=r.array, device=r.device, error=str(e))
                return False
        md.drop_device(f"dev-{r.device}")
        self.events.emit("member-removed", array=r.array, device=r.device)
        return True

    async def _activate_spare(self, r: Request) -> bool:
        """Returns False to be retried later (frozen, busy), True when done or nothing to do.

        Every empty slot gets its spare in *one* update and one recovery pass,
        as mdmon's activate_spare batches them: md then rebuilds them together,
        so the volume's single checkpoint bounds each of them, and a rebuild
        stopped half-way can resume all of them from it (``_resume_rebuild``).
        """
        md = self.arrays.get(r.array)
        if md is None:
            return True
        snap = read_snapshot(md)
        if _frozen(md) or snap.sync_action is not SyncAction.IDLE or len(self.monitor.queue):
            return False
        model = self.store.model()
        vol = model.volume(r.volume)
        if vol.state is not VolumeState.DEGRADED:
            # Nothing to rebuild (normal), nothing to rebuild from (failed: a RAID5 that lost two),
            # or never synced: mdmon's activate_spare refuses all three, and md would refuse the
            # slot of a failed array anyway (raid5_add_disk: EINVAL).
            return True
        occupied = {d.slot for d in snap.devs if d.slot is not None and not d.state.faulty}
        empty = [m.slot for m in vol.members if m.state in (MemberState.FAILED, MemberState.MISSING)]
        chosen: list[tuple[int, str, str]] = []
        planned: Volume | None = None  # the volume as the metadata will record the chosen spares
        refused: dict[str, str] = {}
        set_aside = self.refused.get(r.array, set())  # refused by md before: not offered again
        for slot in (s for s in empty if s not in occupied):
            spare = None
            for ref, dev in self._candidates(model, vol, taken=set_aside | {ref for _, ref, _ in chosen}):
                # The format has the last word (extents, sizes, what it can record): the first
                # candidate it accepts, together with those already chosen, is taken.
                trial = [ActivateSpare(vol.index, s, c) for s, c, _ in chosen] + [ActivateSpare(vol.index, slot, ref)]
                try:
                    planned = self.store.check(trial).model().volume(vol.index)
                except (ChangeRejected, MetadataError) as e:
                    refused[ref] = str(e)
                    continue
                spare = (ref, dev)
                break
            if spare is None:
                self.events.emit("no-spare", array=r.array, volume=r.volume, slot=slot, refused=refused)
                break
            chosen.append((slot, *spare))
        if not chosen or planned is None:
            return True
        return await self._add_members(md, r.array, vol, chosen, planned)

    def _candidates(self, model: Container, vol: Volume, *, taken: set[str]) -> list[tuple[str, str]]:
        """Disks a slot of ``vol`` could be rebuilt onto, best first (mdmon's imsm_add_spare order).

        A spare, or a working member of *other* volumes (Intel matrix RAID: the
        one disk that replaced a failed member of volume 0 replaces it in
        volume 1 too, each volume in its own extent).  As in mdmon, the disk
        must have room at the offset of every volume it is not yet in, so that
        it can go on serving each of them, and members of other volumes come
        before pure spares (after a DDF spare dedicated to this volume); then
        the smallest (it wastes least).  Whether the
        format can record the assignment is its own decision (``store.check``).
        """
        mine = {m.disk_ref for m in vol.members}

        def extent(v: Volume) -> tuple[int, int]:
            start = next((m.offset_sectors for m in v.members if m.state is MemberState.IN_SYNC), 0)
            return start, start + v.component_sectors

        def room(d: NamedDisk) -> bool:
            if d.path is None or d.ref in taken or d.ref in mine or d.size_sectors < extent(vol)[1]:
                return False
            if d.state not in (DiskState.SPARE, DiskState.ACTIVE):
                return False
            used = [
                (m.offset_sectors, m.offset_sectors + v.component_sectors)
                for v in model.volumes
                for m in v.members
                if m.disk_ref == d.ref
            ]
            wanted = [extent(v) for v in model.volumes if all(m.disk_ref != d.ref for m in v.members)]
            return all(e <= s or w_end <= u for s, w_end in wanted for u, e in used)

        # A spare dedicated to this volume first (DDF spare assignment records, as mdmon's
        # ddf_activate_spare tries them before any global one); one dedicated elsewhere the format refuses.
        assigned = model.extra.get("spare_assignments", {})

        def dedicated(d: NamedDisk) -> bool:
            a = assigned.get(d.ref)
            return a is not None and a["dedicated"] and vol.index in a["volumes"]

        fits = sorted(
            (d for d in model.disks if room(d)),
            key=lambda d: (not dedicated(d), d.state is DiskState.SPARE, d.size_sectors, d.ref),
        )
        return [(d.ref, (d.path or "").removeprefix("/dev/")) for d in fits]

    async def _add_members(
        self, md: ManagedArray, array: str, vol: Volume, chosen: list[tuple[int, str, str]], planned: Volume
    ) -> bool:
        """Bind and place every chosen spare (frozen), record them all, then let md recover."""
        self.monitor.held.add(array)  # our freeze, not mdadm's: the monitor must not undo it
        try:
            return await self._add_members_frozen(md, array, vol, chosen, planned)
        finally:
            self.monitor.held.discard(array)

    async def _add_members_frozen(
        self, md: ManagedArray, array: str, vol: Volume, chosen: list[tuple[int, str, str]], planned: Volume
    ) -> bool:
        changes = [ActivateSpare(vol.index, slot, ref) for slot, ref, _ in chosen]
        # md is told where the data goes from what the metadata *will* say: the format places
        # the extent (DDF finds free space on the disk, IMSM uses the volume's offset), and a
        # guess that differed would have md rebuild where the next assembly does not read.
        offsets = {m.slot: m.offset_sectors for m in planned.members}
        try:
            ppls = {slot: self._ppl(md, planned, offsets[slot]) for slot, _, _ in chosen}
        except _NoPpl as e:
            self._refuse(array, chosen, str(e))
            return True
        try:
            md.write("sync_action", "frozen")
        except OSError as e:
            self.events.emit("spare-add-failed", array=array, device=chosen[0][2], error=str(e))
            return False
        bound: list[str] = []
        for slot, ref, dev in chosen:
            try:
                md.write_once("new_dev", self.kernel.device_number(dev))
                bound.append(dev)
                size = vol.component_sectors // 2
                self._place(md, dev, offset=offsets[slot], size_kib=size, slot=slot, start=0, ppl=ppls[slot])
                md.add_device(f"dev-{dev}")
            except OSError as e:
                # md will not take this disk (PPL space, size, a slot it refuses ...): asking again
                # would be refused again, so the disk is set aside for this array, reported once.
                for d in bound:
                    self._take_back(md, d)
                self._unfreeze(md)
                self._refuse(array, [(slot, ref, dev)], str(e))
                self.request(Request("spare", array, vol.index))  # another disk may do
                return True
        try:
            await self.monitor.queue.submit(changes)
        except (ChangeRejected, MetadataError, CommitFailed, OSError) as e:
            # Not recorded: md must not rebuild onto them.  Take them back out.
            self.events.emit("spare-refused", array=array, device=",".join(bound), error=str(e))
            for d in bound:
                self._take_back(md, d)
            self._unfreeze(md)
            if isinstance(e, ChangeRejected):  # the format's no stands for these disks: do not ask again
                self.refused.setdefault(array, set()).update(ref for _, ref, _ in chosen)
            return True
        self._unfreeze(md, "recover")
        for slot, ref, dev in chosen:
            self.events.emit(
                "spare-activated", array=array, volume=vol.index, slot=slot, disk=ref, device=dev, recovery_start=0
            )
        return True

    def _refuse(self, array: str, disks: list[tuple[int, str, str]], error: str) -> None:
        """Set the disks aside for this array and say so, once."""
        self.refused.setdefault(array, set()).update(ref for _, ref, _ in disks)
        for slot, ref, dev in disks:
            self.events.emit("spare-refused", array=array, slot=slot, disk=ref, device=dev, error=error)

    def _ppl(self, md: ManagedArray, vol: Volume, offset: int) -> PplArea | None:
        """The log a member at ``offset`` needs, if md runs the array with PPL (mdmon asks md, too).

        md's policy decides, not the metadata's: mdadm falls back to resync on a
        kernel without PPL, and md takes no log for a resync array.
        """
        try:
            policy = md.read("consistency_policy").strip()
        except OSError:
            return None  # a kernel without the attribute has no PPL either
        if policy != "ppl":
            return None
        ppl = vol.ppl(offset)
        if ppl is None:
            raise _NoPpl(f"md runs {md.name} with PPL, the metadata records none for volume {vol.index}")
        return ppl

    @staticmethod
    def _place(
        md: ManagedArray, dev: str, *, offset: int, size_kib: int, slot: int, start: int, ppl: PplArea | None = None
    ) -> None:
        """Give a just-bound device its extent, its log, its rebuild start, then its slot.

        The order is md's (and mdmon's sysfs_add_disk): ``offset`` before
        ``size`` (overlap checks); ``ppl_sector``/``ppl_size`` and
        ``recovery_start`` before ``slot``: taking the slot, a PPL array checks
        the log (raid5-ppl.c ppl_validate_rdev) and a running array refuses
        all of these once the device holds a slot, with EBUSY.
        """
        md.write_once(f"dev-{dev}/offset", str(offset))
        md.write_once(f"dev-{dev}/size", str(size_kib))
        if ppl is not None:
            md.write_once(f"dev-{dev}/ppl_sector", str(ppl.sector))
            md.write_once(f"dev-{dev}/ppl_size", str(ppl.size_sectors))
        md.write_once(f"dev-{dev}/recovery_start", str(start))
        md.write_once(f"dev-{dev}/slot", str(slot))

    def _take_back(self, md: ManagedArray, dev: str) -> None:
        """Unbind a device whose assignment is not on disk, *before* unfreezing.

        Left bound, md would put it in a slot and rebuild onto it by itself the
        moment recovery is unfrozen: a rebuild the metadata knows nothing of.
        """
        for attr, value in ((f"dev-{dev}/slot", "none"), (f"dev-{dev}/state", "remove")):
            try:
                md.write_once(attr, value)
            except OSError as e:
                self.events.emit("attr-write-failed", array=md.name, attr=attr, error=str(e))
        md.drop_device(f"dev-{dev}")

    def _unfreeze(self, md: ManagedArray, action: str = "idle") -> None:
        try:
            md.write("sync_action", action)
        except OSError as e:
            self.events.emit("attr-write-failed", array=md.name, attr="sync_action", error=str(e))

    def _resume_rebuild(self, name: str, md: ManagedArray, volume: int) -> None:
        """Put the disks being rebuilt back into their slots before the monitor's first pass."""
        vol = self.store.model().volume(volume)
        mig = vol.migration
        if mig is None or mig.type is not MigrationType.REBUILD:
            return
        snap = read_snapshot(md)
        model = self.store.model()
        for m in vol.members:
            if m.state is not MemberState.REBUILDING or m.disk_ref is None or snap.at_slot(m.slot) is not None:
                continue
            disk = next((d for d in model.disks if d.ref == m.disk_ref), None)
            if disk is None or disk.path is None:
                continue  # the disk is not here: the monitor's spare request will choose another, from 0
            # The assignment is certain: this very disk, by serial, in this slot, already recorded as
            # rebuilding; re-activating it changes nothing, so the checkpoint stands.
            start = mig.checkpoint_sectors or 0
            dev = disk.path.removeprefix("/dev/")
            bound = False
            try:
                ppl = self._ppl(md, vol, m.offset_sectors)
                md.write_once("new_dev", self.kernel.device_number(dev))
                bound = True
                size = vol.component_sectors // 2
                self._place(md, dev, offset=m.offset_sectors, size_kib=size, slot=m.slot, start=start, ppl=ppl)
                md.add_device(f"dev-{dev}")
            except (OSError, _NoPpl) as e:
                self.events.emit("resume-failed", array=name, device=dev, error=str(e))
                if bound:
                    self._take_back(md, dev)
                continue
            self.events.emit(
                "rebuild-resumed", array=name, volume=volume, slot=m.slot, disk=m.disk_ref, recovery_start=start
            )


class _NoPpl(Exception):
    """md runs the array with PPL, and the metadata says nothing of where the log is."""


def _frozen(md: ManagedArray) -> bool:
    """mdadm has frozen the array (``external:-``), or we cannot tell (mdmon.md §3.5)."""
    try:
        version = md.read("metadata_version").strip()
    except OSError:
        return True
    return version[len("external:") : len("external:") + 1] == "-"
