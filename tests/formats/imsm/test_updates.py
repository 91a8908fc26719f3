"""mdadm's update messages (``MdadmUpdate``) applied as mdadm 4.2's mdmon applies them.

The payloads are built (``helpers.py``) from the C declarations in mdadm 4.2's
``super-intel.c`` with Python's *native* ``struct`` formats (``@``), not with
the package's own ``construct`` declarations.

The byte-exact checks start from states written by the real mdadm 4.2 + mdmon
(golden images and a transcript in which a second volume was created while
mdmon ran), take the second volume away to get the state mdmon held before the
create message arrived, send the message mdadm would have sent for it, and
compare the resulting MPB with the real one byte for byte.
"""

from __future__ import annotations

import base64
import functools
import json
import lzma
import random
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats.base import write_all
from formats.blockio import FileDisk, OverlayDisk
from formats.changes import Environment, MdadmUpdate, SetDirty
from formats.errors import ChangeRejected, MetadataError
from formats.imsm import HANDLER
from formats.imsm import structs as S
from formats.imsm.codec import mpb_bytes_for_disk
from formats.imsm.container import IMSMContainer
from formats.imsm.records import DevRec
from formats.imsm.updates import CreateArray, KillArray, RenameArray, decode, must_be_inactive
from tests.golden import disk_count

from .helpers import (
    T_ACTIVATE_SPARE,
    T_ADD_REMOVE,
    T_PREALLOC,
    T_RESHAPE_DISKS,
    T_RESHAPE_MIGR,
    T_TAKEOVER,
    before_state,
    c_imsm_dev,
    container,
    create_payload,
    gen_migr_payload,
    kill_payload,
    real_mpb,
    rename_payload,
    rwh_payload,
    size_change_payload,
    type_only,
    vol1_message,
    writable,
)

ENV = Environment(now=lambda: 1_700_000_000.0, rng=random.Random(11))
TRANSCRIPT = Path(__file__).parents[2] / "data" / "transcripts" / "imsm-raid1-raid0.json"


def transcript_disks(tmp: Path) -> list[FileDisk]:
    """Step "created" of imsm-raid1-raid0: vol1 (RAID0) was created by mdadm 4.2 while mdmon ran."""
    data = json.loads(TRANSCRIPT.read_text())
    step = data["steps"][0]
    out = []
    for n, d in enumerate(data["disks"]):
        entry = step["metadata"][d["device"]]
        raw = lzma.decompress(base64.b64decode(entry["xz_base64"]))
        path = tmp / f"disk{n}.img"
        with open(path, "wb") as f:
            pos = 0
            for off, length in entry["extents"]:
                f.seek(off)
                f.write(raw[pos : pos + length])
                pos += length
            f.truncate(entry["size"])
        out.append(FileDisk(str(path), name=d["device"], serial=d["serial"]))
    return out


# (scenario, the golden whose single volume has the same shape as vol0: its header says what
#  mdadm wrote before the second volume existed)
CASES = {
    "imsm-two-volumes": "imsm-raid1",  # RAID1 24M on 2 disks, then RAID0 on the rest
    "imsm-raid5-raid1": "imsm-raid5",  # RAID5 on 3 of 4 disks, then RAID1 on a spare + a RAID5 member
    "transcript imsm-raid1-raid0": "imsm-raid1",  # RAID1 8M on 2 disks, then RAID0 on the rest
}


def after_disks(case: str, tmp: Path) -> list[OverlayDisk]:
    if case.startswith("transcript"):
        if not TRANSCRIPT.exists():
            pytest.skip("transcript not present")
        return [OverlayDisk(d) for d in transcript_disks(tmp)]
    return [writable(case, n) for n in range(disk_count(case))]


@pytest.mark.parametrize("case", list(CASES))
def test_create_second_volume_is_byte_exact(case: str, tmp_path: Path) -> None:
    disks = after_disks(case, tmp_path)
    want = real_mpb(disks[0])
    after = HANDLER.assemble([HANDLER.load(d) for d in disks])
    assert len(after.mpb.devs) == 2
    before = before_state(after, CASES[case])
    payload = vol1_message(want, after)

    got = before.apply([MdadmUpdate(payload)], ENV)

    assert mpb_bytes_for_disk(got.mpb, 512) == want  # every byte, checksum and generation included
    assert got.model() == after.model()
    assert got.mpb.generation_num == before.mpb.generation_num + 1
    assert got.mpb.num_raid_devs_created == before.mpb.num_raid_devs_created  # mdmon leaves it alone
    assert before.model().volumes == after.model().volumes[:1]  # the original is untouched
    # written: every member (the former spare too) carries the real MPB
    for ref, writes in got.encode().items():
        write_all(got.disks()[ref], writes)
    for d in disks:
        assert real_mpb(d) == want, d.name


