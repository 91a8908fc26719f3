"""mdadm's DDF socket updates (``MdadmUpdate``): built as mdadm 4.2 builds them, compared with real mdmon bytes."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formats.blockio import MemoryDisk
from formats.changes import ActivateSpare, AddSpare, Environment, FailDisk, MdadmUpdate
from formats.ddf import HANDLER
from formats.ddf import structs as S
from formats.ddf import updates as U
from formats.ddf.container import DDFContainer, clone_config
from formats.errors import ChangeRejected, MetadataError
from testbed.transcript import decode_metadata

from .helpers import container, creation_messages, without_volume, writable

NOW = 1_800_000_000.0
TRANSCRIPT = Path(__file__).parents[2] / "data" / "transcripts" / "ddf-raid1-raid0.json"


def env(now: float = NOW) -> Environment:
    return Environment(now=lambda: now, rng=random.Random(7))


def assert_same_bytes(result: DDFContainer, disks: dict[str, object]) -> None:
    """Every byte ``result`` would write equals what real mdmon left on the disk."""
    writes = result.encode()
    assert set(writes) == set(disks)
    for ref, ws in writes.items():
        d = disks[ref]
        for w in ws:
            assert d.read(w.offset, len(w.data)) == w.data, (ref, w.offset)  # type: ignore[attr-defined]


def mdmon_write_env(after: DDFContainer) -> Environment:
    """The clock at mdmon's write: the header timestamp (the only field that depends on when it ran)."""
    return env(float(after.header.timestamp + S.DECADE))


# -- creation of a second VD while mdmon runs --------------------------------------------------
def test_second_volume_is_byte_exact_on_ddf_two_volumes() -> None:
    after = container("ddf-two-volumes")
    before = without_volume(after, 1)
    result = before.apply([MdadmUpdate(p) for p in creation_messages(after, 1)], mdmon_write_env(after))
    assert result.header.seq == before.header.seq + 1  # both messages, one write
    assert_same_bytes(result, dict(after.disks()))
    vols = result.model().volumes
    assert [v.name for v in vols] == ["vol0", "vol1"]
    assert vols[1].level == 1 and len(vols[1].members) == 2
    # mdmon puts the new VD's record in slot 0 of its disks; the older one moves down
    assert [m.vlist for m in result.members][:2] == [[after.vd_guid(1), after.vd_guid(0)]] * 2


def transcript_disks(step: int) -> list[MemoryDisk]:
    t = json.loads(TRANSCRIPT.read_text())
    out = []
    for n, d in enumerate(t["disks"]):
        i = step
        entry = t["steps"][i]["metadata"][d["device"]]
        while "same_as_step" in entry:
            i = entry["same_as_step"]
            entry = t["steps"][i]["metadata"][d["device"]]
        buf = bytearray(entry["size"])
        for off, data in decode_metadata(entry):
            buf[off : off + len(data)] = data
        out.append(MemoryDisk(buf, name=d["device"], serial=d["serial"]))
        assert n == len(out) - 1
    return out


def test_second_volume_is_byte_exact_on_the_transcript() -> None:
    """ddf-raid1-raid0: vol0 (RAID1) made mdmon start, vol1 (RAID0) was created while it ran."""
    disks = transcript_disks(0)
    after = HANDLER.assemble([HANDLER.load(d) for d in disks])
    vol1 = next(i for i, e in enumerate(after.virt.entries) if e is not None and e.name.startswith(b"vol1"))
    before = without_volume(after, vol1)
    result = before.apply([MdadmUpdate(p) for p in creation_messages(after, vol1)], mdmon_write_env(after))
    assert_same_bytes(result, dict(after.disks()))
    assert result.model().volumes[vol1].level == 0


def test_raid10_config_with_secondary_elements() -> None:
    """Two BVDs in one VD_CONF; the disks were global spares before (they become Active_in_VD)."""
    after = container("ddf-raid10")
    assert len(after.bvds(after.vd_guid(0))) == 2
    before = without_volume(after, 0)
    assert all(before.pd(m.refnum).type & S.PD_GLOBAL_SPARE for m in before.members)  # type: ignore[union-attr]
    result = before.apply([MdadmUpdate(p) for p in creation_messages(after, 0)], mdmon_write_env(after))
    assert_same_bytes(result, dict(after.disks()))
    assert result.model() == after.model()


