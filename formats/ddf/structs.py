"""SNIA DDF on-disk structures, declared with ``construct`` (formats.md Part 2).

Only declarations live here.  Every integer is big-endian except the VD
entry's ``guid_crc``, which mdadm stores in host (little-endian) order.  Every
reserved or padding area is declared as raw ``Bytes`` so that a parse followed
by a build gives back the very bytes that were read, whatever a foreign writer
put there.  The offsets in the comments are byte offsets inside the structure.
"""

from __future__ import annotations

from typing import Any

from construct import Array, Bytes, Int8ub, Int16ub, Int16ul, Int32ub, Int64ub, Struct

SECTOR = 512  # DDF counts in 512-byte units whatever the device's logical sector size
GUID_LEN = 24

HEADER_MAGIC = 0xDE11DE11
CONTROLLER_MAGIC = 0xAD111111
PHYS_RECORDS_MAGIC = 0x22222222
PHYS_DATA_MAGIC = 0x33333333  # also what mdadm before Dec 2009 wrote as the PD section magic
VIRT_RECORDS_MAGIC = 0xDDDDDDDD
VD_CONF_MAGIC = 0xEEEEEEEE
SPARE_ASSIGN_MAGIC = 0x55555555
VU_CONF_MAGIC = 0x88888888

REVISIONS = (b"01.00.00", b"01.02.00")
REVISION = b"01.02.00"

HEADER_ANCHOR, HEADER_PRIMARY, HEADER_SECONDARY = 0, 1, 2
NO_LBA = 0xFFFFFFFFFFFFFFFF
NO_SECTION = 0xFFFFFFFF
NO_REFNUM = 0xFFFFFFFF

#: DDF header, 512 bytes: the anchor (last block), primary and secondary share it.
Header: Any = Struct(
    "magic" / Int32ub,  # 0 0xDE11DE11
    "crc" / Int32ub,  # 4 mdadm CRC over the 512 bytes, this field read as FF FF FF FF
    "guid" / Bytes(GUID_LEN),  # 8 container identity
    "revision" / Bytes(8),  # 32 "01.02.00"
    "seq" / Int32ub,  # 40 +1 per batch of updates; anchor 0xFFFFFFFF
    "timestamp" / Int32ub,  # 44 seconds since 1980, set at every write
    "openflag" / Int8ub,  # 48 1 while the copy is being written, 0 when done; anchor 0xFF
    "foreignflag" / Int8ub,  # 49
    "enforcegroups" / Int8ub,  # 50
    "pad0" / Bytes(13),  # 51 0xFF
    "header_ext" / Bytes(32),  # 64 0xFF
    "primary_lba" / Int64ub,  # 96 N-32768 in mdadm's layout
    "secondary_lba" / Int64ub,  # 104 N-65536, all-FF = none
    "type" / Int8ub,  # 112 0 anchor, 1 primary, 2 secondary
    "pad2" / Bytes(3),  # 113 0xFF; from here on every copy must equal the anchor
    "workspace_len" / Int32ub,  # 116 sectors
    "workspace_lba" / Int64ub,  # 120
    "max_pd_entries" / Int16ub,  # 128 15/63/255/1023/4095
    "max_vd_entries" / Int16ub,  # 130 same set
    "max_partitions" / Int16ub,  # 132 config records per disk
    "config_record_len" / Int16ub,  # 134 sectors per config record
    "max_primary_element_entries" / Int16ub,  # 136 mppe: 16/64/256/1024/4096
    "pad3" / Bytes(54),  # 138 0xFF
    "controller_section_offset" / Int32ub,  # 192 sectors from this header's LBA
    "controller_section_length" / Int32ub,  # 196 sectors
    "phys_section_offset" / Int32ub,  # 200
    "phys_section_length" / Int32ub,  # 204
    "virt_section_offset" / Int32ub,  # 208
    "virt_section_length" / Int32ub,  # 212
    "config_section_offset" / Int32ub,  # 216
    "config_section_length" / Int32ub,  # 220
    "data_section_offset" / Int32ub,  # 224
    "data_section_length" / Int32ub,  # 228
    "bbm_section_offset" / Int32ub,  # 232 0xFFFFFFFF in mdadm
    "bbm_section_length" / Int32ub,  # 236
    "diag_space_offset" / Int32ub,  # 240
    "diag_space_length" / Int32ub,  # 244
    "vendor_offset" / Int32ub,  # 248
    "vendor_length" / Int32ub,  # 252
    "pad4" / Bytes(256),  # 256 0xFF
)
HEADER_SIZE = 512
HEADER_TAIL = 113  # offset of pad2: the bytes from here to the end equal the anchor's

