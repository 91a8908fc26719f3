"""The command line: examine (text, JSON, round trip) and dry-run, as an administrator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdmond.cli import main
from tests.golden import examine, golden_serial, image_spec, image_specs


def test_examine_json_matches_mdadm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examine", "--json", image_spec("imsm-raid5", 0)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    ex = examine("imsm-raid5", 0)
    assert entry["format"] == "imsm" and entry["uuid"] == ex.fields["UUID"]
    (vol,) = entry["volumes"]
    assert vol["level"] == 5 and vol["state"] == "normal" and vol["dirty"] is False
    assert [m["serial"] for m in vol["members"]] == ["MDVM00000000", "MDVM00000001", "MDVM00000002"]


def test_examine_text_with_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examine", "--check-roundtrip", image_spec("imsm-raid1", 0)]) == 0
    out = capsys.readouterr().out
    assert "Intel Raid ISM Cfg Sig." in out and "Round trip : identical" in out


def test_bad_image_exits_1_with_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "blank.img"
    img.write_bytes(bytes(1 << 20))
    assert main(["examine", "--json", str(img)]) == 1
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["device"] == str(img) and entry["error"]["kind"] == "no-metadata"
    assert {"kind", "message", "what", "where"} <= set(entry["error"]) and entry["error"]["what"] == str(img)


def test_dry_run_json_errors_and_warnings_have_the_one_error_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    assert main(["dry-run", "--json", "--duration", "2", image_spec("imsm-raid1", 0), str(blank)]) == 1
    report = json.loads(capsys.readouterr().out)
    (err,) = report["errors"]
    (warn,) = report["warnings"]
    assert err == {"kind": "no-metadata", "message": err["message"], "what": str(blank), "where": None}
    assert set(warn) == {"kind", "message", "what", "where"} and warn["kind"] == "incomplete"


def test_missing_file_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examine", "/nonexistent/disk.img"]) == 1
    assert "/nonexistent/disk.img" in capsys.readouterr().err


def test_dry_run_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = image_specs("imsm-raid1")
    assert main(["dry-run", "--json", "--write-at", "1", "--duration", "10", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    (c,) = report["containers"]
    events = [e["event"] for e in c["events"]]
    assert events.count("state-written") >= 3  # read-auto, active, clean
    assert c["after"]["volumes"][0]["dirty"] is False


def test_round_trip_that_cannot_be_checked_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from formats.errors import DiskIOError
    from formats.imsm.disk import IMSMDiskCopy

    def broken(self: IMSMDiskCopy) -> list[object]:
        raise DiskIOError("access of 512 bytes is outside the disk", disk=self.disk.name, offset=1 << 40)

    monkeypatch.setattr(IMSMDiskCopy, "encode", broken)
    assert main(["examine", "--check-roundtrip", image_spec("imsm-raid1", 0)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot re-encode the imsm metadata" in err[0] and "outside the disk" in err[0]


def test_examine_shows_metadata_the_daemon_would_refuse_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One disk in both slots of a RAID1 (checksum fixed up): shown, exit 1, one line naming the byte."""
    import struct

    from formats.imsm.codec import checksum
    from tests.golden import image_path

    data = bytearray(image_path("imsm-raid1", 0).read_bytes())
    anchor = len(data) - 1024
    size = struct.unpack_from("<I", data, anchor + 0x24)[0]
    assert size <= 512  # one sector: the ord table is in the anchor
    ords = 216 + 48 * 2 + 80 + 32 + 48
    struct.pack_into("<2I", data, anchor + ords, 0, 0)
    struct.pack_into("<I", data, anchor + 0x20, checksum(data[anchor : anchor + 512], size))
    img = tmp_path / "bad.img"
    img.write_bytes(bytes(data))
    assert main(["examine", "--json", f"{img},serial={golden_serial(0)}"]) == 1
    out = capsys.readouterr()
    (entry,) = json.loads(out.out)
    assert entry["invalid"]["structure"] == "dev[0].map[0]" and entry["invalid"]["field"] == "disk_ord_tbl[1]"
    assert entry["invalid"]["offset"] == anchor + ords + 4
    (line,) = out.err.strip().splitlines()
    assert "would refuse" in line and f"disk_ord_tbl[1] at byte {anchor + ords + 4:#x}" in line
