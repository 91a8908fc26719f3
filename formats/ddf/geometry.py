"""DDF RAID levels <-> md levels and layouts, UUIDs, and mdadm's VD state rules (formats.md §2.7, §2.10, §2.12)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

from . import structs as S

LEVEL_LINEAR = -1

# md RAID5/6 layout numbers
LEFT_ASYMMETRIC, RIGHT_ASYMMETRIC, LEFT_SYMMETRIC = 0, 1, 2
ROTATING_ZERO_RESTART, ROTATING_N_RESTART, ROTATING_N_CONTINUE = 8, 9, 10


def md_layout(c: Any) -> tuple[int, int, int] | None:
    """layout_ddf2md: (level, layout, raid_disks) of a VD from its first BVD, or None if md cannot run it."""
    n = int(c.prim_elmnt_count)
    prl, rlq = int(c.prl), int(c.rlq)
    if c.sec_elmnt_count > 1:
        if prl != S.PRL_RAID1 or c.srl not in (S.SRL_STRIPED, S.SRL_SPANNED):
            return None
        if n == 2 and rlq == 0:
            return 10, 0x102, n * c.sec_elmnt_count
        if n == 3 and rlq == 1:
            return 10, 0x103, n * c.sec_elmnt_count
        return None
    if prl == S.PRL_CONCAT:
        return LEVEL_LINEAR, 0, n
    if prl == S.PRL_RAID0 and rlq == 0:
        return 0, 0, n
    if prl == S.PRL_RAID1 and ((rlq == 0 and n == 2) or (rlq == 1 and n == 3)):
        return 1, 0, n
    if prl == S.PRL_RAID1E and rlq in (0, 1):
        return 10, 0x102 if rlq == 0 else 0x201, n
    if prl == S.PRL_RAID4 and rlq == 1:
        return 4, 0, n
    raid5 = {2: LEFT_ASYMMETRIC, 0: RIGHT_ASYMMETRIC, 3: LEFT_SYMMETRIC}
    if prl == S.PRL_RAID5 and rlq in raid5:
        return 5, raid5[rlq], n
    raid6 = {2: ROTATING_N_RESTART, 1: ROTATING_ZERO_RESTART, 3: ROTATING_N_CONTINUE}
    if prl == S.PRL_RAID6 and rlq in raid6:
        return 6, raid6[rlq], n
    return None


def ddf_layout(level: int, layout: int, raid_disks: int) -> tuple[int, int, int, int, int] | None:
    """layout_md2ddf: (prl, rlq, prim_elmnt_count, sec_elmnt_count, srl), or None if DDF cannot hold it."""
    if level == LEVEL_LINEAR:
        return S.PRL_CONCAT, 0, raid_disks, 1, S.NO_SECONDARY
    if level == 0:
        return S.PRL_RAID0, 0, raid_disks, 1, S.NO_SECONDARY
    if level == 1 and raid_disks in (2, 3):
        return S.PRL_RAID1, raid_disks - 2, raid_disks, 1, S.NO_SECONDARY
    if level == 4 and layout == 0:
        return S.PRL_RAID4, 1, raid_disks, 1, S.NO_SECONDARY
    if level == 5:
        rlq = {LEFT_ASYMMETRIC: 2, RIGHT_ASYMMETRIC: 0, LEFT_SYMMETRIC: 3}.get(layout)
        return None if rlq is None else (S.PRL_RAID5, rlq, raid_disks, 1, S.NO_SECONDARY)
    if level == 6:
        rlq = {ROTATING_N_RESTART: 2, ROTATING_ZERO_RESTART: 1, ROTATING_N_CONTINUE: 3}.get(layout)
        return None if rlq is None else (S.PRL_RAID6, rlq, raid_disks, 1, S.NO_SECONDARY)
    if level == 10:
        if raid_disks % 2 == 0 and layout == 0x102:
            return S.PRL_RAID1, 0, 2, raid_disks // 2, S.SRL_SPANNED
        if raid_disks % 3 == 0 and layout == 0x103:
            return S.PRL_RAID1, 1, 3, raid_disks // 3, S.SRL_SPANNED
        if layout == 0x201:
            return S.PRL_RAID1E, 1, raid_disks, 1, S.NO_SECONDARY
        if layout == 0x102:
            return S.PRL_RAID1E, 0, raid_disks, 1, S.NO_SECONDARY
    return None


def uuid_text(data: bytes) -> str:
    """mdadm prints a UUID as four host-order (little-endian) 32-bit words."""
    words = struct.unpack("<4I", hashlib.sha1(data).digest()[:16])
    return ":".join(f"{w:08x}" for w in words)


def container_uuid(header_guid: bytes) -> str:
    return uuid_text(header_guid)


def volume_uuid(controller_guid: bytes, header_guid: bytes, ve: Any, index: int) -> str:
    """SHA-1 of the VD GUID, except for LSI controllers, which change VD GUIDs on every boot."""
    if controller_guid[:8] == b"LSI     ":
        return uuid_text(bytes(header_guid) + bytes(ve.name) + struct.pack("<H", index))
    return uuid_text(bytes(ve.guid))


def member_refs(c: Any) -> list[int]:
    """A BVD's members in order: the entries of phys_refnum that are not 0xFFFFFFFF (0 = missing)."""
    return [r for r in c.phys_refnum if r != S.NO_REFNUM][: c.prim_elmnt_count]