#: Controller data section, one sector.
Controller: Any = Struct(
    "magic" / Int32ub,  # 0 0xAD111111
    "crc" / Int32ub,  # 4
    "guid" / Bytes(GUID_LEN),  # 8 "Linux-MD" + spaces + hostname, right-aligned
    "vendor_id" / Int16ub,  # 32 0xDEAD
    "device_id" / Int16ub,  # 34 0xBEEF
    "sub_vendor_id" / Int16ub,  # 36
    "sub_device_id" / Int16ub,  # 38
    "product_id" / Bytes(16),  # 40 "What Is My PID??"
    "pad" / Bytes(8),  # 56 0xFF
    "vendor_data" / Bytes(448),  # 64 homehost, NUL-terminated, then 0xFF
)
CONTROLLER_SIZE = 512

#: Physical disk records section header, 64 bytes; ``PhysEntry`` x max_pdes follow.
PhysHeader: Any = Struct(
    "magic" / Int32ub,  # 0 0x22222222
    "crc" / Int32ub,  # 4 over the whole section (phys_section_length sectors)
    "used_pdes" / Int16ub,  # 8 a count; entries may be sparse
    "max_pdes" / Int16ub,  # 10
    "pad" / Bytes(52),  # 12 0xFF
)

#: One physical disk record, 64 bytes.
PhysEntry: Any = Struct(
    "guid" / Bytes(GUID_LEN),  # 0 = the disk's disk-data GUID; unused = all 0xFF
    "refnum" / Int32ub,  # 24 unused = 0xFFFFFFFF
    "type" / Int16ub,  # 28 PD_Type bits
    "state" / Int16ub,  # 30 PD_State bits
    "config_size" / Int64ub,  # 32 usable data sectors from LBA 0
    "path" / Bytes(18),  # 40 " Information: nil\0"
    "pad" / Bytes(6),  # 58 (DDF 2.0 block size at 58) 0xFF
)

#: Virtual disk records section header, 64 bytes; ``VirtEntry`` x max_vdes follow.
VirtHeader: Any = Struct(
    "magic" / Int32ub,  # 0 0xDDDDDDDD
    "crc" / Int32ub,  # 4 over the whole section
    "populated_vdes" / Int16ub,  # 8
    "max_vdes" / Int16ub,  # 10
    "pad" / Bytes(52),  # 12 0xFF
)

#: One virtual disk record, 64 bytes; an unused one is all 0xFF.
VirtEntry: Any = Struct(
    "guid" / Bytes(GUID_LEN),  # 0
    "unit" / Int16ub,  # 24 md minor at creation
    "pad0" / Bytes(2),  # 26 0xFFFF
    "guid_crc" / Int16ul,  # 28 low half of mdadm's CRC of the header GUID, host order
    "type" / Int16ub,  # 30 VD_Type flags
    "state" / Int8ub,  # 32 bits 0-2 state, 0x08 morphing, 0x10 not consistent
    "init_state" / Int8ub,  # 33 bits 0-1 init, bits 6-7 access
    "pad1" / Bytes(14),  # 34 0xFF
    "name" / Bytes(16),  # 48 NUL-padded
)

PD_SECTION_HEADER_SIZE = 64
ENTRY_SIZE = 64


def vd_config(mppe: int) -> Any:
    """A VD configuration record for ``mppe`` primary element entries (``config_record_len`` sectors).

    The two arrays are sized by the header's ``max_primary_element_entries``;
    whatever follows them up to the record length is kept as ``tail``.
    """
    return Struct(
        "magic" / Int32ub,  # 0 0xEEEEEEEE
        "crc" / Int32ub,  # 4 over config_record_len x 512 bytes
        "guid" / Bytes(GUID_LEN),  # 8 the VD's GUID
        "timestamp" / Int32ub,  # 32 seconds since 1980
        "seqnum" / Int32ub,  # 36 +1 per change of this VD
        "pad0" / Bytes(24),  # 40 0xFF
        "prim_elmnt_count" / Int16ub,  # 64 members in this BVD
        "chunk_shift" / Int8ub,  # 66 strip = 512 << shift; 0xFF = no chunk
        "prl" / Int8ub,  # 67 primary RAID level
        "rlq" / Int8ub,  # 68 RAID level qualifier
        "sec_elmnt_count" / Int8ub,  # 69 BVDs in the VD (1 = no secondary level)
        "sec_elmnt_seq" / Int8ub,  # 70 index of this BVD
        "srl" / Int8ub,  # 71 secondary RAID level (0xFF none)
        "blocks" / Int64ub,  # 72 per-member extent, sectors
        "array_blocks" / Int64ub,  # 80 VD size, sectors
        "pad1" / Bytes(8),  # 88 0xFF
        "spare_refs" / Array(8, Int32ub),  # 96 0xFFFFFFFF each
        "cache_pol" / Bytes(8),  # 128
        "bg_rate" / Int8ub,  # 136 0x80
        "pad2" / Bytes(3),  # 137 0xFF
        "pad3" / Bytes(52),  # 140 0xFF
        "pad4" / Bytes(192),  # 192 0xFF
        "v0" / Bytes(32),  # 384 0xFF
        "v1" / Bytes(32),  # 416
        "v2" / Bytes(16),  # 448
        "v3" / Bytes(16),  # 464
        "vendor" / Bytes(32),  # 480
        "phys_refnum" / Array(mppe, Int32ub),  # 512 member refnums; unused 0xFFFFFFFF, 0 = missing
        "lba_offset" / Array(mppe, Int64ub),  # 512+4xmppe member start LBAs; unused 0
    )


