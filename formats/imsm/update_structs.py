"""The metadata-update messages mdadm 4.2 sends to mdmon for IMSM, declared with ``construct``.

These are *native* C structures (``super-intel.c``: ``struct imsm_update_*``),
not on-disk ones: the first field is ``enum imsm_update_type`` as a host
``int``, the other ``int``s are host ints and ``long long``/``__u64`` fields
are naturally aligned (x86-64 System V ABI: 8-byte alignment, so the compiler
pads after a leading 4-byte field).  mdmon and mdadm always run on the same
host, so host order is little-endian here (x86-64, the only platform IMSM
exists on).  The ``struct imsm_dev`` inside a create message is copied from
mdadm's in-memory MPB, which is kept in on-disk (little-endian, 512-byte unit)
form, so ``structs.DevHeader``/``Vol``/``Map`` read it as they read a disk.

The layouts are the same in mdadm 4.2 and in mdadm's current development
tree (checked against both); offsets in the comments are byte offsets in the
payload.
"""

from __future__ import annotations

from typing import Any

from construct import Bytes, Int32sl, Int64sl, Int64ul, Padding, Struct

# enum imsm_update_type, in declaration order (0..11).
UPDATE_ACTIVATE_SPARE = 0
UPDATE_CREATE_ARRAY = 1
UPDATE_KILL_ARRAY = 2
UPDATE_RENAME_ARRAY = 3
UPDATE_ADD_REMOVE_DISK = 4
UPDATE_RESHAPE_CONTAINER_DISKS = 5
UPDATE_RESHAPE_MIGRATION = 6
UPDATE_TAKEOVER = 7
UPDATE_GENERAL_MIGRATION_CHECKPOINT = 8
UPDATE_SIZE_CHANGE = 9
UPDATE_PREALLOC_BADBLOCKS_MEM = 10
UPDATE_RWH_POLICY = 11

UPDATE_NAMES = {
    UPDATE_ACTIVATE_SPARE: "update_activate_spare",
    UPDATE_CREATE_ARRAY: "update_create_array",
    UPDATE_KILL_ARRAY: "update_kill_array",
    UPDATE_RENAME_ARRAY: "update_rename_array",
    UPDATE_ADD_REMOVE_DISK: "update_add_remove_disk",
    UPDATE_RESHAPE_CONTAINER_DISKS: "update_reshape_container_disks",
    UPDATE_RESHAPE_MIGRATION: "update_reshape_migration",
    UPDATE_TAKEOVER: "update_takeover",
    UPDATE_GENERAL_MIGRATION_CHECKPOINT: "update_general_migration_checkpoint",
    UPDATE_SIZE_CHANGE: "update_size_change",
    UPDATE_PREALLOC_BADBLOCKS_MEM: "update_prealloc_badblocks_mem",
    UPDATE_RWH_POLICY: "update_rwh_policy",
}

TYPE_SIZE = 4  # enum imsm_update_type

#: ``struct imsm_update_create_array`` up to its ``struct imsm_dev dev`` (at 8).
#: Then the dev (80-byte header, 32-byte vol, map[0], map[1] while migrating:
#: ``sizeof_imsm_dev(dev, 0)`` bytes) and one ``struct disk_info`` (a 16-byte
#: serial) per member of map[0], in slot order.  mdadm sends exactly
#: ``8 + sizeof_imsm_dev + 16 * num_members`` bytes.
CreateArrayHead: Any = Struct(
    "type" / Int32sl,  # 0
    "dev_idx" / Int32sl,  # 4 index the new volume gets
)
CREATE_DEV_OFFSET = 8
#: sizeof(struct imsm_update_create_array): the dev with a one-entry ord table.
CREATE_ARRAY_MIN_SIZE = 172

#: ``struct disk_info``.
DiskInfo: Any = Struct("serial" / Bytes(16))
DISK_INFO_SIZE = 16

#: ``struct imsm_update_kill_array``: 8 bytes.
KillArray: Any = Struct(
    "type" / Int32sl,  # 0
    "dev_idx" / Int32sl,  # 4
)

#: ``struct imsm_update_rename_array``: 24 bytes.
RenameArray: Any = Struct(
    "type" / Int32sl,  # 0
    "name" / Bytes(16),  # 4 NUL-terminated by mdadm (15 characters at most)
    "dev_idx" / Int32sl,  # 20
)

#: ``struct imsm_update_add_remove_disk`` and ``imsm_update_prealloc_bb_mem``: the type only.
TypeOnly: Any = Struct("type" / Int32sl)

#: ``struct imsm_update_size_change``: 16 bytes.
SizeChange: Any = Struct(
    "type" / Int32sl,  # 0
    "subdev" / Int32sl,  # 4
    "new_size" / Int64sl,  # 8 array size in 512-byte sectors (long long)
)

#: ``struct imsm_update_rwh_policy``: 12 bytes.
RwhPolicy: Any = Struct(
    "type" / Int32sl,  # 0
    "new_policy" / Int32sl,  # 4
    "dev_idx" / Int32sl,  # 8
)

#: ``struct imsm_update_general_migration_checkpoint``: 16 bytes (4 of padding).
GeneralMigrationCheckpoint: Any = Struct(
    "type" / Int32sl,  # 0
    Padding(4),  # 4 alignment of the __u64
    "curr_migr_unit" / Int64ul,  # 8
)

#: ``struct imsm_update_takeover``: 12 bytes.
Takeover: Any = Struct(
    "type" / Int32sl,  # 0
    "subarray" / Int32sl,  # 4
    "direction" / Int32sl,  # 8 R10_TO_R0 = 0, R0_TO_R10 = 1
)

#: ``struct imsm_update_reshape`` (16 bytes with its one-entry ``new_disks``).
ReshapeHead: Any = Struct(
    "type" / Int32sl,  # 0
    "old_raid_disks" / Int32sl,  # 4
    "new_raid_disks" / Int32sl,  # 8
)

#: ``struct imsm_update_reshape_migration`` (32 bytes with its one-entry ``new_disks``).
ReshapeMigrationHead: Any = Struct(
    "type" / Int32sl,  # 0
    "old_raid_disks" / Int32sl,  # 4
    "new_raid_disks" / Int32sl,  # 8
    "subdev" / Int32sl,  # 12
    "new_level" / Int32sl,  # 16
    "new_layout" / Int32sl,  # 20
    "new_chunksize" / Int32sl,  # 24
)

#: Exact payload sizes of the fixed-size messages (``sizeof`` on x86-64).
FIXED_SIZES = {
    UPDATE_KILL_ARRAY: 8,
    UPDATE_RENAME_ARRAY: 24,
    UPDATE_ADD_REMOVE_DISK: 4,
    UPDATE_SIZE_CHANGE: 16,
    UPDATE_PREALLOC_BADBLOCKS_MEM: 4,
    UPDATE_RWH_POLICY: 12,
    UPDATE_GENERAL_MIGRATION_CHECKPOINT: 16,
    UPDATE_TAKEOVER: 12,
}
