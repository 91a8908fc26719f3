"""IMSM on-disk structures, declared with ``construct`` (formats.md Part 1).

Only declarations live here: every structure is little-endian, packed and
naturally aligned, so the offsets in the comments are the byte offsets mdadm,
the option ROM and the Windows driver use.  The variable parts (the disk table,
the devs, each map's ord table, the BBM log) are parsed piece by piece by
``load.py`` so that every count and offset is bounds-checked before use.
"""

from __future__ import annotations

from typing import Any

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct, this

SIGNATURE = b"Intel Raid ISM Cfg Sig. "  # 24 bytes: the part every reader checks
SIG_LEN = 32  # signature + 6-char version + NUL padding

#: ``imsm_super``: the MPB header, 216 bytes before the disk table.
MpbHeader: Any = Struct(
    "sig" / Bytes(SIG_LEN),  # 0x00 signature + version string
    "check_sum" / Int32ul,  # 0x20 sum of the LE u32 words over mpb_size, this word counted as 0
    "mpb_size" / Int32ul,  # 0x24 bytes of header + disks + devs + BBM log
    "family_num" / Int32ul,  # 0x28 container identity; moves when a spare is activated
    "generation_num" / Int32ul,  # 0x2C +1 on every metadata write
    "error_log_size" / Int32ul,  # 0x30 preserved, unused by mdadm
    "attributes" / Int32ul,  # 0x34 MPB_ATTRIB_* bits
    "num_disks" / Int8ul,  # 0x38 entries in the disk table
    "num_raid_devs" / Int8ul,  # 0x39 volumes; 0 = spare record
    "error_log_pos" / Int8ul,  # 0x3A
    "fill" / Int8ul,  # 0x3B
    "cache_size" / Int32ul,  # 0x3C MB, preserved
    "orig_family_num" / Int32ul,  # 0x40 family at creation: the container UUID's input
    "pwr_cycle_count" / Int32ul,  # 0x44
    "bbm_log_size" / Int32ul,  # 0x48 bytes of BBM log at the end of the MPB
    "num_raid_devs_created" / Int16ul,  # 0x4C source of each volume's "Volume ID"
    "filler1" / Int16ul,  # 0x4E
    "creation_time" / Int64ul,  # 0x50 Unix seconds (0 = unknown)
    "filler" / Bytes(128),  # 0x58 zero
)
MPB_HEADER_SIZE = 216

#: ``imsm_disk``: one disk-table entry, 48 bytes.
DiskEntry: Any = Struct(
    "serial" / Bytes(16),  # 0 NUL-padded, not terminated at 16 chars; ":0" suffix = failed
    "total_blocks_lo" / Int32ul,  # 16 disk size in logical blocks
    "scsi_id" / Int32ul,  # 20 host<<24|bus<<16|target<<8|lun; 0xFFFFFFFF = missing
    "status" / Int32ul,  # 24 SPARE/CONFIGURED/FAILED/... bits (unknown bits preserved)
    "owner_cfg_num" / Int32ul,  # 28
    "total_blocks_hi" / Int32ul,  # 32 valid only with MPB_ATTRIB_2TB_DISK
    "filler" / Bytes(12),  # 36
)
DISK_ENTRY_SIZE = 48

#: ``imsm_dev`` up to (not including) ``imsm_vol``: 80 bytes.
DevHeader: Any = Struct(
    "volume" / Bytes(16),  # 0 volume name, NUL-padded
    "size_low" / Int32ul,  # 16 array size in logical blocks
    "size_high" / Int32ul,  # 20
    "status" / Int32ul,  # 24 DEV_* bits (0x0C = read+write coalescing, 0x80 = VERIFY_AND_FIX)
    "reserved_blocks" / Int32ul,  # 28 never unit-converted
    "migr_priority" / Int8ul,  # 32
    "num_sub_vols" / Int8ul,  # 33
    "tid" / Int8ul,  # 34
    "cng_master_disk" / Int8ul,  # 35
    "cache_policy" / Int16ul,  # 36
    "cng_state" / Int8ul,  # 38
    "cng_sub_state" / Int8ul,  # 39
    "my_vol_raid_dev_num" / Int16ul,  # 40 "Volume ID"
    "nv_cache_mode" / Int8ul,  # 42
    "nv_cache_flags" / Int8ul,  # 43
    "nvc_vol_orig_family_num" / Int32ul,  # 44
    "nvc_vol_raid_dev_num" / Int16ul,  # 48
    "rwh_policy" / Int8ul,  # 50 0 off, 1 PPL, ... 5 multiple off, 6 bitmap
    "jd_serial" / Bytes(16),  # 51 journal drive serial
    "filler1" / Int8ul,  # 67
    "filler" / Bytes(12),  # 68
)
DEV_HEADER_SIZE = 80

