"""New IMSM containers, laid out as mdadm 4.2 ``--create`` lays them out (formats.md §1.9, §1.12).

Geometry checked against the goldens: each member gets ``floor(size/data/2048)*2048``
blocks, ``blocks_per_member`` adds the 2048-block tail, a later volume starts
8192 blocks after the previous volume's data, RAID1 strips are 128 blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..changes import Environment
from ..errors import ChangeRejected
from . import structs as S
from .apply import finish_write
from .container import IMSMContainer, Spare
from .records import DevRec, DiskRec, MapRec, MpbRec, VolRec
from .serial import normalise_serial


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    level: int  # 0, 1, 5, 10
    members: tuple[int, ...]  # indexes into the disks list, in slot order
    size_sectors: int | None = None  # array size; None = the largest that fits
    chunk_sectors: int = 256  # 128 KiB, mdadm's IMSM default (RAID1 always uses 128)


def _data_members(level: int, n: int) -> int:
    return {0: n, 1: n // 2, 10: n // 2, 5: n - 1}[level]


def _check(spec: VolumeSpec, ndisks: int) -> None:
    n = len(spec.members)
    ok = {0: n >= 1, 1: n == 2, 10: n >= 4 and n % 2 == 0, 5: n >= 3}.get(spec.level, False)
    if not ok or len(set(spec.members)) != n or any(not 0 <= m < ndisks for m in spec.members):
        raise ChangeRejected(f"imsm: RAID{spec.level} cannot have members {spec.members}")
    if not 0 < len(spec.name.encode()) <= 16:
        raise ChangeRejected(f"imsm: volume name {spec.name!r} must be 1..16 bytes")


def create(
    disks: Sequence[tuple[str, int]], volumes: Sequence[VolumeSpec], env: Environment | None = None
) -> IMSMContainer:
    """A container of ``disks`` (serial, size in sectors) with ``volumes``; unused disks become spares.

    The result has no ``Disk`` attached: ``IMSMContainer.attach(ref, disk)`` says where each goes.
    """
    env = env or Environment()
    if not 1 <= len(disks) <= 255:
        raise ChangeRejected("imsm: a container has 1..255 disks")
    recs = []
    for serial, size in disks:
        raw = normalise_serial(serial.encode("latin-1", "replace")).encode("ascii").ljust(16, b"\0")
        rec = DiskRec(raw, 0, 0, S.SPARE_DISK, 0, 0, bytes(12))
        rec.set_total_blocks(size)
        recs.append(rec)
    used = sorted({m for v in volumes for m in v.members})
    table = {d: i for i, d in enumerate(used)}
    mpb = MpbRec(
        sig=(S.SIGNATURE + b"1.0.00").ljust(S.SIG_LEN, b"\0"),
        check_sum=0,
        mpb_size=0,
        family_num=env.random32(),
        generation_num=0,
        error_log_size=0,
        attributes=S.MPB_ATTRIB_CHECKSUM_VERIFY,
        num_disks=0,
        num_raid_devs=0,
        error_log_pos=0,
        fill=0,
        cache_size=0,
        orig_family_num=0,
        pwr_cycle_count=1,
        bbm_log_size=0,
        num_raid_devs_created=1 if volumes else 0,
        filler1=0,
        creation_time=int(env.now()),
        filler=bytes(128),
    )
    mpb.orig_family_num = mpb.family_num
    for d in used:
        recs[d].status = S.CONFIGURED_DISK
        mpb.disks.append(recs[d])
    next_pba: dict[int, int] = {}
    for vi, spec in enumerate(volumes):
        _check(spec, len(disks))
        n = len(spec.members)
        data = _data_members(spec.level, n)
        bps = 128 if spec.level == 1 else spec.chunk_sectors
        pba = max(next_pba.get(m, 0) for m in spec.members)
        avail = min(disks[m][1] for m in spec.members) - S.MPB_SECTOR_CNT - S.IMSM_RESERVED_SECTORS - pba
        member = (spec.size_sectors // data if spec.size_sectors else avail) // 2048 * 2048
        if member <= 0 or member > avail:
            raise ChangeRejected(f"imsm: volume {spec.name} does not fit on its disks")
        bpm = member + S.NUM_BLOCKS_DIRTY_STRIPE_REGION
        if spec.level != 1:
            bpm -= bpm % bps
        domains = 2 if spec.level in (1, 10) else 1
        raid_level = 1 if spec.level == 1 or (spec.level == 10 and n == 4) else spec.level
        m = MapRec(
            0,
            0,
            0,
            bps,
            S.MAP_STATE_NORMAL if spec.level == 0 else S.MAP_STATE_UNINITIALIZED,
            raid_level,
            n,
            domains,
            0xFF,
            1,
            0,
            0,
            0,
            bytes(16),
            [table[x] for x in spec.members],
        )
        m.set_pba_of_lba0(pba)
        m.set_blocks_per_member(bpm)
        m.set_num_data_stripes(member // domains // bps)
        dev = DevRec(
            spec.name.encode().ljust(16, b"\0"),
            0,
            0,
            S.DEV_READ_COALESCING | S.DEV_WRITE_COALESCING,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            vi + 1,
            0,
            0,
            0,
            0,
            S.RWH_MULTIPLE_OFF,
            bytes(16),
            0,
            bytes(12),
        )
        dev._vol = VolRec(0, 0, 0, 0, 0, 0, 0, 0, 0, bytes(12))
        dev.maps.append(m)
        dev.set_size_sectors(member * data)
        mpb.devs.append(dev)
        for x in spec.members:
            next_pba[x] = pba + member + S.IMSM_RESERVED_SECTORS
    mpb.update_version_info()
    finish_write(mpb)
    spares = [Spare(recs[i], None) for i in range(len(disks)) if i not in table]
    c = IMSMContainer(mpb, 512, {}, spares, b"")
    c.validate()
    return c


def largest(env: Environment | None = None) -> IMSMContainer:
    """The largest container IMSM describes: 255 disks (num_disks is a u8) of 1 TiB.

    Two RAID5 volumes of 255 members each (mdadm's OROM-less limit is two volumes
    per array in practice; each map's member count is a u8).  The MPB is then
    216 + 48*255 + 2*(160 + 4*255) = 14,816 bytes, 29 sectors: far inside the
    2210-sector reservation, so the disk count, not the reservation, is the bound.
    """
    n = 255
    size = 1 << 31  # 1 TiB in sectors
    disks = [(f"LARGE{i:011d}", size) for i in range(n)]
    members = tuple(range(n))
    vols = [VolumeSpec("big0", 5, members, (n - 1) * (1 << 29)), VolumeSpec("big1", 5, members, None)]
    return create(disks, vols, env)
