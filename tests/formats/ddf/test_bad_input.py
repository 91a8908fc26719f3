"""Corrupt, truncated and absurd DDF metadata gives MetadataError/NoMetadata naming where; 4Kn disks."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.base import first_difference
from formats.blockio import Disk, MemoryDisk, OverlayDisk
from formats.ddf import HANDLER
from formats.ddf.codec import crc
from formats.errors import MetadataError, NoMetadata
from tests.golden import disk_count, open_disk, overlay, scenarios

from .helpers import Window, container, poke

SIZE = 64 << 20
N = SIZE // 512
PRI, SEC, ANCHOR = (N - 32768) * 512, (N - 65536) * 512, SIZE - 512
SPAN = 618 * 512
CASES = [(s, n) for s in scenarios("ddf") for n in range(disk_count(s))]


def reseal(disk: OverlayDisk, offset: int, length: int = 512) -> None:
    data = bytearray(disk.read(offset, length))
    struct.pack_into(">I", data, 4, crc(data))
    poke(disk, offset, bytes(data))


def reseal_headers(disk: OverlayDisk) -> None:
    for off in (PRI, SEC, ANCHOR):
        reseal(disk, off)


def all_headers(disk: OverlayDisk, at: int, data: bytes) -> None:
    """Change a header field the same way in all three headers (so they still agree) and reseal them."""
    for off in (PRI, SEC, ANCHOR):
        poke(disk, off + at, data)
    reseal_headers(disk)


def assert_only_metadata_errors(disk: Disk) -> None:
    try:
        copy = HANDLER.load(disk)
    except NoMetadata as e:
        assert e.format == "ddf" and e.disk == disk.name
        return
    except MetadataError as e:
        assert e.format == "ddf" and e.disk == disk.name
        assert e.structure is not None
        return
    copy.examine()
    copy.encode()
    c = HANDLER.assemble([copy])
    c.model()
    try:
        c.encode()
    except MetadataError as e:
        assert e.format == "ddf" and e.structure is not None


def test_no_anchor() -> None:
    d = MemoryDisk(bytes(40 << 20))
    assert not HANDLER.probe(d)
    with pytest.raises(NoMetadata):
        HANDLER.load(d)
    assert HANDLER.probe(open_disk("ddf-raid0", 0))


def test_anchor_crc_names_the_field() -> None:
    d = overlay("ddf-raid5", 0)
    poke(d, ANCHOR + 0x100, b"\0")
    with pytest.raises(MetadataError) as e:
        HANDLER.load(d)
    assert (e.value.structure, e.value.field, e.value.disk, e.value.offset) == ("anchor", "crc", "/dev/sda", ANCHOR + 4)


def test_standard_crc32_is_not_mdadms() -> None:
    import zlib

    raw = bytearray(open_disk("ddf-raid0", 0).read(ANCHOR, 512))
    stored = struct.unpack_from(">I", raw, 4)[0]
    assert crc(raw) == stored
    raw[4:8] = b"\xff" * 4
    assert zlib.crc32(bytes(raw)) != stored


def test_revision_must_be_one_mdadm_knows() -> None:
    d = overlay("ddf-raid1", 0)
    all_headers(d, 32, b"02.00.00")
    with pytest.raises(MetadataError) as e:
        HANDLER.load(d)
    assert (e.value.structure, e.value.field) == ("anchor", "revision")


@pytest.mark.parametrize("damage", ["magic", "crc", "mismatch"])
def test_bad_primary_falls_back_to_the_secondary(damage: str) -> None:
    d = overlay("ddf-raid5-spare", 2)
    good = HANDLER.assemble([HANDLER.load(open_disk("ddf-raid5-spare", 2))]).model()
    if damage == "magic":
        poke(d, PRI, b"\0\0\0\0")
    elif damage == "crc":
        poke(d, PRI + 300, b"\x12")
    else:
        poke(d, PRI + 120, struct.pack(">Q", 12345))  # workspace_lba differs from the anchor's
        reseal(d, PRI)
    copy = HANDLER.load(d)
    assert copy.raw.active == "secondary"
    assert any("using the secondary" in p for p in copy.raw.problems)
    c = HANDLER.assemble([copy])
    assert c.model() == good
    assert any("secondary" in p for p in c.model().extra["problems"])
    # writing it back repairs the primary
    first = copy.encode()
    assert first_difference(d, [w for w in first if w.offset >= PRI]) is not None
    for w in first:
        d.write(w.offset, w.data)
    again = HANDLER.load(d)
    assert again.raw.active == "primary" and not again.raw.problems


def test_newer_closed_secondary_wins() -> None:
    d = overlay("ddf-raid1", 0)
    poke(d, SEC + 40, struct.pack(">I", 11))
    reseal(d, SEC)
    assert HANDLER.load(d).raw.active == "secondary"
    poke(d, SEC + 48, b"\x01")  # open: an unfinished write is not preferred
    reseal(d, SEC)
    assert HANDLER.load(d).raw.active == "primary"


def test_both_headers_bad() -> None:
    d = overlay("ddf-raid0", 1)
    poke(d, PRI + 8, b"x")
    poke(d, SEC + 8, b"x")
    with pytest.raises(MetadataError) as e:
        HANDLER.load(d)
    assert e.value.structure == "primary header" and e.value.offset == PRI and e.value.disk == "/dev/sdb"
    assert e.value.field == "crc"  # the primary was read first and its CRC is what failed


def test_too_small_for_ddf() -> None:
    base = open_disk("ddf-raid0", 0)
    small = MemoryDisk(bytes(32 << 20), name="/dev/small")
    small.write((32 << 20) - 512, base.read(ANCHOR, 512))
    with pytest.raises(MetadataError) as e:
        HANDLER.load(small)
    assert e.value.structure == "anchor" and "32 MiB" in e.value.message


@pytest.mark.parametrize(
    ("at", "value", "field"),
    [
        (204, struct.pack(">I", 3), "phys_section_length"),
        (212, struct.pack(">I", 4096), "virt_section_length"),
        (200, struct.pack(">I", 0x7FFFFFF0), "phys_section_offset"),
        (216, struct.pack(">I", 100), "config_section_offset"),  # overlaps the PD section
        (134, struct.pack(">H", 6), "config_record_len"),  # does not divide the 455-sector section
        (136, struct.pack(">H", 1024), "max_primary_element_entries"),  # 12 KiB of arrays in 7 sectors
        (132, struct.pack(">H", 1000), "max_partitions"),
    ],
)
def test_header_geometry_out_of_range(at: int, value: bytes, field: str) -> None:
    d = overlay("ddf-raid5", 1)
    all_headers(d, at, value)
    with pytest.raises(MetadataError) as e:
        HANDLER.load(d)
    assert e.value.field == field and e.value.disk == "/dev/sdb" and e.value.offset is not None


def test_entry_count_out_of_range() -> None:
    d = overlay("ddf-raid5", 0)
    poke(d, PRI + 2 * 512 + 10, struct.pack(">H", 5000))  # PD max_pdes beyond the section
    with pytest.raises(MetadataError) as e:
        HANDLER.load(d)
    assert (e.value.structure, e.value.field, e.value.offset) == ("phys", "max_pdes", PRI + 2 * 512 + 10)


def test_config_element_count_out_of_range() -> None:
    d = overlay("ddf-raid5", 0)
    conf = PRI + 162 * 512
    poke(d, conf + 64, struct.pack(">H", 300))
    reseal(d, conf, 7 * 512)
    with pytest.raises(MetadataError) as e:
        HANDLER.load(d)
    assert (e.value.structure, e.value.field, e.value.offset) == ("vd_config[0]", "prim_elmnt_count", conf + 64)


def test_bad_section_crcs_are_reported_not_fatal() -> None:
    d = overlay("ddf-raid5", 0)
    poke(d, PRI + 512 + 40, b"X")  # controller product id
    copy = HANDLER.load(d)
    assert copy.raw.problems == ["controller section CRC does not match"]


@pytest.mark.parametrize("cut", [512, 4096, 16 << 20, 32 << 20, (32 << 20) + 512, SIZE - 512])
def test_truncated_disk(cut: int) -> None:
    assert_only_metadata_errors(Window(open_disk("ddf-raid5", 0), SIZE - cut))


@settings(max_examples=150)
@pytest.mark.parametrize(("scenario", "n"), [("ddf-raid5-rebuild-stopped", 3), ("ddf-two-volumes", 0)])
@given(
    st.lists(st.tuples(st.integers(0, SPAN + 512 - 1), st.integers(0, 7)), min_size=1, max_size=8),
    st.sampled_from(["primary", "secondary", "anchor"]),
    st.booleans(),
)
def test_bit_flips(scenario: str, n: int, flips: list[tuple[int, int]], where: str, seal: bool) -> None:
    d = overlay(scenario, n)
    base = {"primary": PRI, "secondary": SEC, "anchor": ANCHOR - SPAN}[where]
    for off, bit in flips:
        pos = base + off
        poke(d, pos, bytes([d.read(pos, 1)[0] ^ (1 << bit)]))
    if seal:
        reseal_headers(d)
    assert_only_metadata_errors(d)


@settings(max_examples=200)
@given(st.integers(0, 511), st.binary(min_size=1, max_size=8))
def test_header_fields(offset: int, value: bytes) -> None:
    d = overlay("ddf-raid5-spare", 0)
    all_headers(d, offset, value[: 512 - offset])
    assert_only_metadata_errors(d)


@settings(max_examples=200)
@given(
    # (section, first sector, where to aim inside it, section bytes the CRC covers)
    st.sampled_from(
        [("phys", 2, 64, 128 * 512), ("virt", 130, 64, 32 * 512), ("config", 162, 0, 7 * 512), ("data", 617, 0, 512)]
    ),
    st.integers(0, 63),
    st.binary(min_size=1, max_size=8),
)
def test_section_fields_resealed(section: tuple[str, int, int, int], at: int, value: bytes) -> None:
    """Absurd values inside a section whose CRC has been fixed up: counts, refnums, element counts."""
    _, sector, base, length = section
    d = overlay("ddf-raid10", 1)
    start = PRI + sector * 512
    poke(d, start + base + at, value)
    reseal(
        d,
        start,
        max(length, 512) if length != 64 else (128 if sector == 2 else 32) * 512 if sector in (2, 130) else 512,
    )
    assert_only_metadata_errors(d)


@pytest.mark.parametrize(("scenario", "n"), CASES)
def test_4kn_disk_has_the_same_layout(scenario: str, n: int) -> None:
    """mdadm counts DDF in 512-byte units on a 4Kn disk too: the same bytes load to the same model."""
    golden = open_disk(scenario, n)
    d4 = Window(golden, SIZE, sector_size=4096)
    copy = HANDLER.load(d4)
    assert copy.sector_size == 4096
    c4 = HANDLER.assemble([copy]).model()
    c512 = HANDLER.assemble([HANDLER.load(golden)]).model()
    assert c4.sector_size == 4096 and c4.volumes == c512.volumes and c4.disks == c512.disks
    writes = copy.encode()
    assert all(w.offset % 4096 == 0 and len(w.data) % 4096 == 0 for w in writes)
    assert first_difference(d4, writes) is None
    assert [(w.offset, len(w.data)) for w in writes] == [(w.offset, len(w.data)) for w in copy.regions()]


def test_4kn_container_writes_whole_sectors() -> None:
    disks = [OverlayDisk(Window(open_disk("ddf-raid5", n), SIZE, sector_size=4096)) for n in range(3)]
    from formats.changes import SetDirty

    c = container("ddf-raid5", disks)
    new = c.apply([SetDirty(0, True)])
    for ref, ws in new.encode().items():
        disk = new.disks()[ref]
        for w in ws:
            disk.write(w.offset, w.data)  # OverlayDisk refuses writes that are not whole 4 KiB sectors
    assert HANDLER.assemble([HANDLER.load(d) for d in disks]).model().volume(0).dirty


@pytest.mark.parametrize(
    ("at", "lba", "field"),
    [
        (96, N, "primary_lba"),  # beyond the disk
        (104, 2**40, "secondary_lba"),  # far beyond
        (104, N - 100, "secondary_lba"),  # in the disk, but its sections would run over the anchor
        (104, N - 32768 - 10, "secondary_lba"),  # overlapping the primary's sections
    ],
)
def test_header_lba_off_the_disk_is_refused_at_load(at: int, lba: int, field: str) -> None:
    """mdadm skips such a copy, but a write would go where the anchor says: it could never be written."""
    d = overlay("ddf-raid5", 0)
    all_headers(d, at, struct.pack(">Q", lba))
    with pytest.raises(MetadataError) as e:
        HANDLER.load(d)
    err = e.value
    assert (err.structure, err.field, err.disk, err.offset) == ("anchor", field, "/dev/sda", ANCHOR + at)
    assert str(e.value).startswith(f"ddf: disk /dev/sda, anchor.{field} at byte ")
