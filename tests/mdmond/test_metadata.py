"""The metadata store: validate before writing, write every disk, roll back on failure."""

from __future__ import annotations

import pytest

from formats.changes import SetDirty
from formats.errors import ChangeRejected
from mdmond.metadata import CommitFailed, MetadataStore

from .toyformat import FlakyDisk, ToyMetadata, read_back


def make(n: int = 3) -> tuple[MetadataStore, dict[str, FlakyDisk]]:
    disks = {f"d{i}": FlakyDisk(64 * 1024, f"/dev/sd{'abc'[i]}") for i in range(n)}
    return MetadataStore(ToyMetadata(disks)), disks


async def test_commit_reaches_every_disk_before_it_is_adopted() -> None:
    store, disks = make()
    await store.commit([SetDirty(0, True)])
    assert store.model().volumes[0].dirty
    assert all(read_back(d) == (1, [1]) for d in disks.values())
    assert store.commits == 1 and store.sectors_written == 3


async def test_rejected_change_writes_nothing() -> None:
    store, disks = make()
    with pytest.raises(ChangeRejected):
        await store.commit([SetDirty(7, True)])
    assert all(not d.writes for d in disks.values())
    assert store.metadata.model().generation == 0


async def test_failed_write_restores_previous_metadata_and_keeps_memory_at_t0() -> None:
    store, disks = make()
    await store.commit([SetDirty(0, True)])
    disks["d2"].fail_after = 0  # d0 and d1 get the new bytes, d2 refuses
    with pytest.raises(CommitFailed) as e:
        await store.commit([SetDirty(0, False)])
    assert e.value.restored == ("d0", "d1")
    # d2's failed write may have been torn, and d2 refuses the restore too: reported, never assumed fine.
    assert e.value.not_restored == ("d2",)
    # Memory still says dirty, and so does every disk: never clean in one place and dirty in another.
    assert store.model().volumes[0].dirty
    assert [read_back(d) for d in disks.values()] == [(1, [1])] * 3


async def test_rollback_that_fails_too_is_reported_by_disk() -> None:
    store, disks = make()
    disks["d1"].fail_after = 1  # the new write succeeds, the restore fails
    disks["d2"].fail_after = 0
    with pytest.raises(CommitFailed) as e:
        await store.commit(
            [SetDirty(0, True)],
        )
    assert e.value.not_restored == ("d1", "d2") and e.value.restored == ("d0",)
    assert "could NOT restore d1" in str(e.value)


async def test_store_runs_disk_work_through_its_runner() -> None:
    calls = []

    async def recording(fn):  # type: ignore[no-untyped-def]
        calls.append(fn)
        fn()

    disks = {"d0": FlakyDisk(4096, "/dev/sda")}
    store = MetadataStore(ToyMetadata(disks), runner=recording)
    await store.commit([SetDirty(0, True)])
    assert len(calls) == 1
