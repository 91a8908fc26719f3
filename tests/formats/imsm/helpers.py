"""Golden disks with the serials the guest saw (IMSM matches a disk to its entry by serial), and mdadm's messages.

The message payloads are built from the C declarations in mdadm 4.2's
``super-intel.c`` with Python's *native* ``struct`` formats (``@``), which lay
fields out, padding included, as the C compiler does on this x86-64 host -- not
with the package's own ``construct`` declarations.
"""

from __future__ import annotations

import struct

from formats.blockio import FileDisk, OverlayDisk
from formats.imsm import HANDLER
from formats.imsm import structs as S
from formats.imsm.container import IMSMContainer, Spare
from formats.imsm.disk import IMSMDiskCopy
from formats.imsm.records import DevRec
from tests.golden import disk_count, open_disk, overlay


def disk(scenario: str, n: int) -> FileDisk:
    return open_disk(scenario, n)


def writable(scenario: str, n: int) -> OverlayDisk:
    return overlay(scenario, n)


def load(scenario: str, n: int) -> IMSMDiskCopy:
    return HANDLER.load(disk(scenario, n))


def container(scenario: str, disks: list[OverlayDisk] | None = None) -> IMSMContainer:
    ds = disks if disks is not None else [writable(scenario, n) for n in range(disk_count(scenario))]
    return HANDLER.assemble([HANDLER.load(d) for d in ds])


# enum imsm_update_type (mdadm 4.2)
T_ACTIVATE_SPARE, T_CREATE, T_KILL, T_RENAME, T_ADD_REMOVE = 0, 1, 2, 3, 4
T_RESHAPE_DISKS, T_RESHAPE_MIGR, T_TAKEOVER, T_GEN_MIGR_CKPT = 5, 6, 7, 8
T_SIZE_CHANGE, T_PREALLOC, T_RWH = 9, 10, 11


# -- payload builders, from the C layouts ------------------------------------------------------

# struct imsm_dev header (80 bytes), imsm_vol without its maps (32), imsm_map without its ord table (48)
DEV_HEAD = "<16sIIIIBBBBHBBHBBIHB16sB12s"
VOL_HEAD = "<IIBBBBHHI12s"
MAP_HEAD = "<IIIHBBBBBBIII16s"
assert (struct.calcsize(DEV_HEAD), struct.calcsize(VOL_HEAD), struct.calcsize(MAP_HEAD)) == (80, 32, 48)


def c_imsm_dev(dev: DevRec) -> bytes:
    """``struct imsm_dev`` as ``sizeof_imsm_dev(dev, 0)`` bytes of mdadm's in-memory (LE) copy."""
    out = struct.pack(
        DEV_HEAD,
        dev.volume,
        dev.size_low,
        dev.size_high,
        dev.status,
        dev.reserved_blocks,
        dev.migr_priority,
        dev.num_sub_vols,
        dev.tid,
        dev.cng_master_disk,
        dev.cache_policy,
        dev.cng_state,
        dev.cng_sub_state,
        dev.my_vol_raid_dev_num,
        dev.nv_cache_mode,
        dev.nv_cache_flags,
        dev.nvc_vol_orig_family_num,
        dev.nvc_vol_raid_dev_num,
        dev.rwh_policy,
        dev.jd_serial,
        dev.filler1,
        dev.filler,
    )
    v = dev.vol
    out += struct.pack(
        VOL_HEAD,
        v.curr_migr_unit_lo,
        v.checkpoint_id,
        v.migr_state,
        v.migr_type,
        v.dirty,
        v.fs_state,
        v.verify_errors,
        v.bad_blocks,
        v.curr_migr_unit_hi,
        v.filler,
    )
    for m in dev.maps:
        out += struct.pack(
            MAP_HEAD,
            m.pba_of_lba0_lo,
            m.blocks_per_member_lo,
            m.num_data_stripes_lo,
            m.blocks_per_strip,
            m.map_state,
            m.raid_level,
            m.num_members,
            m.num_domains,
            m.failed_disk_num,
            m.ddf,
            m.pba_of_lba0_hi,
            m.blocks_per_member_hi,
            m.num_data_stripes_hi,
            m.filler,
        )
        out += struct.pack(f"<{m.num_members}I", *m.disk_ord_tbl)
    return out