def test_new_volume_as_mdadm_builds_it_at_creation() -> None:
    """A VD entry and record fresh from init_super_ddf_bvd (not initialised, seqnum 1 + members)."""
    after = container("ddf-two-volumes")
    before = without_volume(after, 1)
    guid = after.vd_guid(1)
    ve = after.virt.entries[1]
    assert ve is not None
    ve.init_state = S.INIT_NOT
    recs = after.bvds(guid)
    result = before.apply(
        [MdadmUpdate(U.virt_add(after.virt.header, ve, 1)), MdadmUpdate(U.vd_conf(recs, after))], env()
    )
    assert result.virt.entries[1] is not None and result.virt.entries[1].init_state == S.INIT_NOT
    assert result.bvds(guid)[0].seqnum == 3
    assert result.header.timestamp == int(NOW) - S.DECADE


# -- kill ------------------------------------------------------------------------------------
def test_kill_subarray() -> None:
    disks = writable("ddf-two-volumes")
    c = container("ddf-two-volumes", disks)
    guid = c.vd_guid(1)
    killed = c.apply([MdadmUpdate(U.virt_delete(guid))], env())
    assert killed.header.seq == c.header.seq + 1
    assert [v.name for v in killed.model().volumes] == ["vol0"]
    ve = killed.virt.entries[1]
    assert ve is not None and ve.guid == b"\xff" * 24 and ve.name.startswith(b"vol1")  # mdmon leaves the rest
    assert killed.virt.header.populated_vdes == 1
    assert not killed.bvds(guid)
    assert killed.members[0].vlist == [U.HOLE, c.vd_guid(0)]  # emptied in place, as mdmon does
    for ref, ws in killed.encode().items():
        for w in ws:
            killed.disks()[ref].write(w.offset, w.data)
    again = HANDLER.assemble([HANDLER.load(d) for d in disks])
    assert again.model() == killed.model()
    # the killed VD's entry can be reused by the next creation
    redo = again.apply([MdadmUpdate(p) for p in creation_messages(c, 1)], env())
    assert [v.name for v in redo.model().volumes] == ["vol0", "vol1"]


# -- physical disks ----------------------------------------------------------------------------
def test_phys_add_then_attach_matches_add_spare() -> None:
    c = container("ddf-raid5")
    size = 64 * 1024 * 2
    ref = c.apply([AddSpare("NEWDISK", size)], env())
    index = next(i for i, e in enumerate(ref.phys.entries) if e is not None and e.refnum == ref.members[0].refnum)
    payload = U.phys_add(ref.phys.entries[index], index, junk=bytes(range(64)))
    got = c.apply([MdadmUpdate(payload)], env())
    r = ref.members[0].refnum
    assert got.pd(r) == ref.pd(r) and got.phys.header.used_pdes == ref.phys.header.used_pdes
    assert got.header.seq == c.header.seq + 1
    assert got.model().disks[-1].ref == f"{r:08x}" and got.model().disks[-1].path is None
    with pytest.raises(ValueError):
        got.copy().attach(f"{r:08x}", MemoryDisk(bytes((size + 2048) * 512), name="/dev/sdz"))
    got.attach(f"{r:08x}", MemoryDisk(bytes(size * 512), name="/dev/sdx"))
    ref.attach("NEWDISK", MemoryDisk(bytes(size * 512), name="/dev/sdx"))
    m, n = got.members[0], ref.members[0]
    assert (m.sectors, m.primary_lba, m.secondary_lba, m.workspace_lba) == (
        n.sectors,
        n.primary_lba,
        n.secondary_lba,
        n.workspace_lba,
    )
    assert got.encode() == ref.encode()


def test_phys_remove() -> None:
    c = container("ddf-raid5-spare")
    index = c.pd_index(0x34175D40)
    assert index is not None
    got = c.apply([MdadmUpdate(U.phys_remove(index, junk=b"\x5a" * 128))], env())
    assert got.pd(0x34175D40).state & S.PD_MISSING  # type: ignore[union-attr]
    assert "34175d40" not in got.disks() and got.header.seq == c.header.seq + 1


def test_vd_conf_update_of_existing_vd_equals_activate_spare() -> None:
    c = container("ddf-raid5-spare").apply([FailDisk("4624ee28")], env())
    act = c.apply([ActivateSpare(0, 1, "34175d40")], env())
    payload = U.vd_conf(act.bvds(act.vd_guid(0)), act)
    got = c.apply([MdadmUpdate(payload)], env())
    assert got.encode() == act.encode()


