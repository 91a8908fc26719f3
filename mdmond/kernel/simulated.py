"""A simulated md array with external metadata: the array_state machine.

Behaviour follows the kernel's md documentation and the real driver as mdmon
meets it (reference: mdmon.md §2.3, §7.1):

* a write to a ``clean`` (or ``read-auto``) array does not proceed: the array
  goes ``write-pending`` and the writer waits until user space writes
  ``active``; the kernel never marks an external array clean itself;
* once no write has been in flight for ``safe_mode_delay`` seconds, ``active``
  becomes ``active-idle`` (and, for external metadata, this is notified);
  a new write turns it back to ``active`` without waiting;
* user space writes ``clean`` to finish the cycle; the kernel refuses with
  EBUSY while writes are in flight, and refuses with EINVAL any state that
  only the kernel may enter (``write-pending``, ``active-idle``,
  ``suspended``, ``broken``);
* every change user space must react to is notified (as ``sysfs_notify``
  would), which ``wait_change`` delivers.

Time is trio's, so tests run it on an autojump clock in simulated time.  The
per-device states, sync actions and progress come next (issue 4); this module
is where they will live.  The real kernel's transcripts from the test bed are
what this simulation must be checked against.
"""

from __future__ import annotations

import contextlib
import errno
import math

import trio

from .values import ArrayState, parse_array_state

#: md's default ``safe_mode_delay`` (md.rst: 200 ms).
DEFAULT_SAFE_MODE_DELAY = 0.2


class SimArray:
    """One simulated md array with external metadata."""

    def __init__(
        self, name: str, *, state: ArrayState = ArrayState.CLEAN, safe_mode_delay: float = DEFAULT_SAFE_MODE_DELAY
    ) -> None:
        self.name = name
        self._state = state
        self.safe_mode_delay = safe_mode_delay
        self._in_flight = 0
        self._last_write_end = -math.inf
        self._active_written = trio.Event()  # set when user space acknowledges write-pending
        self._changed = trio.Event()
        self._pending = False  # kernfs: a notification is pending until the attribute is read again
        self._safe_mode_wakeup = trio.Event()
        self.history: list[ArrayState] = [state]  # every state the array passed through, for tests

    # -- what user space sees -------------------------------------------------

    @property
    def array_state(self) -> ArrayState:
        return self._state

    def read(self, attr: str) -> str:
        if attr == "array_state":
            self._pending = False
            return self._state.value + "\n"
        if attr == "safe_mode_delay":
            return f"{self.safe_mode_delay:.3f}\n"
        raise OSError(errno.ENOENT, f"{self.name}: no attribute {attr}")

    def write(self, attr: str, value: str) -> None:
        """Write an attribute as user space would, with the kernel's refusals."""
        if attr == "safe_mode_delay":
            self.safe_mode_delay = float(value)
            self._safe_mode_wakeup.set()
            return
        if attr != "array_state":
            raise OSError(errno.ENOENT, f"{self.name}: no attribute {attr}")
        new = parse_array_state(value)
        if new is ArrayState.UNREADABLE or not new.writable_by_us:
            raise OSError(errno.EINVAL, f"{self.name}: cannot write array_state {value.strip()!r}")
        if new is ArrayState.ACTIVE:
            if self._state in (ArrayState.WRITE_PENDING, ArrayState.CLEAN, ArrayState.ACTIVE_IDLE):
                self._set(ArrayState.ACTIVE)
                self._release_writers()
            elif self._state in (ArrayState.READONLY, ArrayState.READ_AUTO):
                self._set(ArrayState.ACTIVE)
            return
        if new is ArrayState.CLEAN:
            if self._in_flight or self._state is ArrayState.WRITE_PENDING:
                raise OSError(errno.EBUSY, f"{self.name}: writes in flight")
            self._set(ArrayState.CLEAN)
            return
        self._set(new)

    async def wait_change(self) -> None:
        """Return once a change has been notified since ``array_state`` was last read.

        Like poll on a kernfs file: the notification stays pending until the
        reader reads the attribute again, so none is lost between read and wait.
        """
        if not self._pending:
            await self._changed.wait()

    # -- what the block layer does ---------------------------------------------

    async def submit_write(self, duration: float = 0.0) -> None:
        """A write to the array: blocks while the metadata is clean, then takes ``duration``."""
        if self._state in (ArrayState.READONLY, ArrayState.CLEAR, ArrayState.INACTIVE, ArrayState.UNREADABLE):
            raise OSError(errno.EROFS, f"{self.name}: array is {self._state.value}")
        self._in_flight += 1
        try:
            while self._state in (ArrayState.CLEAN, ArrayState.READ_AUTO, ArrayState.WRITE_PENDING):
                if self._state is not ArrayState.WRITE_PENDING:
                    self._set(ArrayState.WRITE_PENDING)
                await self._active_written.wait()
            if self._state is ArrayState.ACTIVE_IDLE:
                # active-idle -> active is not notified: no metadata change is needed.
                self._set(ArrayState.ACTIVE, notify=False)
            await trio.sleep(duration)
        finally:
            self._in_flight -= 1
            self._last_write_end = trio.current_time()
            self._safe_mode_wakeup.set()

    async def run_safe_mode_timer(self) -> None:
        """The kernel's safe-mode timer: active with nothing in flight for the delay → active-idle.

        The delay counts from the last write's end, or from when the array
        became active (or the timer started), whichever is later.
        """
        self._last_write_end = max(self._last_write_end, trio.current_time())
        while True:
            self._safe_mode_wakeup = trio.Event()
            if self._state is ArrayState.ACTIVE and not self._in_flight and self.safe_mode_delay > 0:
                deadline = self._last_write_end + self.safe_mode_delay
                if trio.current_time() >= deadline:
                    self._set(ArrayState.ACTIVE_IDLE)  # notified for external metadata
                    continue
                with trio.move_on_at(deadline):
                    await self._safe_mode_wakeup.wait()
            else:
                await self._safe_mode_wakeup.wait()

    # -- internals ---------------------------------------------------------------

    def _set(self, state: ArrayState, *, notify: bool = True) -> None:
        if state is self._state:
            return
        self._state = state
        self.history.append(state)
        if state is ArrayState.ACTIVE:
            # Outside trio (not running yet) the timer takes its own start time.
            with contextlib.suppress(RuntimeError):
                self._last_write_end = max(self._last_write_end, trio.current_time())
        self._safe_mode_wakeup.set()
        if notify:
            self._pending = True
            self._changed.set()
            self._changed = trio.Event()

    def _release_writers(self) -> None:
        self._active_written.set()
        self._active_written = trio.Event()
