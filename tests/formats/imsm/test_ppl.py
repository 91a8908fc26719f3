"""A volume's write-hole policy and each member's PPL, as mdadm 4.2 derives them (super-intel.c).

``getinfo_super_imsm_volume`` maps ``rwh_policy`` to md's consistency policy
(PPL only for a RAID5 with distributed PPLs); ``get_ppl_sector`` puts a
member's log right after its data stripes (first map), in the reserved tail
of its extent; ``imsm_activate_spare`` gives a spare the 1 MiB multiple-PPL
area.  Expected values come from those rules applied to the raw map fields,
and from a volume created in the test bed VM (below).
"""

from __future__ import annotations

import random
import struct

import pytest

from formats.changes import Environment, MdadmUpdate
from formats.imsm import structs as S
from formats.imsm.container import IMSMContainer
from formats.imsm.create import VolumeSpec, create
from formats.model import ConsistencyPolicy, PplArea

from .helpers import container

ENV = Environment(now=lambda: 1_700_000_000.0, rng=random.Random(3))
UPDATE_RWH_POLICY = 11  # enum imsm_update_type


def with_policy(c: IMSMContainer, dev_idx: int, policy: int) -> IMSMContainer:
    """mdadm's ``--update-subarray=ppl`` (or bitmap ...) through the update path, as mdmon would apply it."""
    return c.apply([MdadmUpdate(struct.pack("@iii", UPDATE_RWH_POLICY, policy, dev_idx))], ENV)


@pytest.mark.parametrize(
    ("scenario", "want"),
    [
        ("imsm-raid5", ConsistencyPolicy.RESYNC),  # mdadm 4.2 creates RWH_MULTIPLE_OFF
        ("imsm-raid1", ConsistencyPolicy.RESYNC),
        ("imsm-raid0", ConsistencyPolicy.NONE),
    ],
)
def test_goldens_have_no_write_hole_policy(scenario: str, want: ConsistencyPolicy) -> None:
    c = container(scenario)
    assert c.mpb.devs[0].rwh_policy == S.RWH_MULTIPLE_OFF
    vol = c.model().volume(0)
    assert vol.consistency_policy is want
    assert vol.ppl(vol.members[0].offset_sectors) is None


@pytest.mark.parametrize(
    ("policy", "want"),
    [
        (S.RWH_MULTIPLE_DISTRIBUTED, ConsistencyPolicy.PPL),
        (S.RWH_DISTRIBUTED, ConsistencyPolicy.PPL),
        (S.RWH_JOURNALING_DRIVE, ConsistencyPolicy.RESYNC),  # not PPL to mdadm 4.2
        (S.RWH_MULTIPLE_PPLS_JOURNALING_DRIVE, ConsistencyPolicy.RESYNC),
        (S.RWH_OFF, ConsistencyPolicy.RESYNC),
        (S.RWH_BITMAP, ConsistencyPolicy.BITMAP),
    ],
)
def test_raid5_policy_follows_rwh_policy(policy: int, want: ConsistencyPolicy) -> None:
    vol = with_policy(container("imsm-raid5"), 0, policy).model().volume(0)
    assert vol.consistency_policy is want
    assert (vol.ppl(0) is not None) == (want is ConsistencyPolicy.PPL)


def test_ppl_is_not_for_a_mirror() -> None:
    """mdadm gives PPL to RAID5 only: a RAID1 with a PPL policy byte is a resync volume; RAID0 has none."""
    assert with_policy(container("imsm-raid1"), 0, S.RWH_MULTIPLE_DISTRIBUTED).model().volume(0).consistency_policy is (
        ConsistencyPolicy.RESYNC
    )
    assert with_policy(container("imsm-raid0"), 0, S.RWH_BITMAP).model().volume(0).consistency_policy is (
        ConsistencyPolicy.NONE
    )


@pytest.mark.parametrize("policy", [S.RWH_MULTIPLE_DISTRIBUTED, S.RWH_DISTRIBUTED])
def test_ppl_follows_the_data_stripes_inside_the_reserved_tail(policy: int) -> None:
    c = with_policy(container("imsm-raid5"), 0, policy)
    m0 = c.mpb.devs[0].map0
    vol = c.model().volume(0)
    for member in vol.members:
        got = vol.ppl(member.offset_sectors)
        # get_ppl_sector: pba_of_lba0 + num_data_stripes * blocks_per_strip, from the raw map fields.
        want_sector = m0.pba_of_lba0_lo + m0.num_data_stripes_lo * m0.blocks_per_strip
        assert got == PplArea(want_sector, S.MULTIPLE_PPL_AREA_SIZE // 512)
        # After the member's data, inside its extent (mdadm reserves the tail for the PPL or bitmap).
        assert got.sector >= member.offset_sectors + vol.component_sectors
        assert got.sector + got.size_sectors <= member.offset_sectors + m0.blocks_per_member_lo


def test_ppl_of_a_member_at_another_offset_moves_with_it() -> None:
    """The second volume of a matrix-RAID container: its members' logs follow that volume's own data."""
    c = with_policy(container("imsm-raid5-raid1"), 0, S.RWH_MULTIPLE_DISTRIBUTED)
    vol = c.model().volume(0)
    base = vol.ppl(0)
    assert base is not None
    assert vol.ppl(4096) == PplArea(base.sector + 4096, base.size_sectors)
    assert c.model().volume(1).ppl(0) is None  # the RAID1 keeps its resync policy


def test_volume_as_created_in_the_vm() -> None:
    """``mdadm --create -l 5 -n 3 --size=16M --consistency-policy=ppl`` on 64 MiB disks, md 6.1 (tests/vm/test_ppl.py):

    every member read ``offset=0 ppl_sector=32768 ppl_size=2048`` under stock mdmon, before and after a
    spare was rebuilt in; ``mdadm --examine``: ``RWH Policy : Multiple distributed PPLs``.
    """
    disks = [(f"MDVM{n:08d}", 64 * 2048) for n in range(3)]
    c = create(disks, [VolumeSpec("vol0", 5, (0, 1, 2), size_sectors=2 * 16 * 2048)], ENV)
    c.mpb.devs[0].rwh_policy = S.RWH_MULTIPLE_DISTRIBUTED  # what mdadm's init_super_imsm_volume sets for ppl
    vol = c.model().volume(0)
    assert vol.consistency_policy is ConsistencyPolicy.PPL
    assert [(m.offset_sectors, vol.ppl(m.offset_sectors)) for m in vol.members] == [(0, PplArea(32768, 2048))] * 3
