"""The running system around md: naming a container, checking it, loading its metadata.

These are the start-up steps of mdmon (mdmon.md §1.1, §1.2 step 2 and 7), done
before anything is served, so they may block and may fail with a clear
message: nothing depends on us yet.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import formats
from formats.base import ContainerMetadata
from formats.blockio import FileDisk
from formats.errors import DiskIOError, MetadataError

from .kernel.mdstat import parse_mdstat


class HostError(Exception):
    """A container cannot be served (bad name, not a container, unreadable metadata)."""

    def __init__(self, message: str, *, status: int = 3) -> None:
        super().__init__(message)
        #: mdmon's exit status for the same failure (1 bad name, 3 everything else).
        self.status = status


@dataclass(frozen=True)
class ContainerInfo:
    name: str  # kernel name, md127
    format: str  # imsm, ddf
    members: tuple[str, ...]  # kernel names of its disks, sda ...


def resolve(spec: str, *, sysfs: str = "/sys/block") -> str:
    """The kernel name (``md127``) of a container given as a path or a name.

    ``initrd/`` is stripped first: systemd unescapes the instance name
    ``initrd-md127`` to ``initrd/md127`` (mdmon does the same).
    """
    spec = spec.removeprefix("initrd/")
    if "/" not in spec:
        if os.path.isdir(os.path.join(sysfs, spec, "md")):
            return spec
        spec = os.path.join("/dev", spec)
    try:
        st = os.stat(spec)
    except OSError as e:
        raise HostError(f"{spec}: {e.strerror}", status=1) from e
    if not stat.S_ISBLK(st.st_mode):
        raise HostError(f"{spec}: not a block device", status=1)
    dev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        name = os.path.basename(os.readlink(f"/sys/dev/block/{dev}"))
    except OSError as e:
        raise HostError(f"{spec}: no sysfs entry for block device {dev}", status=1) from e
    if not os.path.isdir(os.path.join(sysfs, name, "md")):
        raise HostError(f"{spec}: {name} is not an md device", status=1)
    return name


def inspect(name: str, *, sysfs: str = "/sys/block") -> ContainerInfo:
    """Check that ``name`` is a container of an external format we serve, and list its disks."""
    md = Path(sysfs, name, "md")
    try:
        version = (md / "metadata_version").read_text().strip()
        level = (md / "level").read_text().strip()
    except OSError as e:
        raise HostError(f"{name}: cannot read its md attributes: {e.strerror}") from e
    if not version.startswith("external:"):
        raise HostError(f"{name}: metadata {version!r} is not external: not a container")
    fmt = version.removeprefix("external:")
    if fmt[:1] in ("/", "-") or level:
        raise HostError(f"{name}: a member array ({version}), not a container")
    if fmt not in ("imsm", "ddf"):
        raise HostError(f"{name}: unsupported metadata format {fmt!r}")
    members = tuple(sorted(e.name[4:] for e in md.iterdir() if e.name.startswith("dev-")))
    if not members:
        raise HostError(f"{name}: the container has no disks")
    return ContainerInfo(name, fmt, members)


def containers(mdstat: str) -> list[str]:
    """Every container listed in ``/proc/mdstat`` (``--all``): external metadata, not a subarray."""
    return [e.name for e in parse_mdstat(mdstat) if e.container_format is not None]


def loader(info: ContainerInfo, *, dev_dir: str = "/dev") -> Callable[[], ContainerMetadata]:
    """A function that reads and merges the metadata of every disk of the container.

    Disks are opened read-write (block devices also with ``O_DIRECT``) and kept
    open for the life of the service, so no write on the monitor's path ever has
    to open a file.
    """

    def load() -> ContainerMetadata:
        handler = formats.handler(info.format)
        opened: list[FileDisk] = []
        try:
            copies = []
            for dev in info.members:
                path = os.path.join(dev_dir, dev)
                disk = FileDisk(path, writable=True, name=path)
                opened.append(disk)
                if not handler.probe(disk):
                    raise HostError(f"{info.name}: {path} carries no {info.format} metadata")
                copies.append(handler.load(disk))
            return handler.assemble(copies)
        except (DiskIOError, MetadataError, HostError) as e:
            # A failed load leaves nothing open: the supervisor may retry it many times.
            for disk in opened:
                disk.close()
            if isinstance(e, HostError):
                raise
            raise HostError(f"{info.name}: {e}") from e

    return load


__all__ = ["ContainerInfo", "HostError", "containers", "inspect", "loader", "resolve"]
