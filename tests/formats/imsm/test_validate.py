"""States no writer produces are refused by validation, naming format, structure, field, disk and byte."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from formats.errors import MetadataError
from formats.imsm.container import IMSMContainer
from formats.imsm.records import MpbRec
from tests.golden import scenarios

from .helpers import container


def refused(scenario: str, change: Callable[[MpbRec], None]) -> MetadataError:
    c = container(scenario)
    change(c.mpb)
    with pytest.raises(MetadataError) as e:
        c.validate()
    err = e.value
    assert err.format == "imsm" and None not in (err.structure, err.field, err.disk, err.offset)
    return err


def on_disk(c: IMSMContainer, err: MetadataError, n: int) -> int:
    """The little-endian u32 at the error's byte, on the named disk, as the golden image holds it."""
    disk = next(d for d in c.members.values() if d.name == err.disk)
    assert err.offset is not None
    return int(struct.unpack("<I", disk.read(err.offset, 4))[0]) if n == 4 else disk.read(err.offset, n)[0]


@pytest.mark.parametrize("scenario", scenarios("imsm"))
def test_every_golden_container_and_disk_validates(scenario: str) -> None:
    c = container(scenario)
    c.validate()


def test_one_disk_in_every_raid5_slot() -> None:
    def change(mpb: MpbRec) -> None:
        mpb.devs[0].map0.disk_ord_tbl[:] = [0, 0, 0]

    err = refused("imsm-raid5", change)
    assert (err.structure, err.field, err.disk) == ("dev[0].map[0]", "disk_ord_tbl[1]", "/dev/sda")
    assert "in slots 0 and 1" in err.message
    # the byte named is slot 1's ord entry on /dev/sda: it holds 1 there
    assert on_disk(container("imsm-raid5"), err, 4) == 1
    assert str(err).startswith("imsm: disk /dev/sda, dev[0].map[0].disk_ord_tbl[1] at byte 0x")


def test_checkpoint_past_the_members_end() -> None:
    def change(mpb: MpbRec) -> None:
        mpb.devs[0].vol.set_curr_migr_unit(10**6)  # x 256 sectors: far past 49152

    err = refused("imsm-raid5-rebuild-stopped", change)
    assert (err.structure, err.field) == ("dev[0].vol", "curr_migr_unit_lo")
    assert on_disk(container("imsm-raid5-rebuild-stopped"), err, 4) == 96
    assert "resumed rebuild would skip" in err.message


def test_checkpoint_at_the_end_is_allowed() -> None:
    c = container("imsm-raid5-rebuild-stopped")
    c.mpb.devs[0].vol.set_curr_migr_unit(49152 // 256)
    c.validate()


def test_extent_past_the_disk() -> None:
    def change(mpb: MpbRec) -> None:
        mpb.devs[0].map0.set_pba_of_lba0(mpb.disks[0].total_blocks(False) - 1000)

    err = refused("imsm-raid1", change)
    assert (err.structure, err.field) == ("dev[0].map[0]", "blocks_per_member_lo")
    assert "runs past the data area" in err.message
    c = container("imsm-raid1")
    assert on_disk(c, err, 4) == c.mpb.devs[0].map0.blocks_per_member_lo


def test_array_larger_than_its_members() -> None:
    def change(mpb: MpbRec) -> None:
        mpb.devs[0].set_size_sectors(mpb.devs[0].size_sectors * 2)

    err = refused("imsm-raid5", change)
    assert (err.structure, err.field) == ("dev[0]", "size_low")
    c = container("imsm-raid5")
    assert on_disk(c, err, 4) == c.mpb.devs[0].size_low


def test_structural_errors_name_the_disk_and_byte_too() -> None:
    def change(mpb: MpbRec) -> None:
        mpb.disks[1].serial = mpb.disks[0].serial

    err = refused("imsm-raid5", change)
    assert (err.structure, err.field, err.disk) == ("disk[1]", "serial", "/dev/sda")
    assert container("imsm-raid5").members[0].read(err.offset or 0, 12) == b"MDVM00000001"


def test_disks_of_two_containers_name_the_foreign_disks_family_byte() -> None:
    from formats.imsm import HANDLER

    from .helpers import load

    a, b = load("imsm-raid5", 0), load("imsm-raid1", 1)
    with pytest.raises(MetadataError) as e:
        HANDLER.assemble([a, b])
    err = e.value
    assert (err.structure, err.disk) == ("mpb", "/dev/sdb") and err.field in ("orig_family_num", "family_num")
    assert err.offset is not None
    assert struct.unpack("<I", b.disk.read(err.offset, 4))[0] == b.mpb.uuid_family


def test_a_volume_of_no_size_is_refused() -> None:
    """Found by the fuzzer: a zeroed dev header left a 0-sector volume whose rebuild checkpoint was past its end."""

    def change(mpb: MpbRec) -> None:
        mpb.devs[0].set_size_sectors(0)

    err = refused("imsm-raid5-rebuild-stopped", change)
    assert (err.structure, err.field) == ("dev[0]", "size_low") and "0 sectors" in err.message


def test_maps_of_a_resync_that_disagree_on_the_level() -> None:
    """Found by the fuzzer: map 0 of a resync said RAID0, map 1 RAID1: a RAID1 reported twice its size."""

    def change(mpb: MpbRec) -> None:
        mpb.devs[0].map0.raid_level = 0

    err = refused("imsm-raid1-resync-killed", change)
    assert (err.structure, err.field) == ("dev[0].map[0]", "raid_level") and "outside a reshape" in err.message
    assert on_disk(container("imsm-raid1-resync-killed"), err, 1) == 1


def test_serials_that_differ_only_after_the_nul_are_the_same_disk() -> None:
    """Found by the fuzzer: a bit flipped after disk 2's NUL made it print as disk 0, twice in one volume."""

    def change(mpb: MpbRec) -> None:
        mpb.disks[2].serial = mpb.disks[0].serial[:12] + b"\0\0\0\x01"

    err = refused("imsm-raid5", change)
    assert (err.structure, err.field) == ("disk[2]", "serial") and "share the serial" in err.message
