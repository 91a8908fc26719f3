"""Everything the guest needs, installed and prepared idempotently.

Debian packages (qemu, busybox-static, mdadm, zstd) are installed with apt; the
kernel is *not* installed: its ``.deb`` is downloaded into the cache folder and
unpacked there, so the host's ``/boot`` and ``/lib/modules`` stay untouched.
The cache holds ``vmlinux`` (the uncompressed ELF, booted through its PVH entry
point: no real-mode setup and no in-guest decompression, ~3 s less per boot
under TCG), ``initramfs.cpio`` and ``stamp.json``.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import initramfs

APT_PACKAGES = ("qemu-system-x86", "busybox-static", "mdadm", "zstd", "xz-utils")

#: Changes whenever the initramfs content or the guest scripts change, so that
#: a stale cache is rebuilt.
_BUILD_INPUTS = (initramfs.GUEST_DIR / "init", initramfs.GUEST_DIR / "stage2", Path(initramfs.__file__))


class Unavailable(RuntimeError):
    """The test bed cannot run here (missing packages, no permission, ...); the message says why."""


@dataclass(frozen=True)
class Kernel:
    """A prepared guest kernel: what ``testbed.vm`` boots."""

    version: str
    vmlinux: Path
    initramfs: Path
    package: str


def cache_dir() -> Path:
    return Path(os.environ.get("MDMOND_TESTBED_CACHE", "/var/cache/mdmond-testbed"))


def _log(msg: str) -> None:
    print(f"testbed: {msg}", file=sys.stderr, flush=True)


def _build_id() -> str:
    h = hashlib.sha256()
    for p in _BUILD_INPUTS:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def dpkg_installed(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return r.returncode == 0 and "install ok installed" in r.stdout


def missing_packages() -> list[str]:
    if not shutil.which("dpkg-query"):
        return list(APT_PACKAGES)
    return [p for p in APT_PACKAGES if not dpkg_installed(p)]


def install_packages() -> None:
    """``apt-get install`` whatever of APT_PACKAGES is missing (needs root)."""
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise Unavailable(f"Debian packages missing and not root to install them: {' '.join(missing)}")
    _log(f"apt-get install {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)


def kernel_package() -> str:
    """The versioned ``linux-image-X-amd64`` that ``linux-image-amd64`` currently depends on."""
    if os.environ.get("MDMOND_TESTBED_KERNEL_PKG"):
        return os.environ["MDMOND_TESTBED_KERNEL_PKG"]
    for attempt in (0, 1):
        out = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", "linux-image-amd64"], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if line.startswith("Depends:"):
                for dep in line.split(":", 1)[1].split(","):
                    name = dep.strip().split()[0]
                    if name.startswith("linux-image-"):
                        return name
        if attempt == 0:
            subprocess.run(["apt-get", "update", "-q"], check=False)
    raise Unavailable("cannot find the kernel package linux-image-amd64 depends on (apt-cache show)")


def extract_vmlinux(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside Debian's bzImage (its payload is XZ-compressed)."""
    start = vmlinuz.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise Unavailable("vmlinuz has no XZ payload; cannot extract vmlinux")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(vmlinuz[start:])
    if elf[:4] != b"\x7fELF":
        raise Unavailable("the payload of vmlinuz is not an ELF kernel")
    return elf


def _cached(cache: Path) -> Kernel | None:
    stamp = cache / "stamp.json"
    try:
        st = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    k = Kernel(st["kver"], cache / "vmlinux", cache / "initramfs.cpio", st["package"])
    if st.get("build") != _build_id() or not k.vmlinux.exists() or not k.initramfs.exists():
        return None
    return k


def prepare(*, install: bool = True, check_package: bool = False) -> Kernel:
    """Return the prepared kernel, installing and building what is missing.

    The quick path (cache complete and built by this code) runs no command at
    all; ``check_package`` also asks apt whether a newer kernel package exists.
    """
    cache = cache_dir()
    if install:
        install_packages()
    elif missing_packages():
        raise Unavailable(f"missing Debian packages: {' '.join(missing_packages())} (run scripts/setup-vm)")
    if not shutil.which("qemu-system-x86_64"):
        raise Unavailable("qemu-system-x86_64 not found")
    k = _cached(cache)
    if k is not None and (not check_package or k.package == kernel_package()):
        return k
    if not install:
        raise Unavailable(f"no prepared kernel in {cache} (run scripts/setup-vm or python -m testbed setup)")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Unavailable(f"cannot create the cache folder {cache}: {e}") from e
    pkg = kernel_package()
    _log(f"preparing kernel {pkg} in {cache}")
    debs = sorted(cache.glob(f"{pkg}_*.deb"))
    if not debs:
        for old in cache.glob("linux-image-*.deb"):
            old.unlink()
        subprocess.run(["apt-get", "download", "-o", "APT::Sandbox::User=root", pkg], cwd=cache, check=True)
        debs = sorted(cache.glob(f"{pkg}_*.deb"))
    with tempfile.TemporaryDirectory(dir=cache) as work:
        kroot = Path(work) / "kroot"
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(kroot)], check=True)
        kver = sorted(p.name for p in (kroot / "lib" / "modules").iterdir())[-1]
        vmlinux = extract_vmlinux((kroot / "boot" / f"vmlinuz-{kver}").read_bytes())
        (cache / "vmlinux.tmp").write_bytes(vmlinux)
        os.replace(cache / "vmlinux.tmp", cache / "vmlinux")
        shutil.copy(kroot / "boot" / f"config-{kver}", cache / "config")
        mods = initramfs.build(kroot, kver, cache / "initramfs.cpio")
    stamp = {"package": pkg, "deb": debs[-1].name, "kver": kver, "build": _build_id(), "modules": mods}
    (cache / "stamp.json").write_text(json.dumps(stamp, indent=1) + "\n")
    _log(f"kernel {kver} ready ({len(mods)} modules in the initramfs)")
    k = _cached(cache)
    assert k is not None
    return k