def test_create_rewrites_ords_from_serials() -> None:
    disks = [writable("imsm-raid5-raid1", n) for n in range(4)]
    want = real_mpb(disks[0])
    after = HANDLER.assemble([HANDLER.load(d) for d in disks])
    before = before_state(after, "imsm-raid5")
    dev = after.mpb.devs[1]
    bogus = replace(dev.map0, disk_ord_tbl=[0x01000007, 0x00ABCDEF])
    dev_b = DevRec(**{k: v for k, v in vars(dev).items() if not k.startswith("_")})
    dev_b._vol, dev_b._maps = dev.vol, [bogus]
    serials = [after.mpb.disks[dev.map0.idx(s)].serial for s in range(2)]
    got = before.apply([MdadmUpdate(create_payload(1, c_imsm_dev(dev_b), serials))], ENV)
    assert mpb_bytes_for_disk(got.mpb, 512) == want
    assert [s.rec.serial_text for s in before.spares] == ["MDVM00000002"] and not got.spares


# -- refused creates: clear message, container untouched ------------------------------------------


def _two_volume_before() -> tuple[IMSMContainer, bytes, IMSMContainer]:
    disks = [writable("imsm-two-volumes", n) for n in range(2)]
    want = real_mpb(disks[0])
    after = HANDLER.assemble([HANDLER.load(d) for d in disks])
    return before_state(after, "imsm-raid1"), want, after


def _rejected(c: IMSMContainer, payload: bytes, *words: str) -> str:
    snapshot = (mpb_bytes_for_disk(c.mpb, 512), c.model(), [s.rec for s in c.spares], dict(c.members))
    with pytest.raises(ChangeRejected) as e:
        c.apply([MdadmUpdate(payload)], ENV)
    msg = str(e.value)
    assert msg.startswith("imsm: "), msg
    for w in words:
        assert w in msg, msg
    assert snapshot == (mpb_bytes_for_disk(c.mpb, 512), c.model(), [s.rec for s in c.spares], dict(c.members))
    return msg


def _vol1_parts() -> tuple[IMSMContainer, DevRec, list[bytes]]:
    before, _, after = _two_volume_before()
    dev = after.mpb.devs[1]
    return before, dev, [after.mpb.disks[dev.map0.idx(s)].serial for s in range(2)]


def test_create_wrong_length() -> None:
    before, dev, serials = _vol1_parts()
    good = create_payload(1, c_imsm_dev(dev), serials)
    _rejected(before, good[:-1], "update_create_array", "length at byte", f"{len(good) - 1} bytes")
    _rejected(before, good + b"\0", "update_create_array", "length at byte")
    _rejected(before, good[:100], "update_create_array", "dev at byte 8")
    _rejected(before, good[:3], "type at byte 0", "shorter")


def test_unknown_type() -> None:
    before, _, _ = _two_volume_before()
    _rejected(before, type_only(12), "type at byte 0", "unknown update type 12")
    _rejected(before, type_only(-1), "unknown update type -1")
    _rejected(before, b"", "type at byte 0")


def test_create_unknown_serial() -> None:
    before, dev, serials = _vol1_parts()
    payload = create_payload(1, c_imsm_dev(dev), [serials[0], b"NOSUCHDISK"])
    off = 8 + dev.size + 16
    _rejected(before, payload, "update_create_array", f"disk_info[1].serial at byte {off}", "NOSUCHDISK")


def test_create_missing_member_is_refused() -> None:
    before, dev, serials = _vol1_parts()
    gone = next(i for i, d in enumerate(before.mpb.disks) if d.serial == serials[1])
    before.members.pop(gone)  # the disk has left the container since mdadm chose it
    _rejected(before, create_payload(1, c_imsm_dev(dev), serials), "not a present disk")


def test_create_duplicate_index_and_gap() -> None:
    before, dev, serials = _vol1_parts()
    _rejected(before, create_payload(0, c_imsm_dev(dev), serials), "dev_idx at byte 4", "already exists")
    _rejected(before, create_payload(2, c_imsm_dev(dev), serials), "dev_idx at byte 4", "gap")
    # first come wins: the second of two identical creates is refused
    once = before.apply([MdadmUpdate(create_payload(1, c_imsm_dev(dev), serials))], ENV)
    _rejected(once, create_payload(1, c_imsm_dev(dev), serials), "already exists")