#: ``imsm_vol``: 32 bytes, followed by map[0] and, while migrating, map[1].
Vol: Any = Struct(
    "curr_migr_unit_lo" / Int32ul,  # 0 checkpoint in migration units
    "checkpoint_id" / Int32ul,  # 4
    "migr_state" / Int8ul,  # 8 0 idle, 1 migrating (a second map follows)
    "migr_type" / Int8ul,  # 9 0 init, 1 rebuild, 2 verify, 3 general migration, 4 state change
    "dirty" / Int8ul,  # 10 bit0 dirty, bit1 DS record valid (PPL)
    "fs_state" / Int8ul,  # 11
    "verify_errors" / Int16ul,  # 12
    "bad_blocks" / Int16ul,  # 14
    "curr_migr_unit_hi" / Int32ul,  # 16
    "filler" / Bytes(12),  # 20
)
VOL_SIZE = 32

#: ``imsm_map``: 48 bytes plus the ord table.
Map: Any = Struct(
    "pba_of_lba0_lo" / Int32ul,  # 0 member LBA where the volume's data starts
    "blocks_per_member_lo" / Int32ul,  # 4 member extent, including the 2048-block tail
    "num_data_stripes_lo" / Int32ul,  # 8
    "blocks_per_strip" / Int16ul,  # 12 chunk in blocks
    "map_state" / Int8ul,  # 14 0 normal, 1 uninitialized, 2 degraded, 3 failed
    "raid_level" / Int8ul,  # 15 0, 1 (RAID1, or RAID10 unless 2 members), 5, 10
    "num_members" / Int8ul,  # 16
    "num_domains" / Int8ul,  # 17 2 for RAID1/10, else 1
    "failed_disk_num" / Int8ul,  # 18 slot of the failed member, 0xFF none
    "ddf" / Int8ul,  # 19 always 1
    "pba_of_lba0_hi" / Int32ul,  # 20
    "blocks_per_member_hi" / Int32ul,  # 24
    "num_data_stripes_hi" / Int32ul,  # 28
    "filler" / Bytes(16),  # 32
    "disk_ord_tbl" / Array(this.num_members, Int32ul),  # 48 disk index | IMSM_ORD_REBUILD
)
MAP_FIXED_SIZE = 48

#: BBM log header (8 bytes), entries follow.
BbmLogHeader: Any = Struct(
    "signature" / Int32ul,  # 0 0xABADB10C
    "entry_count" / Int32ul,  # 4 <= 254
)
BBM_LOG_HEADER_SIZE = 8

#: One BBM log entry (8 bytes): a run of 1..256 bad sectors on one disk.
BbmEntry: Any = Struct(
    "marked_count" / Int8ul,  # 0 sectors - 1
    "disk_ordinal" / Int8ul,  # 1 disk-table index
    "w1" / Int16ul,  # 2 start sector bits 0..15
    "dw1" / Int32ul,  # 4 start sector bits 16..47
)
BBM_ENTRY_SIZE = 8

#: ``migr_record`` in the disk's last logical sector (128 bytes used).
MigrRecord: Any = Struct(
    "rec_status" / Int32ul,  # 0 0 normal, 1 unit in the copy area
    "curr_migr_unit_lo" / Int32ul,  # 4
    "family_num" / Int32ul,  # 8
    "ascending_migr" / Int32ul,  # 12
    "blocks_per_unit" / Int32ul,  # 16
    "dest_depth_per_unit" / Int32ul,  # 20
    "ckpt_area_pba_lo" / Int32ul,  # 24
    "dest_1st_member_lba_lo" / Int32ul,  # 28
    "num_migr_units_lo" / Int32ul,  # 32
    "post_migr_vol_cap" / Int32ul,  # 36
    "post_migr_vol_cap_hi" / Int32ul,  # 40
    "ckpt_read_disk_num" / Int32ul,  # 44
    "curr_migr_unit_hi" / Int32ul,  # 48
    "ckpt_area_pba_hi" / Int32ul,  # 52
    "dest_1st_member_lba_hi" / Int32ul,  # 56
    "num_migr_units_hi" / Int32ul,  # 60
    "filler" / Bytes(64),  # 64
)
MIGR_RECORD_SIZE = 128