VD_CONFIG_FIXED = 512  # bytes before phys_refnum

#: Spare assignment record header, 32 bytes; ``SpareEntry`` x max follow.
SpareAssign: Any = Struct(
    "magic" / Int32ub,  # 0 0x55555555
    "crc" / Int32ub,  # 4
    "timestamp" / Int32ub,  # 8
    "reserved" / Bytes(7),  # 12
    "type" / Int8ub,  # 19 0x1 dedicated, 0x2 revertible, 0x4 active, 0x8 enclosure affinity
    "populated" / Int16ub,  # 20 SAEs used
    "max" / Int16ub,  # 22
    "pad" / Bytes(8),  # 24
)
SPARE_ASSIGN_HEADER_SIZE = 32

#: One spare assignment entry, 32 bytes.
SpareEntry: Any = Struct(
    "guid" / Bytes(GUID_LEN),  # 0 the VD this spare serves
    "secondary_element" / Int16ub,  # 24
    "pad" / Bytes(6),  # 26
)
SPARE_ENTRY_SIZE = 32

#: Physical disk data section (this disk's own identity), one sector.
DiskData: Any = Struct(
    "magic" / Int32ub,  # 0 0x33333333
    "crc" / Int32ub,  # 4
    "guid" / Bytes(GUID_LEN),  # 8 "Linux-MD" + YYYYMMDD + 8 random bytes
    "refnum" / Int32ub,  # 32
    "forced_ref" / Int8ub,  # 36 1
    "forced_guid" / Int8ub,  # 37 1
    "vendor" / Bytes(32),  # 38 "Linux" + spaces
    "pad" / Bytes(442),  # 70 0xFF
)
DISK_DATA_SIZE = 512

# PD_Type bits
PD_FORCED_GUID = 0x01
PD_ACTIVE = 0x02
PD_GLOBAL_SPARE = 0x04
PD_SPARE = 0x08
PD_FOREIGN = 0x10
PD_LEGACY = 0x20

# PD_State bits
PD_ONLINE = 0x01
PD_FAILED = 0x02
PD_REBUILDING = 0x04
PD_TRANSITION = 0x08
PD_SMART = 0x10
PD_READ_ERRORS = 0x20
PD_MISSING = 0x40

# VD_State
VD_STATE_MASK = 0x07
VD_OPTIMAL, VD_DEGRADED, VD_DELETED, VD_MISSING, VD_FAILED, VD_PART_OPTIMAL = 0, 1, 2, 3, 4, 5
VD_MORPHING = 0x08
VD_INCONSISTENT = 0x10
INIT_MASK = 0x03
INIT_NOT, INIT_QUICK, INIT_FULL = 0, 1, 2
ACCESS_MASK = 0xC0

# Primary RAID levels
PRL_RAID0, PRL_RAID1, PRL_RAID3, PRL_RAID4, PRL_RAID5, PRL_RAID6 = 0x00, 0x01, 0x03, 0x04, 0x05, 0x06
PRL_RAID1E, PRL_JBOD, PRL_CONCAT, PRL_RAID5E, PRL_RAID5EE = 0x11, 0x0F, 0x1F, 0x15, 0x25

# Secondary RAID levels
SRL_STRIPED, SRL_MIRRORED, SRL_CONCAT, SRL_SPANNED = 0, 1, 2, 3
NO_SECONDARY = 0xFF

DECADE = 315532800  # Unix time of 1980-01-01, DDF's epoch
