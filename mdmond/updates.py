"""The metadata-update queue: the only way anything but the monitor changes metadata.

Producers (the manager activating a spare, the control socket) ``submit`` a
list of changes and wait for the outcome; the monitor takes the whole queue
between events, checks each update against the metadata as the ones before it
left it (so one bad update is refused alone), writes the accepted ones in a
single commit, and answers every producer.  Because only the monitor writes,
no two writers can ever interleave on the disks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from formats.base import ContainerMetadata
from formats.changes import Change


class Update:
    """One producer's request and, once the monitor has handled it, its outcome."""

    def __init__(self, changes: Sequence[Change]) -> None:
        self.changes = tuple(changes)
        self.result: ContainerMetadata | None = None
        self.error: BaseException | None = None
        self._done = trio.Event()

    def succeed(self, result: ContainerMetadata) -> None:
        self.result = result
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._done.set()

    async def wait(self) -> ContainerMetadata:
        await self._done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class UpdateQueue:
    """Updates waiting for the monitor, oldest first."""

    def __init__(self) -> None:
        self._pending: list[Update] = []
        self._on_submit: Callable[[], None] = lambda: None

    def connect(self, wake: Callable[[], None]) -> None:
        """The monitor says how to wake it."""
        self._on_submit = wake

    async def submit(self, changes: Sequence[Change]) -> ContainerMetadata:
        """Queue the changes and wait until they are on every disk (or refused: the error is raised)."""
        return await self.post(changes).wait()

    def post(self, changes: Sequence[Change]) -> Update:
        """Queue the changes without waiting (mdadm's updates are acknowledged once queued)."""
        update = Update(changes)
        self._pending.append(update)
        self._on_submit()
        return update

    def take(self) -> list[Update]:
        taken, self._pending = self._pending, []
        return taken

    def __len__(self) -> int:
        return len(self._pending)