def create_payload(dev_idx: int, dev: bytes, serials: list[bytes]) -> bytes:
    """``struct imsm_update_create_array`` {enum type; int dev_idx; struct imsm_dev dev;} + disk_info[]."""
    assert struct.calcsize("@ii") + 164 == 172  # sizeof(struct imsm_update_create_array)
    return struct.pack("@ii", T_CREATE, dev_idx) + dev + b"".join(s.ljust(16, b"\0") for s in serials)


def kill_payload(dev_idx: int) -> bytes:
    return struct.pack("@ii", T_KILL, dev_idx)


def rename_payload(dev_idx: int, name: bytes) -> bytes:
    # mdadm: strncpy(u->name, name, 16); u->name[15] = '\0'
    raw = name[:16].ljust(16, b"\0")[:15] + b"\0"
    out = struct.pack("@i16si", T_RENAME, raw, dev_idx)
    assert len(out) == 24
    return out


def size_change_payload(subdev: int, new_size: int) -> bytes:
    out = struct.pack("@iiq", T_SIZE_CHANGE, subdev, new_size)
    assert len(out) == 16
    return out


def rwh_payload(dev_idx: int, policy: int) -> bytes:
    return struct.pack("@iii", T_RWH, policy, dev_idx)


def gen_migr_payload(unit: int) -> bytes:
    out = struct.pack("@iQ", T_GEN_MIGR_CKPT, unit)
    assert len(out) == 16  # 4 bytes of padding before the __u64
    return out


def type_only(t: int) -> bytes:
    return struct.pack("@i", t)


# -- states: real after-states, and the before-state rebuilt from them --------------------------


def real_mpb(disk: FileDisk | OverlayDisk) -> bytes:
    copy = HANDLER.load(disk)
    return copy.raw.buffer[: copy.mpb.mpb_size]


def dev_slice(mpb: bytes, index: int) -> bytes:
    """The raw bytes of dev[index] in an MPB (walked here with the C sizes, independently of codec)."""
    num_disks = mpb[0x38]
    off = 216 + 48 * num_disks
    for i in range(index + 1):
        start = off
        off += 80
        migr_state = mpb[off + 8]
        off += 32
        for _ in range(1 + migr_state):
            off += 48 + 4 * mpb[off + 16]
        if i == index:
            return mpb[start:off]
    raise AssertionError


# -- the state mdmon held before mdadm created a second volume ---------------------------------


def before_state(after: IMSMContainer, single: str) -> IMSMContainer:
    """What mdmon held just before the create message for vol1 arrived.

    vol1 taken away; table entries only vol1 uses go back to being spares
    (mdmon keeps a spare out of the table, with its own record); the header
    version and attributes are the ones mdadm wrote for one volume of this
    shape (read from ``single``'s real disks); one write less.
    """
    c = after.copy()
    mpb = c.mpb
    del mpb.devs[1]
    used = {m.idx(s) for d in mpb.devs for m in d.maps for s in range(m.num_members)}
    for i in sorted(set(range(len(mpb.disks))) - used, reverse=True):
        assert i == len(mpb.disks) - 1  # mdmon appends converted spares: they are last
        rec = mpb.disks.pop(i)
        rec.status = S.SPARE_DISK
        c.spares.append(Spare(rec, c.members.pop(i)))
    one = container(single).mpb
    assert one.num_raid_devs == 1
    mpb.sig, mpb.attributes = one.sig, one.attributes
    mpb.generation_num -= 1
    mpb.num_disks, mpb.num_raid_devs = len(mpb.disks), len(mpb.devs)
    mpb.mpb_size = mpb.computed_size()
    c.validate()
    return c


def vol1_message(after_mpb: bytes, after: IMSMContainer) -> bytes:
    dev = after.mpb.devs[1]
    raw = dev_slice(after_mpb, 1)
    assert c_imsm_dev(dev) == raw  # the builder reproduces the real record
    serials = [after.mpb.disks[dev.map0.idx(s)].serial for s in range(dev.map0.num_members)]
    return create_payload(1, raw, serials)
