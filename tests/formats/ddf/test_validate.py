"""States no writer produces are refused by validation, naming format, structure, field, disk and byte."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from formats.ddf.container import DDFContainer
from formats.errors import MetadataError
from tests.golden import overlay, scenarios

from .helpers import container, poke


def refused(scenario: str, change: Callable[[DDFContainer], None]) -> MetadataError:
    c = container(scenario)
    change(c)
    with pytest.raises(MetadataError) as e:
        c.validate()
    err = e.value
    assert err.format == "ddf" and None not in (err.structure, err.field, err.disk, err.offset)
    return err


def golden_bytes(scenario: str, err: MetadataError, n: int) -> bytes:
    """What the golden disk named by the error holds at the byte named."""
    c = container(scenario)
    disk = next(m.disk for m in c.members if m.disk is not None and m.disk.name == err.disk)
    assert err.offset is not None
    return disk.read(err.offset, n)


def bvd(c: DDFContainer, seq: int) -> Any:
    (guid,) = {g for g, _ in c.configs}
    return c.configs[(guid, seq)]


@pytest.mark.parametrize("scenario", scenarios("ddf"))
def test_every_golden_container_validates(scenario: str) -> None:
    container(scenario).validate()


@pytest.mark.parametrize(("prl", "rlq", "field"), [(0x02, 0, "prl"), (0x7E, 0, "prl"), (0x05, 7, "rlq")])
def test_levels_outside_the_spec_table(prl: int, rlq: int, field: str) -> None:
    def change(c: DDFContainer) -> None:
        conf = next(iter(c.configs.values()))
        conf.prl, conf.rlq = prl, rlq

    err = refused("ddf-raid5", change)
    assert err.field == field and err.structure.startswith("vd_config[")
    assert golden_bytes("ddf-raid5", err, 1) == bytes([5 if field == "prl" else 3])  # RAID5, left-symmetric


def test_raid1_two_disk_qualifier_over_three_members() -> None:
    def change(c: DDFContainer) -> None:
        conf = next(iter(c.configs.values()))
        conf.prim_elmnt_count = 3
        conf.phys_refnum[2] = conf.phys_refnum[0] ^ 1

    err = refused("ddf-raid1", change)
    assert err.field == "prim_elmnt_count" and "two-disk RAID1" in err.message


def test_raid10_bvds_that_disagree() -> None:
    def change(c: DDFContainer) -> None:
        bvd(c, 1).array_blocks -= 2048

    err = refused("ddf-raid10", change)
    assert err.field == "array_blocks" and "differs from BVD 0" in err.message
    assert err.disk in ("/dev/sda", "/dev/sdc")  # BVD 1 lives on its own members' disks
    assert golden_bytes("ddf-raid10", err, 8) == struct.pack(">Q", 131072)


def test_raid10_with_a_bvd_recorded_nowhere() -> None:
    """Every disk present, but only BVD 0 recorded: 2 of 4 members would look like a whole, normal RAID10."""

    def change(c: DDFContainer) -> None:
        guid = bytes(bvd(c, 1).guid)
        del c.configs[(guid, 1)]

    err = refused("ddf-raid10", change)
    assert err.field == "sec_elmnt_count" and "only [0]" in err.message


def test_raid10_single_disk_knows_only_its_own_bvd() -> None:
    """mdadm keeps each BVD on its own members: one disk alone is not an impossible state."""
    from formats.ddf import HANDLER
    from tests.golden import open_disk

    HANDLER.assemble([HANDLER.load(open_disk("ddf-raid10", 0))]).validate()


def test_one_disk_in_two_bvds() -> None:
    def change(c: DDFContainer) -> None:
        bvd(c, 1).phys_refnum[0] = bvd(c, 0).phys_refnum[0]

    err = refused("ddf-raid10", change)
    assert err.field == "phys_refnum[0]" and "BVDs" in err.message


def test_one_disk_twice_in_a_bvd() -> None:
    def change(c: DDFContainer) -> None:
        conf = next(iter(c.configs.values()))
        conf.phys_refnum[2] = conf.phys_refnum[0]

    err = refused("ddf-raid5", change)
    assert err.field == "phys_refnum[2]" and "twice" in err.message
    assert golden_bytes("ddf-raid5", err, 4) != b"\xff" * 4  # the third member's refnum


def test_extent_past_the_disk() -> None:
    def change(c: DDFContainer) -> None:
        conf = next(iter(c.configs.values()))
        conf.lba_offset[1] = 10**9

    err = refused("ddf-raid5", change)
    assert err.field == "lba_offset[1]" and "ends past" in err.message
    assert golden_bytes("ddf-raid5", err, 8) == struct.pack(">Q", 0)


def test_extent_past_the_disk_even_if_the_pd_says_otherwise() -> None:
    def change(c: DDFContainer) -> None:
        for e in c.phys.entries:
            if e is not None:
                e.config_size = 1 << 40
        next(iter(c.configs.values())).lba_offset[0] = 1 << 30

    err = refused("ddf-raid5", change)
    assert err.field == "lba_offset[0]" and "end of its disk" in err.message


def test_array_larger_than_its_members() -> None:
    def change(c: DDFContainer) -> None:
        conf = next(iter(c.configs.values()))
        conf.array_blocks = conf.blocks * 3  # a 3-disk RAID5 holds 2 members' worth

    err = refused("ddf-raid5", change)
    assert err.field == "array_blocks"


def test_table_errors_name_the_disk_and_byte() -> None:
    def change(c: DDFContainer) -> None:
        c.phys.header.used_pdes += 1

    err = refused("ddf-raid5", change)
    assert (err.structure, err.field, err.disk) == ("phys", "used_pdes", "/dev/sda")
    assert golden_bytes("ddf-raid5", err, 2) == struct.pack(">H", 3)


def test_a_bad_level_is_refused_through_load_and_assembly() -> None:
    """The bytes path: a sealed config record with PRL 0x02 on every disk loads, but never validates."""
    from formats.ddf import HANDLER
    from formats.ddf.codec import crc

    disks = [overlay("ddf-raid1", n) for n in range(2)]
    for d in disks:
        copy = HANDLER.load(d)
        h = copy.header
        rec = (copy.raw.header.lba + h.config_section_offset) * 512
        length = h.config_record_len * 512
        poke(d, rec + 67, b"\x02")
        data = bytearray(d.read(rec, length))
        struct.pack_into(">I", data, 4, crc(data))
        poke(d, rec, bytes(data))
    c = HANDLER.assemble([HANDLER.load(d) for d in disks])
    with pytest.raises(MetadataError) as e:
        c.validate()
    assert e.value.field == "prl" and disks[0].read(e.value.offset or 0, 1) == b"\x02"


def test_disks_of_two_containers_name_the_foreign_anchors_guid() -> None:
    from formats.ddf import HANDLER

    from .helpers import load

    a, b = load("ddf-raid5", 0), load("ddf-raid1", 1)
    with pytest.raises(MetadataError) as e:
        HANDLER.assemble([a, b])
    err = e.value
    assert (err.structure, err.field, err.disk) == ("anchor", "guid", "/dev/sdb")
    assert b.disk.read(err.offset or 0, 24) == bytes(b.raw.anchor.guid)


@pytest.mark.parametrize("field", ["blocks", "array_blocks"])
def test_a_volume_of_no_size_is_refused(field: str) -> None:
    def change(c: DDFContainer) -> None:
        next(iter(c.configs.values()))[field] = 0

    err = refused("ddf-raid5", change)
    assert err.field == field and "no size" in err.message


def test_a_working_disk_holding_a_record_that_does_not_name_it() -> None:
    """Found by the fuzzer: /dev/sda's copy of RAID10 BVD 1 lost its refnums (resealed) and won the merge;
    the next write would have dropped BVD 1 from both its disks, and the container would not load again."""

    def change(c: DDFContainer) -> None:
        b = bvd(c, 1)
        b.phys_refnum[0] = b.phys_refnum[1] = 0

    err = refused("ddf-raid10", change)
    assert (err.structure, err.field, err.disk) == ("vd_config[0]", "phys_refnum", "/dev/sda")
    assert "no BVD of it names this disk" in err.message
    (refnum,) = struct.unpack(">I", golden_bytes("ddf-raid10", err, 4))
    assert refnum == 0xD5250AF6  # the byte named is /dev/sda's own refnum in its record, as mdadm wrote it