def test_create_overlapping_extent() -> None:
    before, dev, serials = _vol1_parts()
    m = replace(dev.map0, pba_of_lba0_lo=49152)  # vol0 ends at 49152 (inclusive in mdmon's test)
    overlapping = DevRec(**{k: v for k, v in vars(dev).items() if not k.startswith("_")})
    overlapping._vol, overlapping._maps = dev.vol, [m]
    _rejected(before, create_payload(1, c_imsm_dev(overlapping), serials), "overlap volume vol0", "pba_of_lba0")
    ok = replace(dev.map0, pba_of_lba0_lo=49153)
    overlapping._maps = [ok]
    before.apply([MdadmUpdate(create_payload(1, c_imsm_dev(overlapping), serials))], ENV)


def test_create_bad_fields() -> None:
    before, dev, serials = _vol1_parts()
    good = bytearray(create_payload(1, c_imsm_dev(dev), serials))
    bad = bytearray(good)
    bad[8 + 80 + 8] = 1  # vol.migr_state
    _rejected(before, bytes(bad), "dev.vol.migr_state at byte 96")
    bad = bytearray(good)
    bad[120 + 15] = 7  # raid_level
    _rejected(before, bytes(bad), "dev.vol.map[0].raid_level at byte 135")
    bad = bytearray(good)
    bad[120 + 16] = 0  # num_members
    _rejected(before, bytes(bad), "num_members at byte 136")
    _rejected(before, create_payload(1, c_imsm_dev(dev), [serials[0], serials[0]]), "is already slot 0")
    _rejected(before, create_payload(1, c_imsm_dev(dev), [serials[0], b""]), "empty serial")
    named = DevRec(**{k: v for k, v in vars(dev).items() if not k.startswith("_")})
    named._vol, named._maps, named.volume = dev.vol, dev.maps, b"vol0".ljust(16, b"\0")
    _rejected(before, create_payload(1, c_imsm_dev(named), serials), "named vol0 exists")


def test_reshape_family_and_activate_spare_are_refused() -> None:
    before, _, _ = _two_volume_before()
    for p in (
        gen_migr_payload(5),
        struct.pack("@iii", T_TAKEOVER, 0, 1),
        struct.pack("@iiii", T_RESHAPE_DISKS, 2, 3, 0x0810),
        struct.pack("@iiiiiiii", T_RESHAPE_MIGR, 2, 3, 0, 5, 0, 128, 0),
    ):
        _rejected(before, p, "reshape updates are not supported yet")
    _rejected(before, struct.pack("@iiqiiq", T_ACTIVATE_SPARE, 0, 0, 1, 0, 0), "update_activate_spare", "pointer")


# -- kill, rename, size, policy, no-ops --------------------------------------------------------


def _two() -> IMSMContainer:
    return container("imsm-two-volumes")


def test_kill_array() -> None:
    c = _two()
    got = c.apply([MdadmUpdate(kill_payload(1))], ENV)
    assert [v.name for v in got.model().volumes] == ["vol0"]
    assert got.mpb.generation_num == c.mpb.generation_num + 1
    assert len(got.mpb.disks) == 2  # the disks stay in the table
    got0 = c.apply([MdadmUpdate(kill_payload(0))], ENV)
    assert [v.name for v in got0.model().volumes] == ["vol1"]
    assert got0.mpb.devs[0] == c.mpb.devs[1]
    _rejected(got, kill_payload(0), "update_kill_array", "last volume")
    _rejected(c, kill_payload(2), "no volume 2")
    _rejected(c, kill_payload(1)[:7], "length at byte")
    c.active_volumes = frozenset({1})
    assert must_be_inactive(KillArray(0), 2) == {0, 1}
    _rejected(c, kill_payload(0), "volume 1 is active")
    _rejected(c, kill_payload(1), "volume 1 is active")
    c.active_volumes = frozenset({0})
    assert [v.name for v in c.apply([MdadmUpdate(kill_payload(1))], ENV).model().volumes] == ["vol0"]


def test_kill_written_and_reloaded() -> None:
    disks = [writable("imsm-two-volumes", n) for n in range(2)]
    c = container("imsm-two-volumes", disks)
    got = c.apply([MdadmUpdate(kill_payload(1))], ENV)
    for ref, writes in got.encode().items():
        write_all(got.disks()[ref], writes)
    reloaded = HANDLER.assemble([HANDLER.load(d) for d in disks])
    assert reloaded.model() == got.model()


