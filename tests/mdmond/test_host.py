"""Naming, checking and loading a container: fake sysfs trees, real /proc/mdstat texts, golden images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import formats
from formats.base import DiskMetadata
from formats.blockio import Disk
from formats.errors import DiskIOError
from formats.model import VolumeState
from mdmond import host
from tests.golden import disk_count, image_path

TRANSCRIPTS = Path(__file__).parent.parent / "data" / "transcripts"


def md_dir(sysfs: Path, name: str, *, version: str | None, level: str | None = "", devs: tuple[str, ...] = ()) -> Path:
    md = sysfs / name / "md"
    md.mkdir(parents=True)
    if version is not None:
        (md / "metadata_version").write_text(version + "\n")
    if level is not None:
        (md / "level").write_text(level + "\n")
    for d in devs:
        (md / f"dev-{d}").mkdir()
    (md / "array_state").write_text("inactive\n")  # not a member: ignored
    return md


# resolve


def test_a_kernel_name_with_an_md_directory_is_taken_as_is(tmp_path: Path) -> None:
    md_dir(tmp_path, "md127", version="external:imsm")
    assert host.resolve("md127", sysfs=str(tmp_path)) == "md127"


def test_systemds_initrd_instance_name_is_stripped(tmp_path: Path) -> None:
    md_dir(tmp_path, "md127", version="external:imsm")
    assert host.resolve("initrd/md127", sysfs=str(tmp_path)) == "md127"


def test_a_name_that_is_no_md_device_is_a_bad_name(tmp_path: Path) -> None:
    with pytest.raises(host.HostError) as e:
        host.resolve("md98765", sysfs=str(tmp_path))  # no sysfs entry, no /dev/md98765
    assert e.value.status == 1 and "md98765" in str(e.value)


def test_a_path_that_does_not_exist_or_is_no_block_device_is_a_bad_name(tmp_path: Path) -> None:
    with pytest.raises(host.HostError) as e:
        host.resolve(str(tmp_path / "nothing"), sysfs=str(tmp_path))
    assert e.value.status == 1 and "No such file" in str(e.value)
    regular = tmp_path / "file"
    regular.write_text("")
    with pytest.raises(host.HostError) as e:
        host.resolve(str(regular), sysfs=str(tmp_path))
    assert e.value.status == 1 and "not a block device" in str(e.value)


def block_device() -> str:
    for name in sorted(os.listdir("/sys/block")) if os.path.isdir("/sys/block") else []:
        path = f"/dev/{name}"
        if os.path.exists(path) and os.path.exists(f"/sys/dev/block/{os.major(os.stat(path).st_rdev)}:0"):
            st = os.stat(path)
            if os.path.islink(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"):
                return path
    pytest.skip("no block device with a sysfs entry to resolve")


def test_a_block_device_path_is_named_through_its_device_number(tmp_path: Path) -> None:
    path = block_device()
    name = os.path.basename(os.path.realpath(path))
    with pytest.raises(host.HostError) as e:
        host.resolve(path, sysfs=str(tmp_path))  # a block device, but not md
    assert e.value.status == 1 and "is not an md device" in str(e.value)
    md_dir(tmp_path, name, version="external:imsm")
    assert host.resolve(path, sysfs=str(tmp_path)) == name


# inspect


def test_a_container_is_inspected_with_its_disks(tmp_path: Path) -> None:
    md_dir(tmp_path, "md127", version="external:imsm", devs=("sdb", "sda", "sdc"))
    info = host.inspect("md127", sysfs=str(tmp_path))
    assert info == host.ContainerInfo("md127", "imsm", ("sda", "sdb", "sdc"))
    md_dir(tmp_path, "md130", version="external:ddf", devs=("nvme0n1",))
    assert host.inspect("md130", sysfs=str(tmp_path)) == host.ContainerInfo("md130", "ddf", ("nvme0n1",))


@pytest.mark.parametrize(
    ("version", "level", "devs", "words"),
    [
        ("external:/md127/0", "raid1", ("sda",), "member array"),
        ("external:-md127/0", "raid1", ("sda",), "member array"),  # blocked by mdadm, still a member
        ("external:imsm", "raid5", ("sda",), "member array"),  # a personality: not a container
        ("1.2", "raid1", ("sda",), "not external"),
        ("none", "", ("sda",), "not external"),
        ("external:foo", "", ("sda",), "unsupported metadata format 'foo'"),
        ("external:imsm", "", (), "no disks"),
        (None, "", ("sda",), "cannot read"),
        ("external:imsm", None, ("sda",), "cannot read"),
    ],
)
def test_what_is_not_a_servable_container_is_refused_with_status_3(
    tmp_path: Path, version: str | None, level: str | None, devs: tuple[str, ...], words: str
) -> None:
    md_dir(tmp_path, "md126", version=version, level=level, devs=devs)
    with pytest.raises(host.HostError) as e:
        host.inspect("md126", sysfs=str(tmp_path))
    assert e.value.status == 3 and words in str(e.value) and "md126" in str(e.value)


# containers


def transcript_mdstats() -> list[str]:
    texts: list[str] = []
    for f in sorted(TRANSCRIPTS.glob("*.json")):
        for step in json.loads(f.read_text())["steps"]:
            if step.get("mdstat") and step["mdstat"] not in texts:
                texts.append(step["mdstat"])
    return texts


def test_containers_in_every_recorded_mdstat() -> None:
    texts = transcript_mdstats()
    assert len(texts) > 10
    with_container = 0
    for text in texts:
        expected = ["md127"] if "md127 : " in text else []
        assert host.containers(text) == expected, text
        with_container += bool(expected)
    assert 0 < with_container < len(texts)  # also the steps after the container was stopped


def test_containers_skips_subarrays_and_native_arrays() -> None:
    ddf = next(t for t in transcript_mdstats() if "external:ddf" in t and "md125 :" in t)
    imsm = next(t for t in transcript_mdstats() if "external:imsm" in t)
    # Both containers in one mdstat: the DDF one renamed md130, plus a native array and a blocked subarray.
    body = imsm.split("\n", 1)[1].replace("unused devices: <none>\n", "")
    ddf_body = ddf.split("\n", 1)[1].replace("md127", "md130").replace("md126 :", "md124 :").replace("md125", "md123")
    extra = (
        "md10 : active raid1 sde[1] sdf[0]\n      1048512 blocks super 1.2 [2/2] [UU]\n      \n"
        "md122 : active raid1 sdg[1] sdh[0]\n      8192 blocks super external:-md127/2 [2/2] [UU]\n      \n"
    )
    text = "Personalities : [raid1]\n" + extra + body + ddf_body
    assert host.containers(text) == ["md127", "md130"]
    assert host.containers("Personalities : \nunused devices: <none>\n") == []
    assert host.containers("") == []


# loader


def image_dir(tmp_path: Path, scenario: str) -> tuple[Path, tuple[str, ...]]:
    """Writable sparse copies of a golden container's disks, named as the guest saw them."""
    names = []
    for n in range(disk_count(scenario)):
        name = f"sd{chr(ord('a') + n)}"
        with open(image_path(scenario, n), "rb") as src, open(tmp_path / name, "wb") as dst:
            size = os.fstat(src.fileno()).st_size
            pos = 0
            while True:
                try:
                    pos = os.lseek(src.fileno(), pos, os.SEEK_DATA)
                except OSError:  # ENXIO: no data after pos
                    break
                end = os.lseek(src.fileno(), pos, os.SEEK_HOLE)
                src.seek(pos)
                dst.seek(pos)
                dst.write(src.read(end - pos))
                pos = end
            dst.truncate(size)
        names.append(name)
    return tmp_path, tuple(names)


