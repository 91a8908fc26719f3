"""The metadata store: validate before writing, write every disk, roll back on failure."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import formats.imsm
from formats.base import Write, first_difference, write_all
from formats.blockio import MemoryDisk
from formats.changes import SetDirty
from formats.errors import ChangeRejected, DiskIOError
from mdmond.metadata import CommitFailed, MetadataStore, changed_runs
from tests.golden import disk_count, overlay

from .toyformat import FlakyDisk, ToyMetadata, read_back


def make(n: int = 3) -> tuple[MetadataStore, dict[str, FlakyDisk]]:
    disks = {f"d{i}": FlakyDisk(64 * 1024, f"/dev/sd{'abc'[i]}") for i in range(n)}
    return MetadataStore(ToyMetadata(disks)), disks


async def test_commit_reaches_every_disk_before_it_is_adopted() -> None:
    store, disks = make()
    await store.commit([SetDirty(0, True)])
    assert store.model().volumes[0].dirty
    assert all(read_back(d) == (1, [1]) for d in disks.values())
    assert store.commits == 1 and store.writes == 3 and store.bytes_written == 3 * 512


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


def test_changed_runs_finds_whole_sector_runs_in_order() -> None:
    old = Write(4096, bytes(512 * 6))
    new = bytearray(old.data)
    new[5] = 1  # sector 0
    new[512 * 2 + 7] = 1  # sectors 2..3
    new[512 * 3] = 1
    new[512 * 6 - 1] = 1  # sector 5, the last
    writes, undo = changed_runs([old], [Write(4096, bytes(new))], 512)
    assert [(w.offset, len(w.data)) for w in writes] == [(4096, 512), (4096 + 1024, 1024), (4096 + 2560, 512)]
    assert [(w.offset, len(w.data)) for w in undo] == [(w.offset, len(w.data)) for w in writes]
    assert all(u.data == bytes(len(u.data)) for u in undo)


@given(st.binary(min_size=2048, max_size=2048), st.lists(st.integers(0, 2047), max_size=20))
def test_changed_runs_reproduce_the_new_bytes(base: bytes, flips: list[int]) -> None:
    new = bytearray(base)
    for i in flips:
        new[i] ^= 0xFF
    disk = MemoryDisk(bytes(8192))
    disk.write(1024, base)
    writes, undo = changed_runs([Write(1024, base)], [Write(1024, bytes(new))], 512)
    write_all(disk, writes)
    assert disk.read(1024, 2048) == bytes(new)
    assert sum(len(w.data) for w in writes) == 512 * len({i // 512 for i in flips if new[i] != base[i]})
    write_all(disk, undo)
    assert disk.read(1024, 2048) == base


@given(st.lists(st.integers(0, 200 * 512 - 1), max_size=40))
def test_changed_runs_are_whole_maximal_runs_across_compare_blocks(flips: list[int]) -> None:
    """200 sectors: runs that start, end or pass at the 64-sector blocks compared at once."""
    base = bytes(200 * 512)
    new = bytearray(base)
    for i in flips:
        new[i] ^= 0x5A
    writes, undo = changed_runs([Write(0, base)], [Write(0, bytes(new))], 512)
    changed = sorted({i // 512 for i in flips if new[i] != base[i]})  # a byte flipped twice is back
    covered = [s for w in writes for s in range(w.offset // 512, (w.offset + len(w.data)) // 512)]
    assert covered == changed  # exactly the changed sectors, in order
    assert all(a.offset + len(a.data) < b.offset for a, b in itertools.pairwise(writes))  # maximal
    assert all(w.data == bytes(new[w.offset : w.offset + len(w.data)]) for w in writes)
    assert all(u.data == bytes(len(u.data)) for u in undo)


async def test_second_commit_writes_only_changed_sectors_and_reads_nothing() -> None:
    store, disks = make()
    await store.commit([SetDirty(0, True)])
    reads = {ref: d.reads for ref, d in disks.items()}
    before = store.bytes_written
    await store.commit([SetDirty(0, False)])
    assert {ref: d.reads for ref, d in disks.items()} == reads  # rollback bytes were in hand
    assert store.bytes_written - before == 3 * 512
    assert all(read_back(d) == (2, [0]) for d in disks.values())


async def test_imsm_dirty_flip_writes_a_few_sectors_and_mdadm_copy_stays_valid() -> None:
    disks = [overlay("imsm-raid5", n) for n in range(disk_count("imsm-raid5"))]
    h = formats.imsm.HANDLER
    store = MetadataStore(h.assemble([h.load(d) for d in disks]), runner=inline)
    await store.commit([SetDirty(0, True)])  # first commit: T0 read from disk, only the difference written
    first = store.bytes_written
    await store.commit([SetDirty(0, False)])  # then from the bytes in hand
    flip = store.bytes_written - first
    assert 0 < first <= 2 * 512 * len(disks)
    assert 0 < flip <= 2 * 512 * len(disks)
    again = h.assemble([h.load(d) for d in disks]).model()
    assert not again.volume(0).dirty and again.generation == store.model().generation
    for d in disks:
        assert first_difference(d, h.load(d).encode()) is None


async def inline(fn):  # type: ignore[no-untyped-def]
    fn()


async def test_primed_store_reads_nothing_at_its_first_commit_and_writes_only_the_difference() -> None:
    """The first write after assembly waits for no read (0.2-0.4 s seen in the test bed before priming)."""
    store, disks = make()
    await store.prime()
    reads = {ref: d.reads for ref, d in disks.items()}
    await store.commit([SetDirty(0, True)])
    assert {ref: d.reads for ref, d in disks.items()} == reads
    assert all(read_back(d) == (1, [1]) for d in disks.values())
    imsm = [overlay("imsm-raid5", n) for n in range(disk_count("imsm-raid5"))]
    h = formats.imsm.HANDLER
    primed = MetadataStore(h.assemble([h.load(d) for d in imsm]), runner=inline)
    await primed.prime()
    await primed.commit([SetDirty(0, True)])
    assert primed.bytes_written == 3 * 512  # one sector a disk: what priming read was the T0 to diff against


class UnreadableDisk(FlakyDisk):
    def read(self, offset: int, length: int) -> bytes:
        raise DiskIOError("injected read failure", disk=self.name, offset=offset)


async def test_unreadable_t0_fails_the_commit_cleanly_and_writes_nothing() -> None:
    """The rollback bytes are read inside the commit's error handling: a CommitFailed, not a bare DiskIOError."""
    disks: dict[str, FlakyDisk] = {"d0": FlakyDisk(4096, "/dev/sda"), "d1": UnreadableDisk(4096, "/dev/sdb")}
    store = MetadataStore(ToyMetadata(disks))
    with pytest.raises(CommitFailed) as e:
        await store.commit([SetDirty(0, True)])
    assert e.value.restored == () and e.value.not_restored == ()
    assert str(e.value) == (
        "metadata write failed before anything was written: disk /dev/sdb at byte 0xe00: injected read failure"
    )
    assert not disks["d0"].writes and not disks["d1"].writes
    assert not store.model().volumes[0].dirty
