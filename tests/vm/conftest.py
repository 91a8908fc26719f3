"""Fixtures for the real-kernel tests (marker ``vm``).

They skip, saying why, where the guest cannot run: qemu or the prepared kernel
missing (``scripts/setup-vm`` installs them; it records why it failed), or the
test bed switched off with ``MDMOND_TESTBED_SKIP=1``.  Once the prerequisites
are there they do not skip: a guest that fails to boot fails the tests.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator

import pytest

from testbed import provision, transcript, vm

_recordings: dict[str, transcript.Recording] = {}


def _unavailable() -> str | None:
    if os.environ.get("MDMOND_TESTBED_SKIP") == "1":
        return "MDMOND_TESTBED_SKIP=1"
    failed = provision.cache_dir() / "setup-failed.txt"
    if failed.exists():
        return f"scripts/setup-vm failed: {failed.read_text().strip()[-300:]}"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed (run scripts/setup-vm)"
    if not os.access("/dev/null", os.W_OK):
        return "no access to /dev"
    try:
        provision.prepare(install=False)
    except provision.Unavailable as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def kernel() -> provision.Kernel:
    """The prepared guest kernel, or a skip saying why there is none."""
    why = _unavailable()
    if why:
        pytest.skip(f"real-kernel test bed unavailable: {why}")
    return provision.prepare(install=False)


@pytest.fixture(scope="session")
def recording(
    kernel: provision.Kernel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., transcript.Recording]]:
    """``recording(scenario, daemon)``: a transcript scenario played once per session and daemon.

    ``daemon`` is what stock mdadm starts as its mdmon: ``mdmon`` (the reference)
    or ``mdmond``.  Several tests read each recording.
    """

    def get(name: str, daemon: str = "mdmon") -> transcript.Recording:
        key = f"{name}@{daemon}"
        if key not in _recordings:
            t0 = time.monotonic()
            rec = transcript.record(name, tmp_path_factory.mktemp(f"{name}-{daemon}"), mdmon=daemon)
            print(f"\n[testbed] {name} under {daemon}: exit {rec.result.returncode}, {time.monotonic() - t0:.1f} s")
            _recordings[key] = rec
        return _recordings[key]

    yield get
    _recordings.clear()


@pytest.fixture
def run_vm(kernel: provision.Kernel) -> Callable[..., vm.Result]:
    """``run_vm(script, **kw)``: ``testbed.vm.run`` with the session's kernel."""

    def run(script: str, **kw: object) -> vm.Result:
        return vm.run(script, kernel=kernel, **kw)  # type: ignore[arg-type]

    return run