# -- rejections -----------------------------------------------------------------------------
def _bad_cases() -> list[tuple[str, bytes, str]]:
    c = container("ddf-two-volumes")
    vd1 = c.virt.entries[1]
    pd0 = c.phys.entries[0]
    assert vd1 is not None and pd0 is not None
    rec = c.bvds(c.vd_guid(1))
    unknown = [clone_config(r) for r in rec]
    for r in unknown:
        r.guid = b"Linux-MD" + b"\x01" * 16
    free = next(i for i, e in enumerate(c.phys.entries) if e is None)
    collide = dict(pd0)
    collide["guid"] = b"Linux-MD20991231" + b"\x07" * 8
    twice = dict(pd0)
    twice["refnum"] = 0x01020304
    virt = U.virt_add(c.virt.header, vd1, 1)
    conf = U.vd_conf(rec, c)
    return [
        ("short", b"\xee\xee", "magic at byte 0"),
        ("unknown magic", b"\x12\x34\x56\x78" + bytes(124), "magic at byte 0"),
        ("virt truncated", virt[:100], "length"),
        ("virt too long", virt + b"\0", "length"),
        ("virt exists", virt, "guid at byte 64"),
        ("kill unknown", U.virt_delete(b"Linux-MD" + b"\x02" * 16), "guid at byte 64"),
        ("conf truncated", conf[:-512], "sec_elmnt_count at byte 69"),
        ("conf tiny", conf[:300], "length"),
        ("conf unknown vd", U.vd_conf(unknown, c), "guid at byte 8"),
        ("conf bad seq", conf[:70] + b"\x05" + conf[71:], "sec_elmnt_seq at byte 70"),
        ("phys refnum collision", U.phys_add(collide, free), "refnum at byte 88"),
        ("phys guid collision", U.phys_add(twice, free), "guid at byte 64"),
        ("phys slot in use", U.phys_add(collide | {"refnum": 0x01020304}, 0), "used_pdes at byte 8"),
        ("phys index past table", U.phys_add(twice, 5000), "used_pdes at byte 8"),
        ("remove unused entry", U.phys_remove(free), "used_pdes at byte 8"),
    ]


@pytest.mark.parametrize("name,payload,where", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_rejections_name_record_field_and_offset(name: str, payload: bytes, where: str) -> None:
    c = container("ddf-two-volumes")
    image = c.encode()
    with pytest.raises(ChangeRejected) as e:
        c.apply([MdadmUpdate(payload)], env())
    msg = str(e.value)
    assert msg.startswith("ddf: ") and where in msg and "update" in msg, msg
    assert c.encode() == image  # untouched


def test_rejected_batch_leaves_nothing() -> None:
    c = container("ddf-two-volumes")
    before = without_volume(c, 1)
    image = before.encode()
    virt, conf = creation_messages(c, 1)
    with pytest.raises(ChangeRejected):
        before.apply([MdadmUpdate(virt), MdadmUpdate(conf[:-1])], env())
    assert before.encode() == image


# -- fuzz -----------------------------------------------------------------------------------
_BASE = container("ddf-two-volumes")
_BEFORE = without_volume(_BASE, 1)
_SEEDS = [
    *creation_messages(_BASE, 1),
    U.virt_delete(_BASE.vd_guid(0)),
    U.phys_add(_BASE.phys.entries[0], 3),
    U.phys_remove(2),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(range(len(_SEEDS))),
    st.integers(0, 4000),
    st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 7)), max_size=4),
)
def test_fuzzed_payloads_are_rejected_cleanly(which: int, cut: int, flips: list[tuple[int, int]]) -> None:
    p = bytearray(_SEEDS[which])
    for off, bit in flips:
        if off < len(p):
            p[off] ^= 1 << bit
    payload = bytes(p[: len(p) - cut % (len(p) + 1)] if cut % 3 == 0 else p)
    for base in (_BEFORE, _BASE):
        try:
            out = base.apply([MdadmUpdate(payload)], env())
        except ChangeRejected as e:
            assert str(e).startswith("ddf: ")
        except MetadataError as e:
            assert e.format == "ddf"
        else:
            out.model()
            out.encode()


def test_fuzz_seed_sanity() -> None:
    (magic,) = struct.unpack_from(">I", _SEEDS[1], 0)
    assert magic == S.VD_CONF_MAGIC and len(_SEEDS[1]) == _BASE.header.config_record_len * 512
