"""Our sysfs driver (``SysfsArray``, ``RealKernel``) against the real md driver, in the test bed.

The unit tests (tests/mdmond/kernel/test_sysfs.py) run over plain files, which
cannot notify; here one guest boot plays the notification paths on Debian's
kernel.  Stock mdadm builds an IMSM container with a RAID1 and a RAID0 volume
with ``MDADM_NO_MDMON=1``: no mdmon runs, so the guest program (below, using
only our driver) plays mdmon's part by hand:

1. a write to the clean RAID1 blocks in ``write-pending``; the change arrives
   through ``wait_change`` (EPOLLPRI on ``array_state``); writing ``active``
   through the pre-opened descriptor lets the write complete; ``active-idle``
   is notified after the safe-mode delay, and ``clean`` is accepted again;
2. ``read_snapshot`` agrees with the sysfs files read afresh;
3. ``mdadm --fail`` of a member: its ``state`` goes faulty (notified), and
   ``/proc/mdstat`` notifies ``RealKernel.wait_mdstat``;
4. the member is unblocked and removed (``RealKernel.remove_member``): its
   attributes vanish under the open descriptors; ``wait_change`` drops them
   (no wake-up storm, no traceback) and the snapshot leaves the device out;
5. a RAID0 (no ``sync_action``/``degraded`` at all) opens and snapshots.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from testbed import vm

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

GUEST = r'''
import errno, json, os, subprocess, sys, time
import trio
from mdmond.kernel.real import RealKernel
from mdmond.kernel.snapshot import read_snapshot
from mdmond.kernel.values import MAX_SECTOR

ENV = dict(os.environ, MDADM_NO_MDMON="1")
D = os.environ["TESTBED_DISKS"].split()
out = {"log": []}

def sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60)
    out["log"].append([" ".join(cmd), r.returncode, (r.stdout + r.stderr)[-400:]])
    if r.returncode:
        raise SystemExit(f"{cmd} failed: {r.stderr}")
    return r

def mdname(link):
    return os.path.basename(os.path.realpath(link))

def fresh(md, attr):
    try:
        with open(f"/sys/block/{md}/md/{attr}") as f:
            return f.read().rstrip("\n")
    except OSError as e:
        return f"<{errno.errorcode[e.errno]}>"

def snap_dict(s):
    sec = lambda v: "none" if v == MAX_SECTOR else str(v)
    return {
        "array_state": s.array_state.value, "sync_action": s.sync_action.value,
        "resync_start": sec(s.resync_start),
        "devs": {d.name: [sorted(d.state.flags), "none" if d.slot is None else str(d.slot), sec(d.recovery_start)]
                 for d in s.devs},
    }

def fresh_dict(md):
    devs = {}
    for e in sorted(os.listdir(f"/sys/block/{md}/md")):
        if e.startswith("dev-"):
            devs[e[4:]] = [sorted(fresh(md, f"{e}/state").split(",")), fresh(md, f"{e}/slot"),
                           fresh(md, f"{e}/recovery_start")]
    return {"array_state": fresh(md, "array_state"), "sync_action": fresh(md, "sync_action"),
            "resync_start": fresh(md, "resync_start"), "devs": devs}

async def wait_until(arr, pred, seconds):
    """wait_change until pred() holds; the array_state values read after each wake-up."""
    seen = []
    with trio.move_on_after(seconds):
        while not pred():
            await arr.wait_change()
            seen.append(arr.read("array_state").strip())
    return seen

async def count_wakeups(arr, seconds):
    n = 0
    with trio.move_on_after(seconds):
        while True:
            await arr.wait_change()
            n += 1
            await trio.sleep(0)
    return n

async def main():
    t0 = time.monotonic()
    sh("mdadm", "--create", "/dev/md/c0", "-e", "imsm", "-n", "2", "--run", D[0], D[1])
    sh("mdadm", "--create", "/dev/md/vol0", "-l", "1", "-n", "2", "--size=8M", "--assume-clean", "--run", "/dev/md/c0")
    sh("mdadm", "--create", "/dev/md/vol1", "-l", "0", "-n", "2", "--size=4M", "--run", "/dev/md/c0")
    cont, vol, r0 = mdname("/dev/md/c0"), mdname("/dev/md/vol0"), mdname("/dev/md/vol1")
    out["names"] = [cont, vol, r0]
    kernel = RealKernel()
    out["container_members"] = kernel.container_members(cont)
    out["metadata_version"] = kernel.metadata_version(vol)
    out["created_state"] = fresh(vol, "array_state")
    comms = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                comms.append(open(f"/proc/{p}/comm").read().strip())
            except OSError:
                pass
    out["mdmon_running"] = "mdmon" in comms
    arr = kernel.open_array(vol)
    ready = []  # which watched attributes woke wait_change, by name
    consume = arr._consume
    def spy(fd):
        ready.append(arr._by_fd.get(fd, "?"))
        consume(fd)
    arr._consume = spy
    # mdmon's part: the volume starts clean (mdadm leaves it to mdmon, which is not running).
    if arr.read("array_state").strip() != "clean":
        arr.write("array_state", "clean")
    out["start_state"] = arr.read("array_state").strip()
    out["resync_start"] = fresh(vol, "resync_start")
    out["idle_wakeups"] = await count_wakeups(arr, 0.5)

    # (1) a write to the clean array: write-pending, notified; we write active; it completes.
    kernel.mdstat()
    dd = await trio.lowlevel.open_process(
        ["dd", "if=/dev/zero", f"of=/dev/{vol}", "bs=4096", "count=1", "seek=512", "oflag=direct", "status=none"])
    state = lambda: arr.read("array_state").strip()
    out["pending_seen"] = await wait_until(arr, lambda: fresh(vol, "array_state") == "write-pending", 10)
    out["dd_blocked"] = dd.poll() is None
    arr.write("array_state", "active")
    out["after_active"] = state()
    with trio.move_on_after(10):
        await dd.wait()
    out["dd_rc"] = dd.poll()
    if dd.poll() is None:
        dd.kill()
    out["idle_seen"] = await wait_until(arr, lambda: fresh(vol, "array_state") == "active-idle", 10)
    arr.write("array_state", "clean")
    out["final_state"] = state()

    # (2) a snapshot through the open descriptors says what the files say.
    out["snapshot"] = snap_dict(read_snapshot(arr))
    out["fresh"] = fresh_dict(vol)

    # (3) a member fails: notified through its state; /proc/mdstat notifies too.
    failed = os.path.basename(D[1])
    kernel.mdstat()
    arr.read("array_state"), arr.read(f"dev-{failed}/state")
    del ready[:]
    async def waiter():
        with trio.move_on_after(10):
            await arr.wait_change()
            out["fail_woke"] = sorted(set(ready))
    async with trio.open_nursery() as n:
        n.start_soon(waiter)
        await trio.sleep(0.3)  # parked in epoll_wait before the failure happens
        r = await trio.run_process(["mdadm", "/dev/md/vol0", "--fail", D[1]], capture_stdout=True,
                                   capture_stderr=True, env=ENV, check=False)
        out["log"].append(["mdadm --fail", r.returncode, r.stderr.decode()[-300:]])
    out["failed_state"] = arr.read(f"dev-{failed}/state").strip()
    out["failed_snapshot"] = snap_dict(read_snapshot(arr))
    with trio.move_on_after(5) as cs:
        await kernel.wait_mdstat()
    out["mdstat_notified"] = not cs.cancelled_caught
    out["mdstat_after_fail"] = kernel.mdstat()

    # (4) mdmon's part: record the failure (-blocked), md takes it out of its slot, remove it.
    if "blocked" in out["failed_state"]:
        arr.write(f"dev-{failed}/state", "-blocked")
    deadline = time.monotonic() + 10
    out["slot_seen"] = []
    while time.monotonic() < deadline:
        slot = arr.read(f"dev-{failed}/slot").strip()
        out["slot_seen"].append(slot)
        if slot == "none":
            break
        with trio.move_on_after(0.5):
            await arr.wait_change()
    out["array_state_after_fail"] = state()
    kernel.mdstat()
    for _ in range(50):
        try:
            await trio.to_thread.run_sync(kernel.remove_member, vol, failed)
            out["remove"] = "ok"
            break
        except OSError as e:
            out["remove"] = errno.errorcode[e.errno]
            await trio.sleep(0.1)
    out["dir_gone"] = not os.path.exists(f"/sys/block/{vol}/md/dev-{failed}")
    try:
        arr.read(f"dev-{failed}/state")
        out["read_removed"] = "read"
    except OSError as e:
        out["read_removed"] = errno.errorcode[e.errno]
    del ready[:]
    out["removed_wakeups"] = await count_wakeups(arr, 1.0)
    out["removed_woke"] = sorted(set(ready))
    out["removed_wakeups_again"] = await count_wakeups(arr, 1.0)
    out["removed_snapshot"] = snap_dict(read_snapshot(arr))
    arr.drop_device(f"dev-{failed}")
    out["devices_after_drop"] = list(arr.devices())
    # md set MD_SB_CHANGE_PENDING at the failure: write-pending until user space writes active
    out["state_before_active"] = state()
    arr.write("array_state", "active")
    out["state_after_active"] = state()
    with trio.move_on_after(5) as cs:
        await kernel.wait_mdstat()
    out["mdstat_notified_remove"] = not cs.cancelled_caught
    out["mdstat_after_remove"] = kernel.mdstat()

    # (5) a RAID0: no redundancy attributes at all.
    a0 = kernel.open_array(r0)
    out["raid0_files"] = {a: fresh(r0, a) for a in ("array_state", "sync_action", "degraded", "resync_start")}
    out["raid0_snapshot"] = snap_dict(read_snapshot(a0))
    a0.close()
    arr.close()
    kernel.close()
    out["seconds"] = round(time.monotonic() - t0, 2)

try:
    trio.run(main)
finally:
    print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def guest(kernel: object, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    prog = tmp_path_factory.mktemp("sysfs-driver") / "guest.py"
    prog.write_text(GUEST)
    t0 = time.monotonic()
    r = vm.run(
        f"PYTHONPATH={vm.PROJECT} {sys.executable} {prog}",
        kernel=kernel,  # type: ignore[arg-type]
        disks=2,
        disk_size_mib=32,
        shares=[prog.parent],
        timeout=120,
    )
    print(f"\n[testbed] sysfs driver: exit {r.returncode}, boot {r.boot_seconds} s, {time.monotonic() - t0:.1f} s")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, f"guest failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    print(json.dumps({k: v for k, v in out.items() if k != "log"}, indent=1))
    return out


def test_container_and_metadata(guest: dict[str, Any]) -> None:
    assert guest["container_members"] == ["sda", "sdb"]
    assert guest["metadata_version"].startswith(f"external:/{guest['names'][0]}/")
    assert not guest["mdmon_running"], "stock mdmon would answer the kernel in our place"
    assert guest["created_state"] == "readonly"  # mdadm starts a member readonly and leaves it to mdmon
    assert guest["start_state"] == "clean" and guest["resync_start"] == "none"
    assert guest["idle_wakeups"] == 0, "an idle clean array must not wake the monitor"


def test_write_pending_is_notified_and_active_lets_the_write_through(guest: dict[str, Any]) -> None:
    assert guest["pending_seen"] and guest["pending_seen"][-1] == "write-pending", guest["pending_seen"]
    assert guest["dd_blocked"], "the write went through before user space wrote active"
    assert guest["after_active"] == "active"
    assert guest["dd_rc"] == 0
    assert guest["idle_seen"] and guest["idle_seen"][-1] == "active-idle", guest["idle_seen"]
    assert guest["final_state"] == "clean"


def test_snapshot_matches_the_files(guest: dict[str, Any]) -> None:
    assert guest["snapshot"] == guest["fresh"]
    assert set(guest["snapshot"]["devs"]) == {"sda", "sdb"}


def test_failure_is_notified_and_mdstat_moves(guest: dict[str, Any]) -> None:
    assert "dev-sdb/state" in guest.get("fail_woke", []), "the failure did not wake wait_change"
    assert set(guest["failed_state"].split(",")) >= {"faulty", "blocked"}
    sdb = guest["failed_snapshot"]["devs"]["sdb"]
    assert {"faulty", "blocked"} <= set(sdb[0]) and "in_sync" not in sdb[0]
    # the personality's error handler sets MD_SB_CHANGE_PENDING: write-pending until "active"
    assert guest["failed_snapshot"]["array_state"] == "write-pending"
    assert guest["state_before_active"] == "write-pending" and guest["state_after_active"] == "clean"
    assert guest["mdstat_notified"]
    assert "sdb[0](F)" in guest["mdstat_after_fail"]


def test_removed_device_attributes_are_dropped(guest: dict[str, Any]) -> None:
    assert guest["slot_seen"][-1] == "none", guest["slot_seen"]
    assert guest["remove"] == "ok"
    assert guest["dir_gone"]
    assert guest["read_removed"] != "read", "a removed device's attribute still reads"
    assert guest["removed_wakeups_again"] == 0, "a deleted attribute keeps waking the monitor"
    assert guest["removed_wakeups"] <= 2
    assert all(a.startswith("dev-sdb/") for a in guest["removed_woke"]), guest["removed_woke"]
    assert set(guest["removed_snapshot"]["devs"]) == {"sda"}
    assert guest["devices_after_drop"] == ["dev-sda"]
    assert guest["mdstat_notified_remove"]
    assert "sdb" not in guest["mdstat_after_remove"].split(guest["names"][1], 1)[1].splitlines()[0]


def test_raid0_has_no_redundancy_attributes(guest: dict[str, Any]) -> None:
    files = guest["raid0_files"]
    assert files["sync_action"] == "<ENOENT>" and files["degraded"] == "<ENOENT>"
    snap = guest["raid0_snapshot"]
    assert snap["array_state"] == files["array_state"]
    assert set(snap["devs"]) == {"sda", "sdb"}


def test_run_time(guest: dict[str, Any]) -> None:
    assert guest["seconds"] < 60
