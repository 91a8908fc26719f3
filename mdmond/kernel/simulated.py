"""A simulated md array with external metadata: md's behaviour as user space sees it.

The same interface as the real sysfs driver (``MdArray``), the same words in
the same attributes, and the same notifications, so the monitor cannot tell
them apart.  Behaviour follows the kernel's md documentation and the real
driver as mdmon meets it (reference: mdmon.md §2-§7, the test bed's
transcripts):

* a write to a ``clean`` (or ``read-auto``) array does not proceed: the array
  goes ``write-pending`` and the writer waits until user space writes
  ``active``; the kernel never marks an external array clean itself;
* once no write has been in flight for ``safe_mode_delay`` seconds, ``active``
  becomes ``active-idle`` (notified, for external metadata); a new write turns
  it back to ``active`` without a notification;
* user space writes ``clean`` to finish the cycle; the kernel refuses with
  EBUSY while writes are in flight, and with EINVAL any state only the kernel
  may enter;
* a member that fails becomes ``faulty,blocked``, and a writable array reads
  ``write-pending`` (the personality's error handler sets
  MD_SB_CHANGE_PENDING, which array_state_show reports before clean/active):
  writes wait until user space has written ``active`` (the array then reads
  what it read before: a failure does not make a clean array dirty) and
  ``-blocked``; on ``-blocked`` md drops the member from its slot, and user
  space may ``remove`` it;
* a write error on a member with ``external_bbl`` (``media_error``) does not
  fail it: md lists the range in ``unacknowledged_bad_blocks`` and the member
  reads ``blocked,write_error,want_replacement`` (state_show: unacknowledged
  bad blocks on a working device read ``blocked``); writes and the sync wait.
  Writing the range to ``bad_blocks`` acknowledges it (``blocked`` goes once
  none is left unacknowledged), and ``-blocked`` releases the waiters (md's
  BlockedBadBlocks; a waiter also looks again every 5 s, as
  md_wait_for_blocked_rdev does).  ``-blocked`` with ranges unacknowledged and
  ``external_bbl`` off fails the device and releases it at once (state_store);
  without ``external_bbl`` a write error fails the device;
* a resync (``resync_start`` not ``none``) or a recovery (a member with a slot
  but not ``in_sync``) runs when the array is writable, publishing progress in
  ``sync_completed`` every 1/16 of the device (as md_do_sync does), moving
  ``resync_start``/``recovery_start`` with it, and ends with the member in
  sync, or is interrupted and keeps its position;
* reading ``array_state`` clears the pending notification, as reading a
  kernfs file does, so none is lost between a read and the next wait.

Time is trio's, so tests run in simulated time on an autojump clock.
Failure injection: ``fail_device`` and ``inject_write_error``.
"""

from __future__ import annotations

import contextlib
import errno
import math
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import trio

from .interface import BlockEvent
from .values import MAX_SECTOR, ArrayState, SyncAction, parse_array_state, parse_sectors, parse_sync_action

#: md's default ``safe_mode_delay`` (md.rst: 200 ms).
DEFAULT_SAFE_MODE_DELAY = 0.2

#: Default resync/recovery speed, sectors of simulated time per second (10 MiB/s).
DEFAULT_SYNC_SPEED = 20480

#: md publishes ``sync_completed`` every 1/16 of the pass (md_do_sync).
PROGRESS_STEPS = 16

#: Members a parity array can lose and still run (raid5.c: max_degraded).
_MAX_DEGRADED = {4: 1, 5: 1, 6: 2}
_STOPPED = (ArrayState.CLEAR, ArrayState.INACTIVE, ArrayState.UNREADABLE)
#: md's redundancy group: absent for a RAID0 and for an array not running (transcripts: null).
_REDUNDANCY_ATTRS = ("sync_action", "sync_completed", "degraded", "mismatch_cnt")
_WRITABLE = (ArrayState.CLEAN, ArrayState.ACTIVE, ArrayState.WRITE_PENDING, ArrayState.ACTIVE_IDLE)


@dataclass
class SimDevice:
    """One member's ``dev-*`` directory."""

    name: str  # "sda"
    slot: int | None  # None: "none"
    flags: set[str] = field(default_factory=set)
    recovery_start: int = MAX_SECTOR
    offset: int = 0  # sectors
    size_kib: int = 0
    unacked: list[tuple[int, int]] = field(default_factory=list)  # (sector, length)
    acked: list[tuple[int, int]] = field(default_factory=list)
    bb_blocked: bool = False  # md's BlockedBadBlocks: I/O waits for -blocked
    ppl_sector: int = 0  # absolute, for external metadata (md.c ppl_sector_store)
    ppl_size: int = 0  # sectors

    def state_text(self) -> str:
        # md derives "spare" (state_show): any working device not in sync, including one
        # rebuilding in a slot (transcripts, step "failed": ``spare,external_bbl`` at slot 1).
        flags = self.flags - {"spare"}
        if not flags & {"faulty", "in_sync", "journal"}:
            flags = flags | {"spare"}
        if self.unacked and "faulty" not in flags:
            flags = flags | {"blocked"}  # state_show: unacked_exist on a working device
        return ",".join(f for f in _FLAG_ORDER if f in flags)

    @property
    def holds_io(self) -> bool:
        """md holds I/O to this device (md_wait_for_blocked_rdev)."""
        return "blocked" in self.flags or self.bb_blocked or (bool(self.unacked) and "faulty" not in self.flags)


