"""New DDF containers, laid out as mdadm 4.2 ``--create -e ddf`` lays them out.

The steps are mdadm's: ``init_super_ddf`` (headers, controller data, empty
tables; seq 1, then 2 for the pending write), ``add_to_super_ddf`` per disk
(PD entry in the next free slot, mdadm's GUID and a random refnum, metadata
32 MiB from the end with the secondary copy 16 MiB below the primary), then
per volume ``init_super_ddf_bvd`` + ``add_to_super_ddf_bvd`` (VD entry, one
config record per BVD, each member's extent from ``find_space``; the
record's seqnum starts at 1 and moves once per member added) and mdmon's
processing of that update (one more header seq).  Checked against the
goldens by giving a created container the goldens' random values and clocks
(tests/formats/ddf/test_create.py).

Limits are mdadm's table sizes: 1023 disks, 255 volumes, 64 config records
per disk, 256 members per BVD.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from construct import Container as CContainer

from ..changes import Environment
from ..errors import ChangeRejected
from . import structs as S
from .apply import Batch, _host_u32, find_space, new_lbas, new_pd_guid, set_config_size
from .codec import Table, guid_crc16
from .container import DDFContainer, Member
from .geometry import LEFT_SYMMETRIC, ROTATING_N_CONTINUE, ddf_layout, svd_state

MAX_PD, MAX_VD, MAX_PARTITIONS, MPPE = 1023, 255, 64, 256
CONFIG_RECORD_LEN = 1 + -(-MPPE * 12 // S.SECTOR)  # 7 sectors
PD_SECTORS = -(-(64 + 64 * MAX_PD) // S.SECTOR)  # 128
VD_SECTORS = -(-(64 + 64 * MAX_VD) // S.SECTOR)  # 32
T10 = b"Linux-MD"


class DiskSpec(NamedTuple):
    serial: str  # what ``attach`` will know the disk by
    size_sectors: int


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    level: int  # 0, 1, 4, 5, 6, 10, or -1 (linear)
    members: tuple[int, ...]  # indexes into the disks list, in md raid-disk order
    size_sectors: int | None = None  # per-member size; None = the largest that fits on every member
    chunk_sectors: int = 1024  # 512 KiB, mdadm's DDF default (none for RAID1 and linear)
    layout: int | None = None  # None: mdadm's default (left-symmetric, N-continue, n2)
    unit: int | None = None  # md minor recorded in the VD entry; None: 126, 125, ... as mdadm numbers them
    clean: bool | None = None  # Init_State full; None: only for levels with nothing to resync


def _header(env: Environment) -> CContainer:
    now = int(env.now()) - S.DECADE
    guid = header_guid(env)
    ff = b"\xff"
    crl = CONFIG_RECORD_LEN
    sections = [(1, 1), (2, PD_SECTORS), (2 + PD_SECTORS, VD_SECTORS)]
    config_off = 2 + PD_SECTORS + VD_SECTORS
    config_len = crl * (MAX_PARTITIONS + 1)
    sections += [(config_off, config_len), (config_off + config_len, 1)]
    names = ("controller_section", "phys_section", "virt_section", "config_section", "data_section")
    h = CContainer(
        magic=S.HEADER_MAGIC,
        crc=0,
        guid=guid,
        revision=S.REVISION,
        seq=1,
        timestamp=now,
        openflag=0,
        foreignflag=0,
        enforcegroups=0,
        pad0=ff * 13,
        header_ext=ff * 32,
        primary_lba=S.NO_LBA,
        secondary_lba=S.NO_LBA,
        type=S.HEADER_PRIMARY,
        pad2=ff * 3,
        workspace_len=32768,
        workspace_lba=S.NO_LBA,
        max_pd_entries=MAX_PD,
        max_vd_entries=MAX_VD,
        max_partitions=MAX_PARTITIONS,
        config_record_len=crl,
        max_primary_element_entries=MPPE,
        pad3=ff * 54,
    )
    for name, (off, length) in zip(names, sections, strict=True):
        h[f"{name}_offset"] = off
        h[f"{name}_length"] = length
    for name in ("bbm_section", "diag_space", "vendor"):
        h[f"{name}_offset"] = S.NO_SECTION
        h[f"{name}_length"] = 0
    h.pad4 = ff * 256
    return h


def header_guid(env: Environment) -> bytes:
    """make_header_guid: T10 id, controller type DEADBEEF/0, creation time, a random word (host order)."""
    return (
        T10
        + struct.pack(">III", 0xDEADBEEF, 0, (int(env.now()) - S.DECADE) & 0xFFFFFFFF)
        + struct.pack("<I", env.random32())
    )


def controller(hostname: str, homehost: str | None) -> CContainer:
    host = hostname.encode()[:16]
    guid = T10 + b" " * (24 - len(T10) - len(host)) + host
    vendor = bytearray(b"\xff" * 448)
    if homehost is not None and len(homehost) < 440:
        raw = homehost.encode() + b"\0"
        vendor[: len(raw)] = raw
    return CContainer(
        magic=S.CONTROLLER_MAGIC,
        crc=0,
        guid=guid,
        vendor_id=0xDEAD,
        device_id=0xBEEF,
        sub_vendor_id=0,
        sub_device_id=0,
        product_id=b"What Is My PID??",
        pad=b"\xff" * 8,
        vendor_data=bytes(vendor),
    )


def _check(spec: VolumeSpec, ndisks: int) -> tuple[int, int, int, int, int]:
    n = len(spec.members)
    layout = spec.layout
    if layout is None:
        layout = {5: LEFT_SYMMETRIC, 6: ROTATING_N_CONTINUE, 10: 0x102}.get(spec.level, 0)
    geo = ddf_layout(spec.level, layout, n)
    minimum = {0: 1, 1: 2, 4: 3, 5: 3, 6: 4, 10: 2, -1: 1}.get(spec.level, 1)
    if geo is None or n < minimum or geo[2] > MPPE:
        raise ChangeRejected(f"ddf: RAID{spec.level} layout {layout:#x} on {n} disks is not something DDF can hold")
    if len(set(spec.members)) != n or any(not 0 <= m < ndisks for m in spec.members):
        raise ChangeRejected(f"ddf: volume {spec.name!r} has bad members {spec.members}")
    if spec.unit is not None and not 0 <= spec.unit <= 0xFFFF:
        raise ChangeRejected(f"ddf: unit {spec.unit} does not fit in 16 bits")
    if not 0 < len(spec.name.encode()) <= 16:
        raise ChangeRejected(f"ddf: volume name {spec.name!r} must be 1..16 bytes")
    return geo


def array_blocks(level: int, layout: int, n: int, blocks: int) -> int:
    """calc_array_size for the levels DDF holds."""
    if level in (0, -1):
        return n * blocks
    if level == 1:
        return blocks
    if level in (4, 5):
        return (n - 1) * blocks
    if level == 6:
        return (n - 2) * blocks
    copies = (layout & 0xFF) * ((layout >> 8) & 0xFF)
    return n * blocks // copies


def create(
    disks: Sequence[tuple[str, int]],
    volumes: Sequence[VolumeSpec],
    env: Environment | None = None,
    *,
    hostname: str | None = None,
    homehost: str | None = None,
    sector_size: int = 512,
) -> DDFContainer:
    """A container of ``disks`` (serial, size in 512-byte sectors) with ``volumes``; other disks are global spares.

    The result has no ``Disk`` attached: ``attach(serial or refnum, disk)`` says where each goes.
    ``sector_size`` is the disks' logical sector size: the layout is in 512-byte
    units either way (as mdadm's), only the writes are rounded out to it.
    """
    if sector_size not in (512, 4096):
        raise ChangeRejected(f"ddf: unsupported logical sector size {sector_size}")
    env = env or Environment()
    if not 1 <= len(disks) <= MAX_PD:
        raise ChangeRejected(f"ddf: a container has 1..{MAX_PD} disks")
    if len(volumes) > MAX_VD:
        raise ChangeRejected(f"ddf: at most {MAX_VD} volumes")
    if len({s for s, _ in disks}) != len(disks):
        raise ChangeRejected("ddf: two disks share a serial")
    host = hostname if hostname is not None else socket.gethostname()
    hdr = _header(env)
    phys_header = CContainer(magic=S.PHYS_RECORDS_MAGIC, crc=0, used_pdes=0, max_pdes=MAX_PD, pad=b"\xff" * 52)
    virt_header = CContainer(magic=S.VIRT_RECORDS_MAGIC, crc=0, populated_vdes=0, max_vdes=MAX_VD, pad=b"\xff" * 52)
    c = DDFContainer(
        hdr,
        controller(host, homehost if homehost is not None else host),
        Table(phys_header, [None] * MAX_PD, PD_SECTORS * S.SECTOR),
        Table(virt_header, [None] * MAX_VD, VD_SECTORS * S.SECTOR),
        {},
        [],
        sector_size,
    )
    b = Batch(c, env)
    b.touch()  # init_super_ddf: seq 1 -> 2
    by_index: list[Member] = []
    for i, (serial, size) in enumerate(disks):
        if size <= 32 * 1024 * 2 or size % (sector_size // 512):
            raise ChangeRejected(f"ddf: disk {serial!r} of {size} sectors is too small (> 32 MiB) or not whole sectors")
        guid = new_pd_guid(env)
        refs = {e.refnum for e in c.phys.entries if e is not None}
        while True:
            refnum = _host_u32(env.random32())
            if refnum not in refs and refnum not in (0, S.NO_REFNUM):
                break
        lbas = new_lbas(size, c.members[0] if c.members else None)
        c.phys.entries[i] = CContainer(
            guid=guid,
            refnum=refnum,
            type=S.PD_FORCED_GUID | S.PD_GLOBAL_SPARE,
            state=S.PD_ONLINE,
            config_size=set_config_size(size, *lbas),
            path=b" Information: nil\0",
            pad=b"\xff" * 6,
        )
        c.phys.header.used_pdes += 1
        data = CContainer(
            magic=S.PHYS_DATA_MAGIC,
            crc=0,
            guid=guid,
            refnum=refnum,
            forced_ref=1,
            forced_guid=1,
            vendor=b"Linux".ljust(32, b" "),
            pad=b"\xff" * 442,
        )
        m = Member(refnum, data, [], None, None, size, lbas[0], lbas[1], lbas[2], serial=serial)
        c.members.insert(0, m)
        by_index.append(m)
    c.header.primary_lba, c.header.secondary_lba, c.header.workspace_lba = (
        by_index[0].primary_lba,
        by_index[0].secondary_lba,
        by_index[0].workspace_lba,
    )
    b.finish()
    for k, spec in enumerate(volumes):
        _add_volume(c, spec, k, by_index, env)
    c.validate()
    return c


def _add_volume(c: DDFContainer, spec: VolumeSpec, k: int, by_index: list[Member], env: Environment) -> None:
    prl, rlq, prim, sec_count, srl = _check(spec, len(by_index))
    if any(e is not None and e.name.rstrip(b"\0") == spec.name.encode() for e in c.virt.entries):
        raise ChangeRejected(f"ddf: this container already has a volume called {spec.name!r}")
    venum = next((i for i, e in enumerate(c.virt.entries) if e is None), None)
    if venum is None:
        raise ChangeRejected("ddf: the VD table is full")
    b = Batch(c, env)
    now = (int(env.now()) - S.DECADE) & 0xFFFFFFFF
    guid = header_guid(env)
    clean = spec.clean if spec.clean is not None else spec.level in (0, -1)
    layout = (
        spec.layout
        if spec.layout is not None
        else {5: LEFT_SYMMETRIC, 6: ROTATING_N_CONTINUE, 10: 0x102}.get(spec.level, 0)
    )
    ve = CContainer(
        guid=guid,
        unit=spec.unit if spec.unit is not None else default_unit(k),
        pad0=b"\xff\xff",
        guid_crc=guid_crc16(bytes(c.header.guid)),
        type=0,
        state=S.VD_DEGRADED,
        init_state=S.INIT_FULL if clean else S.INIT_NOT,
        pad1=b"\xff" * 14,
        name=spec.name.encode().ljust(16, b"\0"),
    )
    chunkless = spec.level in (1, -1)
    shift = 0xFF if chunkless else (spec.chunk_sectors & -spec.chunk_sectors).bit_length() - 1
    members = [by_index[i] for i in spec.members]
    blocks = spec.size_sectors
    if blocks is None:
        blocks = min(_largest_gap(c, m) for m in members)
        if not chunkless:
            blocks -= blocks % spec.chunk_sectors
    if blocks <= 0:
        raise ChangeRejected(f"ddf: no space for volume {spec.name!r}")
    base = CContainer(
        magic=S.VD_CONF_MAGIC,
        crc=0,
        guid=guid,
        timestamp=now,
        seqnum=1,
        pad0=b"\xff" * 24,
        prim_elmnt_count=prim,
        chunk_shift=shift,
        prl=prl,
        rlq=rlq,
        sec_elmnt_count=sec_count,
        sec_elmnt_seq=0,
        srl=srl,
        blocks=blocks,
        array_blocks=array_blocks(spec.level, layout, len(members), blocks),
        pad1=b"\xff" * 8,
        spare_refs=[S.NO_REFNUM] * 8,
        cache_pol=bytes(8),
        bg_rate=0x80,
        pad2=b"\xff" * 3,
        pad3=b"\xff" * 52,
        pad4=b"\xff" * 192,
        v0=b"\xff" * 32,
        v1=b"\xff" * 32,
        v2=b"\xff" * 16,
        v3=b"\xff" * 16,
        vendor=b"\xff" * 32,
        phys_refnum=[S.NO_REFNUM] * MPPE,
        lba_offset=[0] * MPPE,
    )
    bvds = []
    for seq in range(sec_count):
        bvd = CContainer(base)
        bvd.phys_refnum, bvd.lba_offset, bvd.spare_refs = (
            list(base.phys_refnum),
            list(base.lba_offset),
            list(base.spare_refs),
        )
        bvd.sec_elmnt_seq = seq
        c.configs[(guid, seq)] = bvd
        bvds.append(bvd)
    c.virt.entries[venum] = ve
    c.virt.header.populated_vdes += 1
    for raid_disk, m in enumerate(members):
        bvd = bvds[raid_disk // prim]
        pos = find_space(c, m, blocks)
        if pos is None:
            raise ChangeRejected(f"ddf: member {raid_disk} of {spec.name!r} has no {blocks}-sector extent free")
        bvd.phys_refnum[raid_disk % prim] = m.refnum
        bvd.lba_offset[raid_disk % prim] = pos
        if len(m.vlist) >= MAX_PARTITIONS:
            raise ChangeRejected(f"ddf: disk {m.serial!r} already holds {MAX_PARTITIONS} volumes")
        m.vlist.append(guid)
        pd = c.pd(m.refnum)
        assert pd is not None
        ve.state = (ve.state & ~S.VD_STATE_MASK) | svd_state(bvds, lambda r: _pd_state(c, r))
        pd.type = (pd.type & ~S.PD_GLOBAL_SPARE) | S.PD_ACTIVE
        # mdadm --create bumps the record per member; its header is never written
        bvd.timestamp = b.now() & 0xFFFFFFFF
        bvd.seqnum += 1
    # mdmon then processes the VD and config updates: one header seq, and every
    # disk's config slots re-derived in conflist order (the newest VD first).
    for m in c.members:
        if guid in m.vlist:
            m.vlist = [guid] + [g for g in m.vlist if g != guid]
    b.touch()
    b.finish()


def default_unit(k: int) -> int:
    """md minors as mdadm hands them out below the container's 127 (126, 125, ...), then above it."""
    return 126 - k if k <= 126 else 128 + (k - 127)


def _pd_state(c: DDFContainer, r: int) -> int | None:
    pd = c.pd(r)
    return None if pd is None else int(pd.state)


def _largest_gap(c: DDFContainer, m: Member) -> int:
    """The largest free extent on a disk (find_space with an impossible size reports it)."""
    pd = c.pd(m.refnum)
    assert pd is not None
    extents = sorted(
        (int(bvd.lba_offset[p]), int(bvd.blocks))
        for g in m.vlist
        for bvd in c.bvds(g)
        for p, r in enumerate(bvd.phys_refnum)
        if r == m.refnum
    )
    extents.append((int(pd.config_size), 0))
    at, best = 0, 0
    for s, n in extents:
        best = max(best, s - at)
        at = max(at, s + n)
    return best
