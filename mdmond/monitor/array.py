"""One array's monitor loop: read, decide (``rules``), record, then answer the kernel.

The order inside a pass is mdmon's (mdmon.md §2.7): read everything, decide,
write the metadata, and only then write ``array_state``.  So when the kernel
is told ``active`` the dirty record is already on every disk.
"""

from __future__ import annotations

import errno
from typing import Protocol

from formats.changes import SetDirty

from ..kernel.values import ArrayState, parse_array_state
from ..metadata import MetadataStore
from .rules import decide


class MdArray(Protocol):
    """What the monitor needs of one md array (real sysfs or simulated)."""

    name: str

    def read(self, attr: str) -> str: ...

    def write(self, attr: str, value: str) -> None: ...

    async def wait_change(self) -> None: ...


class ArrayMonitor:
    """Keeps one volume's metadata in step with its md array until the array stops."""

    def __init__(self, md: MdArray, store: MetadataStore, volume: int) -> None:
        self.md = md
        self.store = store
        self.volume = volume
        self.previous = ArrayState.INACTIVE
        self.passes = 0

    def _read_state(self) -> ArrayState:
        try:
            return parse_array_state(self.md.read("array_state"))
        except OSError:
            return ArrayState.UNREADABLE  # a vanished array reads as stopped

    async def step(self) -> bool:
        """One pass; returns False once the array has stopped."""
        self.passes += 1
        observed = self._read_state()
        vol = self.store.model().volume(self.volume)
        needs_resync = vol.migration is not None or vol.state.value == "uninitialized"
        d = decide(observed, self.previous, needs_resync=needs_resync)
        if d.dirty is not None and d.dirty != vol.dirty:
            await self.store.commit([SetDirty(self.volume, d.dirty)])
        if d.write_state is not None:
            try:
                self.md.write("array_state", d.write_state.value)
            except OSError as e:
                # active-idle -> clean is refused while writes are in flight: they will
                # bring the array back to active, and safe mode will come round again.
                if not (e.errno == errno.EBUSY and d.write_state is ArrayState.CLEAN):
                    raise
        self.previous = observed
        return not d.stop

    async def run(self) -> None:
        while await self.step():
            await self.md.wait_change()
