"""The guest's initramfs: busybox, the kernel modules md and the guest need, two init scripts.

It is built in Python (a newc cpio writer and a module dependency walk over the
``.modinfo`` sections) because the host has neither kmod nor initramfs-tools,
and the project must not need them: only ``busybox-static`` and the kernel
package's files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

GUEST_DIR = Path(__file__).parent / "guest"

#: Loaded at boot, in this order.  ``sd_mod`` comes before ``virtio_scsi`` so
#: that disks are named in target order; ``crc32c_generic`` before anything
#: that needs ``libcrc32c`` (a soft dependency busybox modprobe does not follow).
BOOT_MODULES = (
    "virtio_mmio",
    "virtio_pci",
    "virtio_console",
    "virtio_rng",
    "crc32c_generic",
    "scsi_mod",
    "sd_mod",
    "virtio_scsi",
    "9pnet_virtio",
    "9p",
    "overlay",
    "md_mod",
    "linear",
    "raid0",
    "raid1",
    "raid10",
    "raid456",
)

#: Shipped too, for tests that want them (``modprobe`` works in the guest).
EXTRA_MODULES = ("sg", "loop", "scsi_debug", "dm_mod", "dm_delay", "dm_flakey", "dm_zero", "dm_snapshot")

_SIG_MAGIC = b"~Module signature appended~\n"


def modinfo_deps(data: bytes) -> list[str]:
    """The ``depends=`` and ``softdep=`` module names recorded in a module's ``.modinfo``."""
    names: list[str] = []
    for key in (b"\0depends=", b"\0softdep="):
        i = data.find(key)
        if i < 0:
            continue
        end = data.index(b"\0", i + 1)
        value = data[i + len(key) : end].decode()
        sep = "," if key == b"\0depends=" else None
        names += [n for n in value.split(sep) if n and n not in ("pre:", "post:")]
    return names


def strip_signature(data: bytes) -> bytes:
    """Drop an appended module signature.

    Checking it is RSA work that costs ~0.2 s of boot under TCG; the kernel
    loads unsigned modules with a taint note (``sig_enforce`` is off).
    """
    if not data.endswith(_SIG_MAGIC):
        return data
    sig_len = int.from_bytes(data[-len(_SIG_MAGIC) - 4 : -len(_SIG_MAGIC)], "big")
    return data[: -(len(_SIG_MAGIC) + 12 + sig_len)]


def module_closure(modroot: Path, wanted: Iterable[str]) -> dict[str, Path]:
    """Module name -> .ko path for ``wanted`` and everything they depend on (built-ins are skipped)."""
    by_name = {p.name[:-3].replace("-", "_"): p for p in modroot.glob("kernel/**/*.ko")}
    found: dict[str, Path] = {}
    todo = [w.replace("-", "_") for w in wanted]
    while todo:
        name = todo.pop().replace("-", "_")
        if name in found or name not in by_name:
            continue
        found[name] = by_name[name]
        todo += modinfo_deps(by_name[name].read_bytes())
    return found


class Cpio:
    """A minimal newc (``070701``) archive writer: what the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1000

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        nameb = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0)
        header = b"070701" + "".join(f"{v:08X}" for v in fields).encode()
        self._chunks += [header, nameb, b"\0" * ((-(110 + len(nameb))) % 4), data, b"\0" * ((-len(data)) % 4)]

    def write(self, path: Path) -> None:
        self.add("TRAILER!!!", 0)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for c in self._chunks:
                f.write(c)
        os.replace(tmp, path)


def build(kroot: Path, kver: str, out: Path) -> list[str]:
    """Write the initramfs for the kernel unpacked at ``kroot``; return the module names it holds."""
    modroot = kroot / "lib" / "modules" / kver
    mods = module_closure(modroot, BOOT_MODULES + EXTRA_MODULES)
    files: dict[str, tuple[int, bytes]] = {}
    for path in mods.values():
        files[f"lib/modules/{kver}/{path.relative_to(modroot)}"] = (0o100644, strip_signature(path.read_bytes()))
    for meta in ("modules.builtin", "modules.order", "modules.builtin.modinfo"):
        if (modroot / meta).exists():
            files[f"lib/modules/{kver}/{meta}"] = (0o100644, (modroot / meta).read_bytes())
    # modules.dep and friends: busybox depmod over a scratch copy of exactly these files
    with tempfile.TemporaryDirectory() as td:
        for rel, (_, data) in files.items():
            (Path(td) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(td) / rel).write_bytes(data)
        subprocess.run([busybox(), "depmod", "-b", td, kver], check=True)
        for f in (Path(td) / "lib" / "modules" / kver).glob("modules.*"):
            files.setdefault(f"lib/modules/{kver}/{f.name}", (0o100644, f.read_bytes()))
    files["bin/busybox"] = (0o100755, Path(busybox()).read_bytes())
    init = (GUEST_DIR / "init").read_text().replace("@BOOT_MODULES@", " ".join(BOOT_MODULES))
    files["init"] = (0o100755, init.encode())
    files["stage2"] = (0o100755, (GUEST_DIR / "stage2").read_bytes())

    dirs = {"dev", "proc", "sys", "bin", "lib", "host", "rw", "newroot"}
    for rel in files:
        d = os.path.dirname(rel)
        while d:
            dirs.add(d)
            d = os.path.dirname(d)
    cpio = Cpio()
    for d in sorted(dirs):
        cpio.add(d, 0o040755)
    cpio.add("dev/console", 0o020600, rdev=(5, 1))
    cpio.add("dev/null", 0o020666, rdev=(1, 3))
    for rel in sorted(files):
        mode, data = files[rel]
        cpio.add(rel, mode, data)
    cpio.write(out)
    return sorted(mods)


def busybox() -> str:
    """The static busybox (it runs in the guest before the host's root is mounted)."""
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(cand):
            return cand
    found = shutil.which("busybox")
    if not found:
        raise FileNotFoundError("busybox not found (Debian package busybox-static)")
    return found