# Constants named as mdadm names them.
MPB_ATTRIB_CHECKSUM_VERIFY = 0x80000000
MPB_ATTRIB_2TB_DISK = 0x04000000
MPB_ATTRIB_BBM = 0x08000000
MPB_ATTRIB_2TB = 0x20000000
MPB_ATTRIB_RAID0 = 0x00000001
MPB_ATTRIB_RAID1 = 0x00000002
MPB_ATTRIB_RAID10 = 0x00000004
MPB_ATTRIB_RAID5 = 0x00000010
MPB_ATTRIB_EXP_STRIPE_SIZE = 0x00000040
MPB_ATTRIB_RAID10_EXT = 0x00000080
MPB_ATTRIB_NEVER_USE = 0x40000000
#: Everything mdadm 4.2 supports, plus the bit it ignores.
MPB_ATTRIB_SUPPORTED = (
    MPB_ATTRIB_CHECKSUM_VERIFY
    | MPB_ATTRIB_2TB
    | MPB_ATTRIB_2TB_DISK
    | MPB_ATTRIB_RAID0
    | MPB_ATTRIB_RAID1
    | MPB_ATTRIB_RAID10
    | MPB_ATTRIB_RAID5
    | MPB_ATTRIB_EXP_STRIPE_SIZE
    | MPB_ATTRIB_RAID10_EXT
    | MPB_ATTRIB_BBM
)
MPB_ATTRIB_IGNORED = MPB_ATTRIB_NEVER_USE

SPARE_DISK = 0x01
CONFIGURED_DISK = 0x02
FAILED_DISK = 0x04
JOURNAL_DISK = 0x2000000

IMSM_ORD_REBUILD = 0x01000000
ORD_INDEX_MASK = 0x00FFFFFF

DEV_READ_COALESCING = 0x04
DEV_WRITE_COALESCING = 0x08
DEV_VERIFY_AND_FIX = 0x80

RAIDVOL_DIRTY = 0x01
RAIDVOL_DSRECORD_VALID = 0x02

MAP_STATE_NORMAL = 0
MAP_STATE_UNINITIALIZED = 1
MAP_STATE_DEGRADED = 2
MAP_STATE_FAILED = 3

MIGR_INIT = 0
MIGR_REBUILD = 1
MIGR_VERIFY = 2
MIGR_GEN_MIGR = 3
MIGR_STATE_CHANGE = 4

BBM_LOG_SIGNATURE = 0xABADB10C
BBM_LOG_MAX_ENTRIES = 254
#: One entry covers at most this many sectors (marked_count is a byte: count - 1).
BBM_LOG_MAX_LBA_ENTRY_VAL = 256
#: The start sector is 48 bits (w1 + dw1).
BBM_LOG_MAX_LBA = 1 << 48

MPB_SECTOR_CNT = 2210  # 512-byte sectors reserved at the end of a disk for the MPB
IMSM_RESERVED_SECTORS = 8192  # extra end-of-disk reservation when a volume is created
NUM_BLOCKS_DIRTY_STRIPE_REGION = 2048  # PPL/bitmap tail of each member extent
#: Largest MPB we accept: the whole reserved area (mdadm itself does not bound it).
MAX_MPB_SIZE = MPB_SECTOR_CNT * 512
IMSM_4K_DIV = 8

RWH_OFF = 0
RWH_DISTRIBUTED = 1  # one PPL per member
RWH_JOURNALING_DRIVE = 2
RWH_MULTIPLE_DISTRIBUTED = 3  # a 1 MiB area of PPLs per member (what mdadm 4.2 creates)
RWH_MULTIPLE_PPLS_JOURNALING_DRIVE = 4
RWH_MULTIPLE_OFF = 5
RWH_BITMAP = 6
#: PPL sizes (super-intel.c): one log's header and entries, and the multiple-PPL area.
PPL_HEADER_SIZE = 4096
PPL_ENTRY_SPACE = 128 * 1024
MULTIPLE_PPL_AREA_SIZE = 1024 * 1024
