"""Side by side: the same stock mdadm in the guest, starting mdmond instead of mdmon.

``MDMOND_TESTBED_MDMON=mdmond`` (or ``vm.run(..., mdmon="mdmond")``) binds
``testbed/guest/mdmon-mdmond`` over ``/usr/sbin/mdmon``, the path mdadm execs.
That shim logs the call and execs ``mdmond mdmon``, mdmond's mdmon-compatible
entry point.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testbed import vm

from .guest import fields

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

CREATE_AND_WRITE = r"""
set -u
D=($TESTBED_DISKS)
mdadm --create /dev/md/c0 -e imsm -n 2 --run "${D[0]}" "${D[1]}" 2>&1
mdadm --create /dev/md/vol0 -l 1 -n 2 --size=4M --run /dev/md/c0 2>&1
echo "create-rc=$?"
md=$(basename "$(readlink -f /dev/md/vol0)")
echo "state-before=$(cat /sys/block/$md/md/array_state)"
echo "shim-log=$(cat /run/mdmond-shim.log 2>/dev/null | tr '\n' ';')"
mon=""; for p in /proc/[0-9]*; do read -r c < $p/comm 2>/dev/null && [ "$c" = mdmon ] && mon="$mon ${p#/proc/}"; done
echo "mdmon-pids=$mon"
timeout 20 dd if=/dev/zero of=/dev/md/vol0 bs=4096 count=1 oflag=direct status=none
echo "write-rc=$?"
echo "state-after=$(cat /sys/block/$md/md/array_state)"
"""


def test_stock_mdmon_serves_the_volume(run_vm: RunVm) -> None:
    """The reference: with stock mdmon the new volume is writable (mdmon marks it active)."""
    r = run_vm(CREATE_AND_WRITE, disks=2, disk_size_mib=32, timeout=180, mdmon="mdmon")
    f = fields(r.stdout)
    assert f["shim-log"] == ""
    assert f["mdmon-pids"].strip(), r.stdout
    assert f["write-rc"] == "0" and f["state-after"] in ("active", "clean"), r.stdout


def test_switch_makes_mdadm_start_mdmond(run_vm: RunVm) -> None:
    """With the switch, mdadm execs our entry point (it is logged) and no stock mdmon runs."""
    r = run_vm(CREATE_AND_WRITE, disks=2, disk_size_mib=32, timeout=180, mdmon="mdmond")
    f = fields(r.stdout)
    calls = [c for c in f["shim-log"].split(";") if c]
    assert calls, f"mdadm did not start the mdmond entry point:\n{r.stdout}\n{r.stderr}"
    assert all(c.endswith("-> mdmond") for c in calls), calls
    assert any(c.split(" -> ")[0].split()[-1] == "md127" for c in calls), calls  # mdmon's argument: the container
    assert f["mdmon-pids"].strip() == ""
    assert "failed to launch mdmon" not in r.stdout


def test_switch_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDMOND_TESTBED_MDMON", "mdmond")
    assert vm.guest_mdmon_choice() == "mdmond"
    monkeypatch.setenv("MDMOND_TESTBED_MDMON", "mdmon")
    assert vm.guest_mdmon_choice() == "mdmon"
    monkeypatch.setenv("MDMOND_TESTBED_MDMON", "nonsense")
    with pytest.raises(ValueError):
        vm.guest_mdmon_choice()


def test_mdmond_serves_the_volume_like_mdmon(run_vm: RunVm) -> None:
    """mdadm starts mdmond; the new volume takes a write (write-pending answered) like under mdmon."""
    r = run_vm(
        CREATE_AND_WRITE + "\ncat /run/mdmond-events.jsonl\n", disks=2, disk_size_mib=32, timeout=180, mdmon="mdmond"
    )
    f = fields(r.stdout)
    assert f["create-rc"] == "0", r.stdout
    assert f["write-rc"] == "0" and f["state-after"] in ("active", "clean"), r.stdout
