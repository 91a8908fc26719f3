"""``kill -9`` of mdmond at random moments of a rebuild under a write load (issue 12, item 4).

The guest (``testbed/guest/kills.sh``) builds an IMSM RAID5 with a spare,
writes the test pattern, fails a member and throttles the rebuild; then, a
number of times, it starts a write load, waits a random moment, kills the
daemon with SIGKILL, reads md's recovery position and the checkpoint the disks
hold, and starts the daemon again as mdadm does (``mdmon CONTAINER``).  After
the rebuild it stops everything and re-assembles, as the next boot would.

Every recorded checkpoint must be at or behind md's position at the kill (a
checkpoint ahead would skip unrebuilt stripes on resume), every write must
complete once the new daemon serves, and the volume must end whole: pattern
intact, ``check`` clean, recorded normal.  ``MDMOND_VM_KILLS`` (kills per
guest, 3 by default) and ``MDMOND_VM_KILL_SEED`` choose the run;
``scripts/vm-kills`` runs many guests in a row.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable

import pytest

from testbed import vm

from .guest import fields

pytestmark = pytest.mark.vm

RunVm = Callable[..., vm.Result]

SCRIPT = (vm.PROJECT / "testbed" / "guest" / "kills.sh").read_text()
KILL = re.compile(r"^kill (\d+) md=(\d+) recorded=(\S+) (\S+)$", re.M)


def test_kill_9_mid_rebuild_under_writes_loses_nothing(run_vm: RunVm) -> None:
    kills = int(os.environ.get("MDMOND_VM_KILLS", "3"))
    seed = int(os.environ.get("MDMOND_VM_KILL_SEED", str(random.randrange(1 << 15))))
    r = run_vm(f"set -- {kills} {seed}\n" + SCRIPT, disks=4, timeout=900, mdmon="mdmond")
    context = f"\n(seed {seed})\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-3000:]}"
    assert r.returncode == 0, context
    done = KILL.findall(r.stdout)
    print(f"seed {seed}: " + "; ".join(f"kill {k}: md {m}, recorded {c} ({s})" for k, m, c, s in done))
    assert done, context  # at least one kill landed mid-rebuild
    for _, md_at, recorded, state in done:
        assert state == "degraded", context  # still rebuilding on disk
        assert recorded == "None" or int(recorded) <= int(md_at), context  # never ahead of md
    got = fields(r.stdout)
    assert got.get("pattern") == "ok" and got.get("mismatch") == "0", context
    assert "[UUU]" in got.get("mdstat", ""), context
    assert got.get("final recorded") == "None normal", context
