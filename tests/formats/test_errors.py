from formats.errors import DiskIOError, MetadataError


def test_metadata_error_names_format_disk_structure_field_and_offset() -> None:
    e = MetadataError(
        "checksum mismatch", format="imsm", structure="mpb", field="check_sum", disk="/dev/sda", offset=0x3FFFC20
    )
    assert str(e) == "imsm: disk /dev/sda, mpb.check_sum at byte 0x3fffc20: checksum mismatch"


def test_metadata_error_without_location_is_still_readable() -> None:
    assert str(MetadataError("no anchor", format="ddf")) == "ddf: no anchor"


def test_disk_io_error_names_disk_and_offset() -> None:
    assert str(DiskIOError("short read", disk="/dev/sdb", offset=512)) == "disk /dev/sdb at byte 0x200: short read"