#: raid5-ppl.c: the log's header, and the unit its entry space is rounded down to (a 4 KiB stripe).
_PPL_HEADER_SECTORS = 8
_STRIPE_SECTORS = 8

# The order md's state_show prints flags in.
_FLAG_ORDER = (
    "faulty",
    "in_sync",
    "journal",
    "write_mostly",
    "blocked",
    "spare",
    "write_error",
    "want_replacement",
    "replacement",
    "external_bbl",
    "failfast",
)


class SimArray:
    """One simulated md member array of an external-metadata container."""

    def __init__(
        self,
        name: str,
        *,
        state: ArrayState = ArrayState.CLEAN,
        safe_mode_delay: float = DEFAULT_SAFE_MODE_DELAY,
        level: int = 1,
        devices: Iterable[str] = ("sda", "sdb"),
        component_sectors: int = 65536,
        resync_start: int | None = None,
        metadata_version: str = "external:/md127/0",
        sync_speed: int = DEFAULT_SYNC_SPEED,
        consistency_policy: str | None = None,
    ) -> None:
        """``consistency_policy``: what mdadm set before starting the array (``ppl``); default md's own."""
        self.name = name
        self._state = state
        self.safe_mode_delay = safe_mode_delay
        self.level = level
        self.component_sectors = component_sectors
        # md's initial recovery_cp is 0; mdadm sets it only for redundant levels, so a
        # RAID0 reads "0" for ever (transcripts: every RAID0 step).
        self.resync_start = (0 if level == 0 else MAX_SECTOR) if resync_start is None else resync_start
        #: md refuses to start a dirty degraded RAID4/5/6 unless this is set (md-mod start_dirty_degraded).
        self.start_dirty_degraded = False
        self.metadata_version = metadata_version
        self.sync_speed = sync_speed
        self.consistency_policy = consistency_policy or ("none" if level == 0 else "resync")
        self.devs: dict[str, SimDevice] = {}
        for slot, dev in enumerate(devices):
            self.devs[dev] = SimDevice(dev, slot, {"in_sync"})
        self.raid_disks = len(self.devs)
        self.sync_action = SyncAction.IDLE
        self.sync_done: int | None = None  # sync_completed's "done" while a pass runs
        self.frozen = False
        self._in_flight = 0
        self._last_write_end = -math.inf
        self._active_written = trio.Event()  # set when user space acknowledges write-pending
        # What array_state reads once "active" clears md's MD_SB_CHANGE_PENDING: the state
        # beneath write-pending (md's in_sync / safemode), which writing "active" leaves alone.
        self._after_pending = ArrayState.ACTIVE
        self._failures = 0  # md_error calls so far: a write in flight across one is held
        self._unblocked = trio.Event()  # set when user space writes -blocked
        self._changed = trio.Event()
        self._pending = False  # kernfs: a notification is pending until array_state is read again
        self._kick = trio.Event()  # wakes the kernel's own tasks (safe-mode timer, sync thread)
        self._write_errors: dict[str, list[int]] = {}
        self.history: list[ArrayState] = [state]  # every state the array passed through, for tests
        self.notifications = 0
        #: ``new_dev`` takes "major:minor"; the simulated kernel says which device that is.
        self.resolve_dev: Callable[[str], str] | None = None
        self.on_notify: Callable[[], None] | None = None  # the simulated kernel's event counter

    # The manager's side: every attribute is always "open" in the simulation.

    def add_device(self, entry: str) -> None:
        pass

    def drop_device(self, entry: str) -> None:
        pass

    def write_once(self, attr: str, value: str) -> None:
        self.write(attr, value)

    # -- what user space sees -------------------------------------------------

    @property
    def array_state(self) -> ArrayState:
        return self._state

    @property
    def degraded(self) -> int:
        return sum(1 for d in self.devs.values() if d.slot is not None and "in_sync" not in d.flags) + (
            self.raid_disks - sum(1 for d in self.devs.values() if d.slot is not None)
        )

    @property
    def has_redundancy_attrs(self) -> bool:
        """md's redundancy group (sync_action, degraded ...) exists once a personality with a
        sync thread runs: never for a RAID0, not for an array not started (transcripts)."""
        return self.level != 0 and self._state.running

    def devices(self) -> tuple[str, ...]:
        """The ``dev-*`` directories, as listed in sysfs."""
        return tuple(f"dev-{n}" for n in sorted(self.devs))

    def read(self, attr: str) -> str:
        if self._state is ArrayState.CLEAR and attr != "array_state":
            raise OSError(errno.ENODEV, f"{self.name}: {attr}: array is gone")
        if attr == "array_state":
            self._pending = False
            return self._state.value + "\n"
        if attr.startswith("dev-"):
            dev, _, what = attr[4:].partition("/")
            d = self._dev(dev)
            if what == "state":
                return d.state_text() + "\n"
            if what == "slot":
                return ("none" if d.slot is None else str(d.slot)) + "\n"
            if what == "recovery_start":
                return _sectors_text(d.recovery_start) + "\n"
            if what in ("bad_blocks", "unacknowledged_bad_blocks"):
                ranges = d.acked if what == "bad_blocks" else d.unacked
                return "".join(f"{a} {n}\n" for a, n in sorted(ranges))
            if what in ("ppl_sector", "ppl_size"):
                return str(getattr(d, what)) + "\n"
            raise OSError(errno.ENOENT, f"{self.name}: no attribute {attr}")
        return self._array_attr(attr) + "\n"

    def _array_attr(self, attr: str) -> str:
        if attr in _REDUNDANCY_ATTRS and not self.has_redundancy_attrs:
            raise OSError(errno.ENOENT, f"{self.name}: no attribute {attr} (no sync thread)")
        if attr == "consistency_policy":
            return "unknown" if not self._state.running else self.consistency_policy
        if attr == "sync_action":
            idle = self.sync_action is SyncAction.IDLE
            return "frozen" if self.frozen and idle else self.sync_action.value
        if attr == "sync_completed":
            return "none" if self.sync_done is None else f"{self.sync_done} / {self._sync_total()}"
        if attr == "resync_start":
            return _sectors_text(self.resync_start)
        if attr == "degraded":
            return str(self.degraded)
        if attr == "metadata_version":
            return self.metadata_version
        if attr == "safe_mode_delay":
            return f"{self.safe_mode_delay:.3f}"
        if attr == "raid_disks":
            return str(self.raid_disks)
        if attr == "component_size":
            return str(self.component_sectors // 2)  # KiB
        if attr == "level":
            return f"raid{self.level}"
        raise OSError(errno.ENOENT, f"{self.name}: no attribute {attr}")

    def write(self, attr: str, value: str) -> None:
        """Write an attribute as user space would, with the kernel's refusals."""
        if self._write_errors.get(attr):
            code = self._write_errors[attr].pop(0)
            raise OSError(code, f"{self.name}: {attr}: injected error")
        if attr == "array_state":
            self._write_array_state(value)
        elif attr == "safe_mode_delay":
            self.safe_mode_delay = float(value)
            self._kick_kernel()
        elif attr == "sync_action":
            if not self.has_redundancy_attrs:
                raise OSError(errno.ENOENT, f"{self.name}: no attribute sync_action")
            self._write_sync_action(value)
        elif attr == "resync_start":
            if self._state.running and self._state is not ArrayState.READONLY:
                raise OSError(errno.EBUSY, f"{self.name}: resync_start of a running array")
            pos = parse_sectors(value)
            if pos is None:
                raise OSError(errno.EINVAL, f"{self.name}: resync_start {value!r}")
            self.resync_start = pos
        elif attr.startswith("dev-"):
            dev, _, what = attr[4:].partition("/")
            self._write_dev(self._dev(dev), what, value.strip())
        elif attr == "metadata_version":
            # md lets user space rewrite an external array's string while it runs (mdadm's
            # "external:-" flag, mdmon.md section 2.8) and refuses anything else (metadata_store).
            text = value.strip()
            if not (self.metadata_version.startswith("external:") and text.startswith("external:")):
                raise OSError(errno.EBUSY, f"{self.name}: metadata_version {text!r}")
            self.metadata_version = text
        elif attr == "new_dev":
            if self.resolve_dev is None:
                raise OSError(errno.ENODEV, f"{self.name}: no device {value.strip()}")
            self.add_spare(self.resolve_dev(value.strip()))
        else:
            raise OSError(errno.ENOENT, f"{self.name}: no attribute {attr}")

    async def wait_change(self) -> None:
        """Return once a change has been notified since ``array_state`` was last read."""
        if not self._pending:
            await self._changed.wait()

    # -- what the block layer and md's own threads do --------------------------

    async def submit_write(self, duration: float = 0.0) -> None:
        """A write to the array: blocks while the metadata is clean or a failure is unrecorded."""
        if self._state in (*_STOPPED, ArrayState.READONLY):
            raise OSError(errno.EROFS, f"{self.name}: array is {self._state.value}")
        self._in_flight += 1
        try:
            while True:
                if self._state in (ArrayState.CLEAN, ArrayState.READ_AUTO):
                    # md_write_start: in_sync = 0 needs the metadata's acknowledgement.
                    self._after_pending = ArrayState.ACTIVE
                    self._set(ArrayState.WRITE_PENDING)
                    await self._active_written.wait()
                elif self._state is ArrayState.WRITE_PENDING:
                    if self._after_pending is not ArrayState.ACTIVE:
                        # Pending since a failure: this write also dirties the array (md_write_start
                        # clears in_sync and safemode, and notifies), so "active" will read active.
                        self._after_pending = ArrayState.ACTIVE
                        self._notify()
                    await self._active_written.wait()
                elif any(d.holds_io for d in self.devs.values()):
                    # md_wait_for_blocked_rdev: woken by -blocked, and looks again after 5 s
                    # (an acknowledged range no longer blocks).
                    with trio.move_on_after(5.0):
                        await self._unblocked.wait()
                    self._release_acknowledged()
                elif self._state in _STOPPED:
                    raise OSError(errno.EIO, f"{self.name}: array stopped under a write")
                else:
                    break
            if self._state is ArrayState.ACTIVE_IDLE:
                self._set(ArrayState.ACTIVE, notify=False)  # no metadata change is needed
            failures = self._failures
            await trio.sleep(duration)
            # A member failed under this write: the personality completes it only once the
            # failure is acknowledged (raid1d/raid10d hold bio_end_io_list while
            # MD_SB_CHANGE_PENDING is set).
            while failures != self._failures and self._write_pending():
                await self._active_written.wait()
        finally:
            self._in_flight -= 1
            self._last_write_end = trio.current_time()
            self._kick_kernel()

    def fail_device(self, dev: str) -> None:
        """The device errors: md marks it faulty and, for external metadata, blocked."""
        d = self._dev(dev)
        if "faulty" in d.flags:
            return
        d.flags -= {"in_sync"}
        d.flags |= {"faulty", "blocked"}
        self._failures += 1
        # raid1_error / raid10_error / raid5_error end with
        #   set_mask_bits(&mddev->sb_flags, 0, BIT(MD_SB_CHANGE_DEVS) | BIT(MD_SB_CHANGE_PENDING));
        # (raid0/linear set none).  With external metadata md_update_sb leaves
        # MD_SB_CHANGE_PENDING for user space, array_state_show tests it before in_sync (a
        # writable array reads write-pending, clean or not), md_write_start waits for it to
        # clear, and only array_state_store("active") clears it -- without touching in_sync, so a
        # clean array reads clean again.  Seen on Debian 6.1 (tests/vm/test_sysfs_driver.py: clean,
        # --fail, write-pending, "active", clean).  A read-auto array shows read-auto (ro first);
        # its pending bit is cleared by the "active" that makes it writable.
        if self.level != 0 and self._state in (ArrayState.CLEAN, ArrayState.ACTIVE, ArrayState.ACTIVE_IDLE):
            self._after_pending = self._state
            self._set(ArrayState.WRITE_PENDING)
        if self.sync_action is not SyncAction.IDLE:
            self._interrupt_sync()
        self._notify()
        self._kick_kernel()

    def media_error(self, dev: str, sector: int, length: int = 8) -> None:
        """A write to ``length`` sectors from ``sector`` of the member failed (raid5 end_write_request)."""
        d = self._dev(dev)
        if "faulty" in d.flags:
            return
        if "external_bbl" not in d.flags:
            # With external metadata md keeps no bad-block list until user space turns
            # external_bbl on (state_store sets the shift then): rdev_set_badblocks fails
            # and the device fails.
            self.fail_device(dev)
            return
        if (sector, length) not in d.unacked and (sector, length) not in d.acked:
            d.unacked.append((sector, length))
        d.flags |= {"write_error", "want_replacement"}
        d.bb_blocked = True
        self._notify()
        self._kick_kernel()

    def clear_bad_blocks(self, dev: str, sector: int, length: int) -> None:
        """A write to a range md listed bad succeeded: md forgets it (badblocks_clear, parts kept apart).

        md notifies ``bad_blocks``; user space then forgets it in the metadata too.
        """
        d = self._dev(dev)
        end = sector + length
        kept: list[tuple[int, int]] = []
        for s, n in d.acked:
            if s + n <= sector or end <= s:
                kept.append((s, n))
                continue
            if s < sector:
                kept.append((s, sector - s))
            if end < s + n:
                kept.append((end, s + n - end))
        d.acked = kept
        self._notify()

    def add_spare(self, dev: str) -> None:
        """``new_dev``: the manager adds a container disk to this array (no slot yet)."""
        if dev in self.devs:
            raise OSError(errno.EEXIST, f"{self.name}: {dev} is already a member")
        self.devs[dev] = SimDevice(dev, None, {"spare"}, 0)
        self._notify()

    def inject_write_error(self, attr: str, code: int = errno.EIO, times: int = 1) -> None:
        """The next ``times`` writes to ``attr`` fail with ``code``."""
        self._write_errors.setdefault(attr, []).extend([code] * times)

    async def run(self) -> None:
        """md's own activity for this array: the safe-mode timer and the sync thread."""
        self._last_write_end = max(self._last_write_end, trio.current_time())
        while self._state is not ArrayState.CLEAR:
            self._kick = trio.Event()
            deadline = math.inf
            if self._state is ArrayState.ACTIVE and not self._in_flight and self.safe_mode_delay > 0:
                deadline = self._last_write_end + self.safe_mode_delay
                if trio.current_time() >= deadline:
                    self._set(ArrayState.ACTIVE_IDLE)  # notified for external metadata
                    continue
            if self.sync_action is SyncAction.IDLE and not self.frozen:
                self._maybe_start_sync()
            if self.sync_action is not SyncAction.IDLE and any(d.holds_io for d in self.devs.values()):
                # The sync's writes wait for the device as the array's do.
                with trio.move_on_at(min(deadline, trio.current_time() + 5.0)):
                    await self._kick.wait()
                self._release_acknowledged()
                continue
            if self.sync_action is not SyncAction.IDLE:
                deadline = min(deadline, self._next_step_at)
                if trio.current_time() >= self._next_step_at:
                    self._sync_step()
                    continue
            with trio.move_on_at(deadline):
                await self._kick.wait()

    # -- internals ---------------------------------------------------------------

    def _write_pending(self) -> bool:
        """Read afresh (a method, so a type checker does not carry a narrowing across an await)."""
        return self._state is ArrayState.WRITE_PENDING

    def _dev(self, dev: str) -> SimDevice:
        d = self.devs.get(dev)
        if d is None:
            raise OSError(errno.ENOENT, f"{self.name}: no device {dev}")
        return d

    def _write_array_state(self, value: str) -> None:
        new = parse_array_state(value)
        if new is ArrayState.UNREADABLE or not new.writable_by_us:
            raise OSError(errno.EINVAL, f"{self.name}: cannot write array_state {value.strip()!r}")
        if new is ArrayState.ACTIVE:
            if self._state is ArrayState.WRITE_PENDING:
                # clear_bit(MD_SB_CHANGE_PENDING): the array reads what lies beneath.
                self._set(self._after_pending)
                self._active_written.set()
                self._active_written = trio.Event()
            elif self._state in (ArrayState.CLEAN, ArrayState.ACTIVE_IDLE):
                self._set(ArrayState.ACTIVE)
                self._active_written.set()
                self._active_written = trio.Event()
            elif self._state in (ArrayState.READONLY, ArrayState.READ_AUTO):
                self._set(ArrayState.ACTIVE)
            return
        if new is ArrayState.CLEAN:
            if self._in_flight:  # writers waiting in md_write_start count too (writes_pending)
                raise OSError(errno.EBUSY, f"{self.name}: writes in flight")
            if self._state is ArrayState.WRITE_PENDING:
                # set_in_sync succeeds, but MD_SB_CHANGE_PENDING still shows: "active" will read clean.
                self._after_pending = ArrayState.CLEAN
                return
            self._set(ArrayState.CLEAN)
            return
        if new in (ArrayState.READONLY, ArrayState.READ_AUTO) and not self._state.running:
            self._check_startable()
        if new is ArrayState.READ_AUTO and self.level == 0:
            # A RAID0 has nothing for read-auto to hold back: mdmon writes read-auto and it
            # reads clean (transcripts, step "assembled": vol1 RAID0 clean beside a
            # read-auto RAID1/10; the same mdmon code path wrote both).
            new = ArrayState.CLEAN
        if new in (ArrayState.INACTIVE, ArrayState.CLEAR) and self.sync_action is not SyncAction.IDLE:
            self._interrupt_sync()
        self._set(new)
        self._active_written.set()  # writers waiting on a stopped array fail
        self._kick_kernel()

    def _check_startable(self) -> None:
        """raid5's run: a dirty degraded array does not start (ddf-raid5-rebuild, step "assembled")."""
        dirty = self.resync_start != MAX_SECTOR
        if self.level in (4, 5, 6) and dirty and self.degraded and not self.start_dirty_degraded:
            raise OSError(errno.EIO, f"{self.name}: cannot start dirty degraded array")

    def _write_sync_action(self, value: str) -> None:
        action = parse_sync_action(value)
        if action in (SyncAction.IDLE, SyncAction.FROZEN):
            self.frozen = action is SyncAction.FROZEN
            if self.sync_action is not SyncAction.IDLE:
                self._interrupt_sync()
        elif action in (SyncAction.CHECK, SyncAction.REPAIR):
            if self.sync_action is not SyncAction.IDLE:
                raise OSError(errno.EBUSY, f"{self.name}: {self.sync_action.value} is running")
        elif action in (SyncAction.RESYNC, SyncAction.RECOVER):
            self.frozen = False
        else:
            raise OSError(errno.EINVAL, f"{self.name}: sync_action {value.strip()!r}")
        if self._state is ArrayState.READ_AUTO:
            # md.c action_store: "a write to sync_action is enough to justify canceling
            # read-auto mode"; the array is then read-write and, external metadata being
            # clean until a write, reads clean.  This is how a spare's recovery starts on an
            # array assembled degraded (mdadm -I --run leaves it read-auto).
            self._set(ArrayState.CLEAN)
        if action in (SyncAction.CHECK, SyncAction.REPAIR):
            self._start_sync(action, 0)
        else:
            self._kick_kernel()

    def _write_dev(self, d: SimDevice, what: str, value: str) -> None:
        if what == "state":
            if value == "-blocked":
                if "faulty" not in d.flags and "external_bbl" not in d.flags and d.unacked:
                    # state_store: the metadata handler does not understand bad blocks.
                    self.fail_device(d.name)
                d.bb_blocked = False
                d.flags.discard("blocked")
                if "faulty" in d.flags:
                    d.slot = None  # md's remove_and_add_spares takes it out of the personality
                self._unblocked.set()
                self._unblocked = trio.Event()
                self._notify()
                self._kick_kernel()
            elif value == "faulty":
                self.fail_device(d.name)
            elif value == "remove":
                if d.slot is not None and "faulty" not in d.flags:
                    raise OSError(errno.EBUSY, f"{self.name}: {d.name} is an active member")
                if "blocked" in d.flags:
                    raise OSError(errno.EBUSY, f"{self.name}: {d.name} is blocked")
                del self.devs[d.name]
                self._notify()
            elif value in ("in_sync", "+in_sync"):
                d.flags.add("in_sync")
                d.recovery_start = MAX_SECTOR
            elif value in ("-in_sync",):
                d.flags.discard("in_sync")
            elif value in ("external_bbl", "-external_bbl"):
                # mdadm sets it on every IMSM member (transcripts: "in_sync,external_bbl").
                (d.flags.discard if value[0] == "-" else d.flags.add)("external_bbl")
            else:
                raise OSError(errno.EINVAL, f"{self.name}: dev-{d.name}/state {value!r}")
        elif what in ("bad_blocks", "unacknowledged_bad_blocks"):
            self._write_bad_blocks(d, what == "bad_blocks", value)
        elif what == "slot":
            if self._state.running and self.sync_action is not SyncAction.IDLE:
                raise OSError(errno.EBUSY, f"{self.name}: a sync is running")
            slot = None if value == "none" else int(value)
            if slot is not None and any(o.slot == slot and o is not d for o in self.devs.values()):
                raise OSError(errno.EBUSY, f"{self.name}: slot {slot} is taken")
            if slot is not None and self._state.running and self.degraded > _MAX_DEGRADED.get(self.level, 1 << 30):
                # raid5_add_disk refuses a new member once the array has failed (has_failed):
                # seen on Debian 6.1, an IMSM RAID5 after two --fail, a spare's slot: EINVAL.
                raise OSError(errno.EINVAL, f"{self.name}: the array has failed")
            if slot is not None and self._state.running and self.consistency_policy == "ppl":
                self._validate_ppl(d)
            d.slot = slot
            if slot is None:
                d.flags.add("spare")
            else:
                d.flags.discard("spare")
            self._kick_kernel()
        elif what in ("offset", "size"):
            if self._state.running and d.slot is not None:
                raise OSError(errno.EBUSY, f"{self.name}: {d.name} is an active member")
            if not value.isdigit():
                raise OSError(errno.EINVAL, f"{self.name}: dev-{d.name}/{what} {value!r}")
            if what == "offset":
                d.offset = int(value)
            else:
                d.size_kib = int(value)
        elif what in ("ppl_sector", "ppl_size"):
            # md.c ppl_sector_store/ppl_size_store: fixed once the device holds a slot of a PPL array.
            if self._state.running and self.consistency_policy == "ppl" and d.slot is not None:
                raise OSError(errno.EBUSY, f"{self.name}: {d.name} is an active member of a PPL array")
            if not value.isdigit():
                raise OSError(errno.EINVAL, f"{self.name}: dev-{d.name}/{what} {value!r}")
            setattr(d, what, int(value))
        elif what == "recovery_start":
            if self._state.running and d.slot is not None and self.sync_action is not SyncAction.IDLE:
                raise OSError(errno.EBUSY, f"{self.name}: recovery is running")
            pos = parse_sectors(value)
            if pos is None:
                raise OSError(errno.EINVAL, f"{self.name}: recovery_start {value!r}")
            d.recovery_start = pos
            if pos == MAX_SECTOR:
                d.flags.add("in_sync")
            else:
                d.flags.discard("in_sync")  # md: a position means "not in sync beyond it" (mdmon.md §7.2)
        else:
            raise OSError(errno.ENOENT, f"{self.name}: no attribute dev-{d.name}/{what}")

    def _release_acknowledged(self) -> None:
        """md_wait_for_blocked_rdev's second look: a device whose ranges are all acknowledged goes on."""
        for d in self.devs.values():
            if d.bb_blocked and not d.unacked:
                d.bb_blocked = False

    def _write_bad_blocks(self, d: SimDevice, ack: bool, value: str) -> None:
        """badblocks_store: ``"<sector> <length>"``; into bad_blocks it acknowledges what it covers."""
        parts = value.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) <= 0:
            raise OSError(errno.EINVAL, f"{self.name}: dev-{d.name}: bad block {value!r}")
        sector, length = int(parts[0]), int(parts[1])
        if not ack:
            if (sector, length) not in d.unacked:
                d.unacked.append((sector, length))
        else:
            covered = [r for r in d.unacked if r[0] >= sector and r[0] + r[1] <= sector + length]
            d.unacked = [r for r in d.unacked if r not in covered]
            for r in covered or [(sector, length)]:
                if r not in d.acked:
                    d.acked.append(r)
        self._notify()  # rdev_set_badblocks notifies the device's state

    def _validate_ppl(self, d: SimDevice) -> None:
        """raid5-ppl.c ppl_validate_rdev, run when a running PPL array takes a device into a slot.

        The log needs room beyond its 4 KiB header (whole 4 KiB stripes) and
        must not overlap the member's data; else the slot write fails.
        """
        data = (d.ppl_size - _PPL_HEADER_SECTORS) // _STRIPE_SECTORS * _STRIPE_SECTORS
        if data <= 0:
            raise OSError(errno.ENOSPC, f"{self.name}: PPL space too small on {d.name}")
        end = d.offset + 2 * d.size_kib
        log_end = d.ppl_sector + data + _PPL_HEADER_SECTORS
        if (d.ppl_sector < d.offset < log_end) or (d.offset <= d.ppl_sector < end):
            raise OSError(errno.EINVAL, f"{self.name}: PPL space overlaps with data on {d.name}")

    # The sync thread: one pass at a time, progress in 1/16 steps.

    _next_step_at = math.inf
    _sync_dev: SimDevice | None = None

    def _sync_total(self) -> int:
        return self.component_sectors

    def _rebuild_target(self) -> SimDevice | None:
        for d in sorted(self.devs.values(), key=lambda d: d.slot if d.slot is not None else 1 << 30):
            if d.slot is not None and not d.flags & {"in_sync", "faulty"}:
                return d
        return None

    def _maybe_start_sync(self) -> None:
        if self._state not in _WRITABLE or any(
            "faulty" in d.flags and "blocked" in d.flags for d in self.devs.values()
        ):
            return
        if self.level == 0:
            return
        target = self._rebuild_target()
        if target is not None and self.degraded < self.raid_disks:
            start = 0 if target.recovery_start == MAX_SECTOR else target.recovery_start
            self._sync_dev = target
            self._start_sync(SyncAction.RECOVER, start)
        elif self.resync_start != MAX_SECTOR and self.degraded == 0:
            self._start_sync(SyncAction.RESYNC, self.resync_start)

    def _start_sync(self, action: SyncAction, start: int) -> None:
        self.sync_action = action
        self.sync_done = start
        self._next_step_at = trio.current_time() + self._step() / self.sync_speed
        self._notify()
        self._kick_kernel()

    def _step(self) -> int:
        return max(1, -(-self._sync_total() // PROGRESS_STEPS))

    def _sync_step(self) -> None:
        assert self.sync_done is not None
        self.sync_done = min(self._sync_total(), self.sync_done + self._step())
        self._checkpoint(self.sync_done)
        if self.sync_done >= self._sync_total():
            self._finish_sync()
        else:
            self._next_step_at = trio.current_time() + self._step() / self.sync_speed
            self._notify()

    def _checkpoint(self, done: int) -> None:
        if self.sync_action is SyncAction.RECOVER and self._sync_dev is not None:
            self._sync_dev.recovery_start = done
        elif self.sync_action is SyncAction.RESYNC:
            self.resync_start = done

    def _finish_sync(self) -> None:
        if self.sync_action is SyncAction.RECOVER and self._sync_dev is not None:
            self._sync_dev.flags.add("in_sync")
            self._sync_dev.recovery_start = MAX_SECTOR
        elif self.sync_action is SyncAction.RESYNC:
            self.resync_start = MAX_SECTOR
        self._end_sync()

    def _interrupt_sync(self) -> None:
        if self.sync_done is not None:
            self._checkpoint(self.sync_done)
        self._end_sync()

    def _end_sync(self) -> None:
        self.sync_action = SyncAction.IDLE
        self.sync_done = None
        self._sync_dev = None
        self._next_step_at = math.inf
        self._notify()

    def _set(self, state: ArrayState, *, notify: bool = True) -> None:
        if state is self._state:
            return
        self._state = state
        self.history.append(state)
        if state is ArrayState.ACTIVE:
            # Outside trio (not running yet) the timer takes its own start time.
            with contextlib.suppress(RuntimeError):
                self._last_write_end = max(self._last_write_end, trio.current_time())
        self._kick_kernel()
        if notify:
            self._notify()

    def _notify(self) -> None:
        if self.on_notify is not None:
            self.on_notify()
        self.notifications += 1
        self._pending = True
        self._changed.set()
        self._changed = trio.Event()

    def _kick_kernel(self) -> None:
        self._kick.set()


def _sectors_text(pos: int) -> str:
    return "none" if pos == MAX_SECTOR else str(pos)


class SimKernel:
    """A simulated md driver with containers and member arrays: what ``Kernel`` asks, answered in memory.

    ``/proc/mdstat`` is rendered from the arrays' state, in the kernel's shape,
    and every array notification moves the event counter that wakes its readers.
    """

    def __init__(self) -> None:
        self.arrays: dict[str, SimArray] = {}
        self.containers: dict[str, tuple[str, list[str]]] = {}  # name -> (format, member devices)
        self._block_send, self._block_receive = trio.open_memory_channel[BlockEvent](64)
        self._numbers: dict[str, str] = {}
        self._events = 0
        self._seen = 0
        self._changed = trio.Event()

    def unplug(self, dev: str) -> None:
        """The disk is gone from the system (pulled, or its controller lost it): a udev ``remove``.

        As on the real kernel, md is not told: its members on that disk fail
        only when I/O to them does (or user space fails them).
        """
        self._block_send.send_nowait(BlockEvent("remove", dev))

    def plug(self, dev: str, serial: str | None = None) -> None:
        """A disk appears (a udev ``add``)."""
        self._block_send.send_nowait(BlockEvent("add", dev, serial))

    async def block_events(self) -> AsyncIterator[BlockEvent]:
        async for e in self._block_receive:
            yield e

    def add_container(self, name: str, fmt: str, devices: Iterable[str]) -> None:
        self.containers[name] = (fmt, list(devices))
        for d in self.containers[name][1]:
            self._number(d)
        self._event()

    def add_array(self, array: SimArray) -> None:
        self.arrays[array.name] = array
        array.resolve_dev = self._resolve
        array.on_notify = self._event
        for d in array.devs:
            self._number(d)
        self._event()

    def mdstat(self) -> str:
        self._seen = self._events
        lines = ["Personalities : [raid0] [raid1] [raid10] [raid6] [raid5] [raid4]"]
        for name in sorted(self.arrays, reverse=True):
            a = self.arrays[name]
            if not a.array_state.running:
                continue
            ro = " (read-only)" if a.array_state is ArrayState.READONLY else ""
            ro = " (auto-read-only)" if a.array_state is ArrayState.READ_AUTO else ro
            members = sorted(a.devs.values(), key=lambda d: -(d.slot if d.slot is not None else -1))
            devs = " ".join(f"{d.name}[{i}]" + ("(F)" if "faulty" in d.flags else "") for i, d in enumerate(members))
            kib = a.component_sectors // 2
            up = "".join(
                "U" if any(d.slot == s and "in_sync" in d.flags for d in members) else "_" for s in range(a.raid_disks)
            )
            lines.append(f"{name} : active{ro} raid{a.level} {devs}")
            lines.append(
                f"      {kib * max(1, a.raid_disks - 1)} blocks super {a.metadata_version} "
                f"[{a.raid_disks}/{up.count('U')}] [{up}]"
            )
            if a.sync_done is not None:
                lines.append(f"      [>....]  {a.sync_action.value} = 0.0% ({a.sync_done // 2}/{kib}) finish=0.0min")
        for name, (fmt, members_of) in sorted(self.containers.items()):
            spares = " ".join(f"{d}[{i}](S)" for i, d in enumerate(members_of))
            lines += [f"{name} : inactive {spares}", f"      0 blocks super external:{fmt}"]
        return "\n".join([*lines, "unused devices: <none>", ""])

    async def wait_mdstat(self) -> None:
        while self._seen == self._events:
            await self._changed.wait()

    def open_array(self, name: str) -> SimArray:
        a = self.arrays.get(name)
        if a is None:
            raise OSError(errno.ENOENT, f"no array {name}")
        return a

    def device_number(self, dev: str) -> str:
        return self._number(dev)

    def remove_member(self, array: str, dev: str) -> None:
        """Called from a worker thread, as the real one is: the simulation lives on trio's thread."""
        write = self.open_array(array).write
        try:
            trio.from_thread.run_sync(write, f"dev-{dev}/state", "remove")
        except RuntimeError:  # already on trio's thread (a direct call)
            write(f"dev-{dev}/state", "remove")

    def _number(self, dev: str) -> str:
        if dev not in self._numbers:
            self._numbers[dev] = f"8:{16 * len(self._numbers)}"
        return self._numbers[dev]

    def _resolve(self, number: str) -> str:
        for dev, n in self._numbers.items():
            if n == number:
                return dev
        raise OSError(errno.ENODEV, f"no device {number}")

    def _event(self) -> None:
        self._events += 1
        self._changed.set()
        self._changed = trio.Event()