def test_rename_array() -> None:
    c = _two()
    got = c.apply([MdadmUpdate(rename_payload(1, b"  data "))], ENV)
    assert [v.name for v in got.model().volumes] == ["vol0", "data"]
    assert got.mpb.devs[1].volume == b"data".ljust(16, b"\0")
    long = c.apply([MdadmUpdate(rename_payload(0, b"abcdefghijklmnopq"))], ENV)
    assert long.mpb.devs[0].name == "abcdefghijklmno"  # 15 characters: snprintf(name, 16, ...)
    _rejected(c, rename_payload(1, b"vol0"), "update_rename_array", "name at byte 4", "already exists")
    _rejected(c, rename_payload(1, b"vol1"), "already exists")  # mdmon compares with every volume
    _rejected(c, rename_payload(1, b"   "), "non-empty")
    _rejected(c, rename_payload(3, b"x"), "dev_idx at byte 20")
    _rejected(c, rename_payload(1, b"x")[:20], "length at byte 20")
    assert must_be_inactive(RenameArray(1, b"x"), 2) == {1}
    c.active_volumes = frozenset({1})
    _rejected(c, rename_payload(1, b"data"), "volume 1 is active")
    assert c.apply([MdadmUpdate(rename_payload(0, b"boot"))], ENV).mpb.devs[0].name == "boot"


def test_size_change() -> None:
    c = _two()
    got = c.apply([MdadmUpdate(size_change_payload(1, 80007))], ENV)
    dev, m = got.mpb.devs[1], got.mpb.devs[1].map0
    # per disk 40003; array size rounded down to whole MiB per member, the rest from the raw size
    assert (dev.size_sectors, m.blocks_per_member(False), m.num_data_stripes(False)) == (77824, 42051, 156)
    assert got.mpb.generation_num == c.mpb.generation_num + 1
    _rejected(c, size_change_payload(2, 80007), "subdev at byte 4", "0 and 1 only")
    _rejected(c, size_change_payload(1, 0), "new_size at byte 8")
    _rejected(c, size_change_payload(1, 1 << 40), "do not fit")


def test_rwh_policy() -> None:
    c = _two()
    assert c.mpb.devs[0].rwh_policy == S.RWH_MULTIPLE_OFF  # mdadm 4.2 creates volumes with "multiple off"
    got = c.apply([MdadmUpdate(rwh_payload(0, S.RWH_OFF))], ENV)  # --update-subarray=no-bitmap
    assert got.mpb.devs[0].rwh_policy == S.RWH_OFF
    assert got.mpb.generation_num == c.mpb.generation_num + 1
    same = c.apply([MdadmUpdate(rwh_payload(0, S.RWH_MULTIPLE_OFF))], ENV)  # unchanged: mdmon writes nothing
    assert same.mpb.generation_num == c.mpb.generation_num
    _rejected(c, rwh_payload(0, 9), "new_policy at byte 4")
    _rejected(c, rwh_payload(2, 0), "dev_idx at byte 8")


def test_no_op_updates() -> None:
    c = _two()
    for t in (T_ADD_REMOVE, T_PREALLOC):
        got = c.apply([MdadmUpdate(type_only(t))], ENV)
        assert mpb_bytes_for_disk(got.mpb, 512) == mpb_bytes_for_disk(c.mpb, 512)
        _rejected(c, type_only(t) + b"\0", "length at byte 4")
    # next to a real change, one write as usual
    both = c.apply([MdadmUpdate(type_only(T_ADD_REMOVE)), SetDirty(0, True)], ENV)
    assert both.mpb.generation_num == c.mpb.generation_num + 1


def test_decode_is_pure() -> None:
    _, dev, serials = _vol1_parts()
    u = decode(create_payload(1, c_imsm_dev(dev), serials))
    assert isinstance(u, CreateArray)
    assert u.dev_idx == 1 and u.serials == tuple(s.ljust(16, b"\0") for s in serials)
    assert u.dev.map0.disk_ord_tbl == dev.map0.disk_ord_tbl


# -- fuzz: truncated and bit-flipped payloads never escape as anything but a rejection ---------


@functools.cache
def _fuzz_payloads() -> tuple[bytes, ...]:
    _, dev, serials = _vol1_parts()
    return (
        create_payload(1, c_imsm_dev(dev), serials),
        kill_payload(1),
        rename_payload(1, b"data"),
        size_change_payload(1, 80007),
        rwh_payload(1, 3),
        type_only(T_ADD_REMOVE),
    )


@functools.cache
def _fuzz_container() -> IMSMContainer:
    return _two_volume_before()[0]  # apply never changes it: each example gets a fresh copy


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, 5),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 7)), max_size=4),
    extra=st.binary(max_size=8),
)
def test_fuzz(which: int, cut: int, flips: list[tuple[int, int]], extra: bytes) -> None:
    c = _fuzz_container()
    data = bytearray(_fuzz_payloads()[which])
    for pos, bit in flips:
        if pos < len(data):
            data[pos] ^= 1 << bit
    data = data[:cut] if cut < len(data) else data + extra
    try:
        got = c.apply([MdadmUpdate(bytes(data))], ENV)
    except (ChangeRejected, MetadataError) as e:
        assert str(e).startswith("imsm: ")
    else:
        got.validate()
        got.encode()
