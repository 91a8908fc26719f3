"""create() lays volumes out as mdadm 4.2 --create did for the goldens."""

from __future__ import annotations

import random
from dataclasses import replace

from formats.base import write_all
from formats.blockio import MemoryDisk
from formats.changes import Environment
from formats.imsm import HANDLER
from formats.imsm.create import VolumeSpec, create, largest

from .helpers import container

ENV = Environment(now=lambda: 1_700_000_000.0, rng=random.Random(3))
SIZE = 131072  # the goldens' 64 MiB disks


def written(c, serials: list[str]):  # type: ignore[no-untyped-def]
    disks = []
    for s in serials:
        d = MemoryDisk(bytes(1 << 20), name=f"/dev/{s}")
        d.serial = s  # type: ignore[attr-defined]
        c.attach(s, d)
        disks.append(d)
    for ref, writes in c.encode().items():
        write_all(c.disks()[ref], writes)
    return HANDLER.assemble([HANDLER.load(d) for d in disks])


def strip(c):  # type: ignore[no-untyped-def]
    return tuple(replace(v, uuid="", members=tuple(replace(m, disk_ref="") for m in v.members)) for v in c.volumes)


def test_raid5_like_mdadm() -> None:
    serials = [f"MDVM{i:08d}" for i in range(3)]
    c = create([(s, SIZE) for s in serials], [VolumeSpec("vol0", 5, (0, 1, 2))], ENV)
    got = written(c, serials)
    want = container("imsm-raid5").mpb
    assert got.mpb.version == want.version == "1.2.02"
    g, w = got.mpb.devs[0], want.devs[0]
    assert (g.size_sectors, g.map0.blocks_per_member(False), g.map0.num_data_stripes(False)) == (
        w.size_sectors,
        w.map0.blocks_per_member(False),
        w.map0.num_data_stripes(False),
    )
    assert g.status == w.status and g.rwh_policy == w.rwh_policy


def test_two_volumes_like_mdadm() -> None:
    serials = ["MDVM00000000", "MDVM00000001"]
    vols = [VolumeSpec("vol0", 1, (0, 1), 49152), VolumeSpec("vol1", 0, (0, 1), None)]
    got = written(create([(s, SIZE) for s in serials], vols, ENV), serials).model()
    want = container("imsm-two-volumes").model()
    # mdadm's goldens finished their resync: compare everything but state
    assert tuple(replace(v, state=w.state) for v, w in zip(strip(got), strip(want), strict=True)) == strip(want)
    assert [(v.size_sectors, v.members[0].offset_sectors, v.component_sectors) for v in got.volumes] == [
        (v.size_sectors, v.members[0].offset_sectors, v.component_sectors) for v in want.volumes
    ]
    assert got.extra["version"] == "1.3.00"


def test_largest_fits_and_loads() -> None:
    c = largest(ENV)
    assert len(c.mpb.disks) == 255 and c.mpb.mpb_size == 216 + 48 * 255 + 2 * (160 + 4 * 255)
    m = c.model()
    assert len(m.volumes) == 2 and all(v.raid_disks == 255 for v in m.volumes)
