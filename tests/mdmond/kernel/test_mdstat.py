"""/proc/mdstat for external-metadata arrays.

REBUILDING is real kernel output (test bed); TWO_VOLUMES is composed in the same shape.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mdmond.kernel.mdstat import MdstatDevice, parse_mdstat

REBUILDING = """Personalities : [raid6] [raid5] [raid4] [raid1] [raid0] [raid10]
md126 : active raid5 sdd[3] sdc[2] sda[0]
      49152 blocks super external:/md127/0 level 5, 128k chunk, algorithm 0 [3/2] [U_U]
      [=>...................]  recovery =  6.1% (1664/24576) finish=0.2min speed=1664K/sec

md127 : inactive sdd[3](S) sdc[2](S) sdb[1](S) sda[0](S)
      4420 blocks super external:imsm

unused devices: <none>
"""

TWO_VOLUMES = """Personalities : [raid1] [raid0]
md125 : active (auto-read-only) raid1 sdb[1] sda[0]
      8192 blocks super external:-md127/1 [2/2] [UU]

md126 : active raid0 sdb[1] sda[0]
      30720 blocks super external:/md127/0 128k chunks

md127 : inactive sdb[1](S) sda[0](S)
      3315 blocks super external:ddf

unused devices: <none>
"""


def test_member_and_container_of_a_rebuilding_imsm_array() -> None:
    vol, cont = parse_mdstat(REBUILDING)
    assert vol.name == "md126" and vol.active and vol.level == "raid5"
    assert vol.devices == (MdstatDevice("sdd", 3), MdstatDevice("sdc", 2), MdstatDevice("sda", 0))
    assert vol.container == "md127" and vol.subarray == "0" and not vol.blocked
    assert (vol.raid_disks, vol.working_disks) == (3, 2)
    assert (vol.sync, vol.sync_done_kib, vol.sync_total_kib) == ("recovery", 1664, 24576)
    assert cont.name == "md127" and not cont.active and cont.container_format == "imsm"
    assert all(d.spare for d in cont.devices) and cont.container is None


def test_blocked_read_only_subarray_and_a_ddf_container() -> None:
    ro, r0, cont = parse_mdstat(TWO_VOLUMES)
    assert ro.readonly and ro.blocked and ro.container == "md127" and ro.subarray == "1"
    assert r0.level == "raid0" and r0.raid_disks is None and r0.sync is None
    assert cont.container_format == "ddf"


@given(st.text())
def test_any_text_parses_without_error(text: str) -> None:
    for e in parse_mdstat(text):
        assert e.name.startswith("md")