def member_positions(c: Any) -> list[int]:
    """The phys_refnum index of each member of a BVD."""
    return [i for i, r in enumerate(c.phys_refnum) if r != S.NO_REFNUM][: c.prim_elmnt_count]


def working(pd_state: int) -> bool:
    return pd_state & (S.PD_ONLINE | S.PD_FAILED | S.PD_REBUILDING) == S.PD_ONLINE


def bvd_state(c: Any, state_of: Callable[[int], int | None]) -> int:
    """get_bvd_state: a BVD's VD_State from its members' PD states (None: refnum not in the table)."""
    n = int(c.prim_elmnt_count)
    avail = []
    for r in member_refs(c):
        st = state_of(r)
        avail.append(st is not None and working(st))
    ok = sum(avail)
    if ok == n:
        return S.VD_OPTIMAL
    prl = int(c.prl)
    if prl in (S.PRL_RAID0, S.PRL_CONCAT, S.PRL_JBOD):
        return S.VD_FAILED
    if prl == S.PRL_RAID1:
        return S.VD_FAILED if ok == 0 else S.VD_PART_OPTIMAL if ok >= 2 else S.VD_DEGRADED
    if prl == S.PRL_RAID1E:
        return S.VD_DEGRADED if _raid10_enough(c, avail) else S.VD_FAILED
    if prl in (S.PRL_RAID4, S.PRL_RAID5):
        return S.VD_FAILED if ok < n - 1 else S.VD_DEGRADED
    if prl == S.PRL_RAID6:
        return S.VD_FAILED if ok < n - 2 else S.VD_PART_OPTIMAL if ok == n - 1 else S.VD_DEGRADED
    return S.VD_DEGRADED


def _raid10_enough(c: Any, avail: list[bool]) -> bool:
    """md's enough() for RAID1E (2 copies, near or offset): every group of copies keeps a working disk."""
    n, copies, first = len(avail), 2, 0
    while True:
        if not any(avail[(first + k) % n] for k in range(copies)):
            return False
        first = (first + copies) % n
        if first == 0:
            return True


def secondary_state(state: int, other: int, srl: int) -> int:
    if state == S.VD_OPTIMAL and other == S.VD_OPTIMAL:
        return S.VD_OPTIMAL
    if srl == S.SRL_MIRRORED:
        if S.VD_OPTIMAL in (state, other):
            return S.VD_PART_OPTIMAL
        if state == S.VD_FAILED and other == S.VD_FAILED:
            return S.VD_FAILED
        return S.VD_DEGRADED
    if S.VD_FAILED in (state, other):
        return S.VD_FAILED
    if S.VD_DEGRADED in (state, other):
        return S.VD_DEGRADED
    return S.VD_PART_OPTIMAL


def svd_state(bvds: Sequence[Any], state_of: Callable[[int], int | None]) -> int:
    """get_svd_state over a VD's BVDs (sorted by sec_elmnt_seq)."""
    state = bvd_state(bvds[0], state_of)
    for c in bvds[1:]:
        state = secondary_state(state, bvd_state(c, state_of), int(bvds[0].srl))
    return state