@pytest.mark.parametrize("scenario", ["ddf-raid1", "imsm-raid5"])
def test_loader_reads_and_merges_every_disk(tmp_path: Path, scenario: str) -> None:
    dev_dir, names = image_dir(tmp_path, scenario)
    fmt = scenario.split("-")[0]
    load = host.loader(host.ContainerInfo("md127", fmt, names), dev_dir=str(dev_dir))
    before = os.listdir(f"/proc/{os.getpid()}/fd")
    metadata = load()
    model = metadata.model()
    assert model.format == fmt
    assert len(model.volumes) == 1 and model.volume(0).state is VolumeState.NORMAL
    if fmt == "ddf":  # (IMSM finds a disk's own entry by serial, which an image file has not)
        assert sorted(os.path.basename(str(d.name)) for d in metadata.disks().values()) == sorted(names)
    # The disks stay open (writes never have to open a file), writable.
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) >= len(before) + len(names)
    for d in metadata.disks().values():
        close = getattr(d, "close", None)
        if close:
            close()


def test_loader_names_a_missing_disk(tmp_path: Path) -> None:
    dev_dir, names = image_dir(tmp_path, "ddf-raid1")
    load = host.loader(host.ContainerInfo("md127", "ddf", (*names, "sdz")), dev_dir=str(dev_dir))
    with pytest.raises(host.HostError) as e:
        load()
    assert e.value.status == 3 and "md127" in str(e.value) and "sdz" in str(e.value)


def test_loader_names_a_disk_without_the_format_and_closes_what_it_opened(tmp_path: Path) -> None:
    dev_dir, names = image_dir(tmp_path, "ddf-raid1")
    (tmp_path / "sdc").write_bytes(bytes(1 << 20))
    fds = set(os.listdir(f"/proc/{os.getpid()}/fd"))
    load = host.loader(host.ContainerInfo("md127", "ddf", (*names, "sdc")), dev_dir=str(dev_dir))
    with pytest.raises(host.HostError) as e:
        load()
    assert "sdc" in str(e.value) and "no ddf metadata" in str(e.value)
    assert set(os.listdir(f"/proc/{os.getpid()}/fd")) == fds  # no disk left open by a failed load
    # The other format's disks: none carries it.
    load = host.loader(host.ContainerInfo("md127", "imsm", names), dev_dir=str(dev_dir))
    with pytest.raises(host.HostError) as e:
        load()
    assert "no imsm metadata" in str(e.value)


def test_loader_reports_a_read_error_as_a_host_error_and_closes_the_disks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev_dir, names = image_dir(tmp_path, "ddf-raid1")
    real = formats.handler("ddf")

    class FailingRead:
        def probe(self, disk: Disk) -> bool:
            return real.probe(disk)

        def load(self, disk: Disk) -> DiskMetadata:
            if disk.name.endswith("sdb"):
                raise DiskIOError("read failed: Input/output error", disk=disk.name, offset=4096)
            return real.load(disk)

    monkeypatch.setattr(formats, "handler", lambda name: FailingRead())
    fds = set(os.listdir(f"/proc/{os.getpid()}/fd"))
    load = host.loader(host.ContainerInfo("md127", "ddf", names), dev_dir=str(dev_dir))
    with pytest.raises(host.HostError) as e:
        load()
    assert e.value.status == 3 and "md127" in str(e.value) and "Input/output error" in str(e.value)
    assert set(os.listdir(f"/proc/{os.getpid()}/fd")) == fds
