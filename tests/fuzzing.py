"""Structure-aware fuzzing of both formats: mutate the golden disks' metadata, run the whole pipeline.

One *case* takes a golden scenario, mutates one structure of one of its disks
(bit flips, a field set to a boundary value, random bytes, a structure cut
short, the disk itself cut short), with or without the checksum/CRC fixed up
afterwards, and drives the result through what the daemon does with it:
load every disk, assemble, validate, model, examine, re-encode each copy and
compare with the disk, then apply a few changes (dirty/clean, fail a member)
and encode and reload what would be written.  The outcome is one of
``CLASSES``; anything but a documented error from the format layer is a bug.

The CI slice (``tests/formats/test_fuzz.py``) runs a seeded few hundred cases;
``scripts/fuzz --cases N`` runs as many as asked and prints the counts.
Nothing here is used by the daemon: ``formats/`` stays free of test code.
"""

from __future__ import annotations

import random
import signal
import struct
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from construct import Array, FormatField, Renamed

import formats
from formats.base import ContainerMetadata, first_difference
from formats.blockio import Disk, OverlayDisk, check_span
from formats.changes import Change, FailDisk, RecordBadBlock, SetCheckpoint, SetDirty
from formats.ddf import structs as DS
from formats.ddf.codec import crc as ddf_crc
from formats.ddf.load import effective_mppe
from formats.errors import ChangeRejected, DiskIOError, MetadataError, NoMetadata
from formats.imsm import structs as IS
from formats.imsm.codec import checksum as imsm_checksum
from formats.model import Container
from tests.golden import disk_count, open_disk, scenarios

#: Outcome classes, in the order they are reported.
CLASSES = (
    "refused",  # MetadataError naming format, structure, field, disk and offset
    "refused-vague",  # MetadataError missing one of those: a defect of the message, not of safety
    "no-metadata",  # NoMetadata: the signature/magic is gone
    "accepted-roundtrips",  # loaded, and every copy re-encodes to the very bytes read
    "accepted-rewritten",  # loaded, re-encoded differently (a repaired secondary, a CRC fixed up, ...)
    "bug-exception",  # anything but the documented errors, anywhere in the pipeline
    "bug-unreadable-write",  # a change was accepted, but what it writes does not load back
    "bug-impossible-accepted",  # validation passed a state the model oracle (``impossible``) says cannot be
    "bug-hang",  # a case ran past its time bound
    "bug-huge-allocation",  # a case allocated more than the bound (MemoryError, or the traced peak)
)
BUGS = tuple(c for c in CLASSES if c.startswith("bug-"))

HUGE = 64 << 20  # bytes a case may allocate (the largest legitimate read is the 1.1 MiB IMSM area)


class Window:
    """The first ``size`` bytes of another disk (a truncated copy), with its own sector size."""

    def __init__(self, base: Disk, size: int, sector_size: int | None = None) -> None:
        self.base = base
        self._size = size
        self._ss = sector_size or base.sector_size
        self.serial: str | None = base.serial

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def sector_size(self) -> int:
        return self._ss

    def read(self, offset: int, length: int) -> bytes:
        check_span(self, offset, length)
        return self.base.read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        check_span(self, offset, len(data))
        self.base.write(offset, data)

    def flush(self) -> None:
        pass


def poke(disk: OverlayDisk, offset: int, data: bytes) -> None:
    """Change bytes of an overlay at any offset (read-modify-write of the sectors involved)."""
    if not data:
        return
    ss = disk.sector_size
    first, last = offset // ss, (offset + len(data) - 1) // ss
    buf = bytearray(disk.read(first * ss, (last - first + 1) * ss))
    start = offset - first * ss
    buf[start : start + len(data)] = data
    for i in range(last - first + 1):
        disk.sectors[first + i] = bytes(buf[i * ss : (i + 1) * ss])


# -- structures and their fields ------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    name: str
    offset: int  # within the structure
    size: int
    fmt: str | None  # struct format of an integer field ("<I", ">Q"), None for raw bytes
    siblings: tuple[int, ...] = ()  # offsets of the other elements of the same array


def fields_of(st: Any, **ctx: int) -> list[FieldSpec]:
    """Every leaf field of a construct ``Struct`` with its offset; arrays expanded element by element."""
    out: list[FieldSpec] = []
    off = 0
    for sc in st.subcons:
        inner = sc.subcon if isinstance(sc, Renamed) else sc
        name = sc.name
        if isinstance(inner, Array):
            count = inner.count(ctx) if callable(inner.count) else int(inner.count)
            esize = inner.subcon.sizeof()
            fmt = inner.subcon.fmtstr if isinstance(inner.subcon, FormatField) else None
            offs = tuple(off + k * esize for k in range(count))
            out += [FieldSpec(f"{name}[{k}]", o, esize, fmt, offs) for k, o in enumerate(offs)]
            off += count * esize
            continue
        size = sc.sizeof(**ctx)
        out.append(FieldSpec(name, off, size, inner.fmtstr if isinstance(inner, FormatField) else None))
        off += size
    return out


@dataclass(frozen=True)
class Target:
    """One structure of one golden disk, where to find it and how to seal it after a change."""

    scenario: str
    disk: int
    structure: str  # e.g. "ddf.vd_config[0]", "imsm.dev[1].map[0]"
    offset: int  # byte offset on the disk (IMSM: offset in the logical MPB)
    length: int
    fields: tuple[FieldSpec, ...]
    seal: tuple[int, int] | None  # DDF: (offset, length) of the CRC-covered region; IMSM: always the MPB
    logical: bool = False  # IMSM: offsets are in the logical MPB buffer, not on the disk
    also: tuple[int, ...] = ()  # DDF header: the other two copies, for mutations applied to all three


@dataclass
class Seed:
    """A golden scenario, opened once, and the structures of each disk."""

    format: str
    scenario: str
    disks: list[Disk]  # read-only bases: golden images, or overlays of them for a derived seed
    targets: list[Target]
    mpb_map: dict[int, Callable[[int], int]] = field(default_factory=dict)  # IMSM: disk -> MPB to disk offset
    disk_sectors: dict[int, int] = field(default_factory=dict)


def ddf_targets(scenario: str, n: int, disk: Disk) -> list[Target]:
    copy = formats.handler("ddf").load(disk)
    raw = copy.raw
    h = raw.header.fields
    pri = raw.header.lba * DS.SECTOR
    headers = [pri] + [c.lba * DS.SECTOR for c in (raw.primary, raw.secondary) if c is not None and c.lba * 512 != pri]
    anchor = disk.size_bytes - DS.SECTOR
    hf = tuple(fields_of(DS.Header))
    out = [Target(scenario, n, "ddf.anchor", anchor, 512, hf, (anchor, 512), also=tuple(headers))]
    for off in headers:
        out.append(
            Target(
                scenario, n, "ddf.header", off, 512, hf, (off, 512), also=(anchor, *[o for o in headers if o != off])
            )
        )

    def sec(name: str) -> tuple[int, int]:
        return pri + int(getattr(h, f"{name}_section_offset")) * 512, int(getattr(h, f"{name}_section_length")) * 512

    c_off, _ = sec("controller")
    out.append(Target(scenario, n, "ddf.controller", c_off, 512, tuple(fields_of(DS.Controller)), (c_off, 512)))
    d_off, _ = sec("data")
    out.append(Target(scenario, n, "ddf.disk_data", d_off, 512, tuple(fields_of(DS.DiskData)), (d_off, 512)))
    for name, head, entry, table in (
        ("phys", DS.PhysHeader, DS.PhysEntry, raw.sections.phys),
        ("virt", DS.VirtHeader, DS.VirtEntry, raw.sections.virt),
    ):
        off, length = sec(name)
        out.append(Target(scenario, n, f"ddf.{name}", off, 64, tuple(fields_of(head)), (off, length)))
        used = [i for i, e in enumerate(table.entries) if e is not None]
        for i in used + ([len(table.entries) - 1] if table.entries else []):  # the used ones and one unused
            eo = off + 64 + 64 * i
            out.append(Target(scenario, n, f"ddf.{name}[{i}]", eo, 64, tuple(fields_of(entry)), (off, length)))
    c_off, _ = sec("config")
    crl = int(h.config_record_len) * 512
    mppe = effective_mppe(h)
    vfields = tuple(fields_of(DS.vd_config(mppe)))
    sfields = tuple(fields_of(DS.SpareAssign)) + tuple(
        FieldSpec(f"entry[{k}].{f.name}", 32 + 32 * k + f.offset, f.size, f.fmt)
        for k in range(2)
        for f in fields_of(DS.SpareEntry)
    )
    for i, slot in enumerate(raw.sections.slots):
        ro = c_off + i * crl
        if slot.config is not None:
            out.append(Target(scenario, n, f"ddf.vd_config[{i}]", ro, crl, vfields, (ro, crl)))
        elif i == len(raw.sections.slots) - 1:
            # mdadm's spare assignment slot: fuzzed as a synthesised record (see ``spare_record``)
            out.append(Target(scenario, n, f"ddf.spare_assign[{i}]", ro, crl, sfields, (ro, crl)))
    return out


def spare_record(crl: int, vd_guid: bytes) -> bytes:
    """A well-formed spare assignment record naming one VD, for the spare-record mutators to start from."""
    head = DS.SpareAssign.build(
        {
            "magic": DS.SPARE_ASSIGN_MAGIC,
            "crc": 0,
            "timestamp": 0,
            "reserved": b"\xff" * 7,
            "type": 1,
            "populated": 1,
            "max": (crl - 32) // 32,
            "pad": b"\xff" * 8,
        }
    )
    entry = DS.SpareEntry.build({"guid": vd_guid, "secondary_element": 0, "pad": b"\xff" * 6})
    rec = bytearray((head + entry).ljust(crl, b"\xff"))
    struct.pack_into(">I", rec, 4, ddf_crc(rec))
    return bytes(rec)


def imsm_targets(scenario: str, n: int, disk: Disk) -> tuple[list[Target], Callable[[int], int]]:
    copy = formats.handler("imsm").load(disk)
    mpb = copy.mpb
    out = [Target(scenario, n, "imsm.mpb", 0, IS.MPB_HEADER_SIZE, tuple(fields_of(IS.MpbHeader)), None, True)]
    off = IS.MPB_HEADER_SIZE
    for i in range(mpb.num_disks):
        out.append(Target(scenario, n, f"imsm.disk[{i}]", off, 48, tuple(fields_of(IS.DiskEntry)), None, True))
        off += 48
    for i, dev in enumerate(mpb.devs):
        out.append(Target(scenario, n, f"imsm.dev[{i}]", off, 80, tuple(fields_of(IS.DevHeader)), None, True))
        off += 80
        out.append(Target(scenario, n, f"imsm.dev[{i}].vol", off, 32, tuple(fields_of(IS.Vol)), None, True))
        off += 32
        for j, m in enumerate(dev.maps):
            mf = tuple(fields_of(IS.Map, num_members=m.num_members))
            out.append(Target(scenario, n, f"imsm.dev[{i}].map[{j}]", off, m.size, mf, None, True))
            off += m.size
    if mpb.bbm is not None:
        bf = tuple(fields_of(IS.BbmLogHeader)) + tuple(
            FieldSpec(f"entry[{k}].{f.name}", 8 + 8 * k + f.offset, f.size, f.fmt)
            for k in range(len(mpb.bbm.entries))
            for f in fields_of(IS.BbmEntry)
        )
        out.append(Target(scenario, n, "imsm.bbm_log", off, mpb.bbm.size, bf, None, True))
    migr = copy.raw.migr_offset
    out.append(Target(scenario, n, "imsm.migr_record", migr, 128, tuple(fields_of(IS.MigrRecord)), None))
    return out, copy.raw.disk_offset


def derived(scenario: str, changes: list[Change]) -> list[Disk]:
    """A golden scenario after the change engine wrote ``changes``: structures no golden disk has (a BBM log)."""
    h = formats.handler(scenario.split("-")[0])
    disks = [OverlayDisk(open_disk(scenario, k)) for k in range(disk_count(scenario))]
    c = h.assemble([h.load(d) for d in disks]).apply(changes)
    placed = c.disks()
    for ref, ws in c.encode().items():
        for w in ws:
            placed[ref].write(w.offset, w.data)
    return list(disks)


#: Seeds made by the change engine from a golden scenario, for the structures mdadm's goldens lack.
DERIVED: dict[str, tuple[str, list[Change]]] = {
    "imsm-raid5+bbm": (
        "imsm-raid5",
        [RecordBadBlock("MDVM00000000", 4096, 8), RecordBadBlock("MDVM00000001", 1 << 20, 256)],
    ),
}


def load_seeds(prefixes: tuple[str, ...] = ("imsm", "ddf")) -> list[Seed]:
    seeds: list[Seed] = []
    for prefix in prefixes:
        names = scenarios(prefix) + [name for name in DERIVED if name.startswith(prefix)]
        for scenario in names:
            if scenario in DERIVED:
                disks: list[Any] = derived(*DERIVED[scenario])
            else:
                disks = [open_disk(scenario, k) for k in range(disk_count(scenario))]
            seed = Seed(prefix, scenario, disks, [])
            for k, d in enumerate(disks):
                if prefix == "ddf":
                    seed.targets += ddf_targets(scenario, k, d)
                else:
                    t, to_disk = imsm_targets(scenario, k, d)
                    seed.targets += t
                    seed.mpb_map[k] = to_disk
                seed.disk_sectors[k] = d.size_bytes // 512
            seeds.append(seed)
    return seeds


# -- mutations ------------------------------------------------------------------------------

MUTATIONS = ("bitflip", "field", "bytes", "cut-structure", "cut-disk", "field-all-headers", "copy-entry")


@dataclass
class Case:
    seed: Seed
    target: Target
    mutation: str
    reseal: bool
    rng_seed: int
    everywhere: bool = False  # the same mutation on every disk's copy of the structure

    def label(self) -> str:
        t = self.target
        sealed = " resealed" if self.reseal else ""
        every = " on every disk" if self.everywhere else ""
        return f"{t.scenario}/disk{t.disk} {t.structure} {self.mutation}{sealed}{every} #{self.rng_seed}"


def boundary_values(f: FieldSpec, orig: int, disk_sectors: int, rng: random.Random) -> list[int]:
    bits = 8 * f.size
    top = (1 << bits) - 1
    vals = {
        0,
        1,
        2,
        3,
        top,
        top - 1,
        1 << (bits - 1),
        (1 << (bits - 1)) - 1,
        orig + 1,
        orig - 1,
        orig * 2,
        orig // 2,
        orig ^ (1 << rng.randrange(bits)),
        0xFF,
        0x100,
        disk_sectors,
        disk_sectors - 1,
        disk_sectors + 1,
        disk_sectors * 2,
        disk_sectors - 2048,
    }
    return sorted(v & top for v in vals)


def mutate(case: Case, disks: list[OverlayDisk]) -> list[Disk]:
    """Apply the case's mutation to its disk's overlay; the disks to load (one may be a Window).

    With ``everywhere``, the same mutation (same random choices) is made to the same structure
    of every disk of the scenario too: the copy assembly prefers is then a mutated one as well.
    """
    out = mutate_one(case, disks)
    if case.everywhere and case.mutation != "cut-disk":
        for t in case.seed.targets:
            if t.structure == case.target.structure and t.disk != case.target.disk:
                mutate_one(replace(case, target=t), disks)
    return out


def mutate_one(case: Case, disks: list[OverlayDisk]) -> list[Disk]:
    rng = random.Random(case.rng_seed)
    t = case.target
    d = disks[t.disk]
    seed = case.seed
    to_disk = seed.mpb_map.get(t.disk) if t.logical else None

    def put(rel: int, data: bytes, base: int | None = None) -> None:
        start = (t.offset if base is None else base) + rel
        if to_disk is None:
            poke(d, start, data)
        else:
            for k, b in enumerate(data):  # the MPB may straddle the anchor and the extension sectors
                poke(d, to_disk(start + k), bytes([b]))

    def get(rel: int, n: int, base: int | None = None) -> bytes:
        start = (t.offset if base is None else base) + rel
        if to_disk is None:
            return d.read(start, n)
        return bytes(d.read(to_disk(start + k), 1)[0] for k in range(n))

    if t.structure.startswith("ddf.spare_assign"):
        vd = [x for x in seed.targets if x.disk == t.disk and x.structure.startswith("ddf.virt[")]
        put(0, spare_record(t.length, get(0, 24, vd[0].offset) if vd else b"\xff" * 24))
    out: list[Disk] = list(disks)
    m = case.mutation
    if m == "bitflip":
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(t.length)
            put(pos, bytes([get(pos, 1)[0] ^ (1 << rng.randrange(8))]))
    elif m in ("field", "field-all-headers", "copy-entry"):
        f = rng.choice(t.fields)
        if m == "copy-entry" and f.siblings:
            put(f.offset, get(rng.choice(f.siblings), f.size))
        elif m == "copy-entry":
            # a whole table entry copied over a sibling entry: duplicate serials, refnums, GUIDs
            sib = [
                x
                for x in seed.targets
                if x.disk == t.disk
                and x.structure.split("[")[0] == t.structure.split("[")[0]
                and x.length == t.length
                and x.offset != t.offset
            ]
            if sib:
                src = rng.choice(sib)
                put(0, get(0, t.length, src.offset))
            else:
                put(f.offset, bytes(f.size))
        else:
            if f.fmt is not None:
                orig = struct.unpack(f.fmt, get(f.offset, f.size))[0]
                value = rng.choice(boundary_values(f, orig, seed.disk_sectors[t.disk], rng))
                data = struct.pack(f.fmt, value)
            else:
                data = rng.choice([bytes(f.size), b"\xff" * f.size, rng.randbytes(f.size), b" " * f.size])
            put(f.offset, data)
            if m == "field-all-headers":
                for other in t.also:
                    put(f.offset, data, other)
    elif m == "bytes":
        pos = rng.randrange(t.length)
        put(pos, rng.randbytes(min(rng.randint(1, 8), t.length - pos)))
    elif m == "cut-structure":
        pos = rng.randrange(t.length)
        put(pos, (b"\0" if rng.random() < 0.5 else b"\xff") * (t.length - pos))
    elif m == "cut-disk":
        size = d.size_bytes
        cut = rng.choice([512, 1024, 4096, 1 << 20, size // 2, size - (32 << 20), size - 512 * rng.randrange(1, 70000)])
        new = max(0, (size - cut) // 512 * 512)
        out[t.disk] = Window(d, new)
    if case.reseal:
        reseal(case, d)
    return out


def reseal(case: Case, d: OverlayDisk) -> None:
    t = case.target
    if t.logical:
        to_disk = case.seed.mpb_map[t.disk]
        head = d.read(to_disk(0), 512)
        size = struct.unpack_from("<I", head, 0x24)[0]
        if size % 4 or not IS.MPB_HEADER_SIZE <= size <= IS.MAX_MPB_SIZE:
            return
        buf = bytearray()
        try:
            for k in range(-(-size // 512)):
                buf += d.read(to_disk(k * 512), 512)
        except DiskIOError:  # the MPB claims more sectors than the disk holds: nothing to seal
            return
        poke(d, to_disk(0x20), struct.pack("<I", imsm_checksum(buf, size)))
        return
    if t.seal is None:
        return
    regions = [t.seal] + ([(o, 512) for o in t.also] if t.structure in ("ddf.anchor", "ddf.header") else [])
    for off, length in regions:
        data = bytearray(d.read(off, length))
        struct.pack_into(">I", data, 4, ddf_crc(data))
        poke(d, off, bytes(data))


# -- running a case -------------------------------------------------------------------------


class CaseTimeout(Exception):
    pass


@dataclass
class Outcome:
    cls: str
    detail: str = ""
    where: str = ""  # for bugs: exception type and innermost frame of this project, for de-duplication


def _named(e: MetadataError) -> bool:
    return all(x is not None for x in (e.format, e.structure, e.field, e.disk, e.offset))


def changes_for(c: ContainerMetadata) -> list[list[Change]]:
    model = c.model()
    out: list[list[Change]] = []
    for v in model.volumes:
        out.append([SetDirty(v.index, not v.dirty)])
        if v.migration is not None:
            out.append([SetCheckpoint(v.index, v.component_sectors // 2)])
    refs = [m.disk_ref for v in model.volumes for m in v.members if m.disk_ref is not None]
    if refs:
        out.append([FailDisk(refs[0])])
    return out


def pipeline(case: Case) -> str:
    """Load, assemble, validate, model, examine, round trip, change, encode, reload; the accepted class."""
    seed = case.seed
    overlays = [OverlayDisk(b) for b in seed.disks]
    disks = mutate(case, overlays)
    h = formats.handler(seed.format)
    copies = [h.load(d) for d in disks]  # MetadataError refuses the case
    c = h.assemble(copies)
    c.validate()
    impossible(c.model(), "accepted")
    identical = True
    for cp in copies:
        cp.examine()
        cp.regions()
        if first_difference(cp.disk, cp.encode()) is not None:
            identical = False
    c.encode()
    for changes in changes_for(c):
        try:
            new = c.apply(changes)
            writes = new.encode()
        except (ChangeRejected, MetadataError):
            continue
        impossible(new.model(), f"after {changes}")
        # write onto fresh overlays of the same (mutated) disks and read it all back
        fresh = {ref: OverlayDisk(dk) for ref, dk in new.disks().items()}
        if not fresh:
            continue  # no disk of the container is present: nothing is written
        for ref, ws in writes.items():
            for w in ws:
                fresh[ref].write(w.offset, w.data)
        try:
            again = h.assemble([h.load(dk) for dk in fresh.values()])
            again.validate()
            again.model()
        except MetadataError as e:
            raise UnreadableWrite(f"after {changes}: {e}") from e
    return "accepted-roundtrips" if identical else "accepted-rewritten"


class UnreadableWrite(Exception):
    pass


class Impossible(Exception):
    """Validation let through a state that cannot be (the oracle below, independent of the formats)."""


#: md levels the model may report; -2 is a level the spec defines but md cannot run (RAID3, RAID5E, ...).
LEVELS = (-2, -1, 0, 1, 4, 5, 6, 10)


def impossible(model: Container, when: str) -> None:
    """Raise Impossible if the neutral model describes what no array can be, whatever its bytes said."""
    sizes = {d.ref: d.size_sectors for d in model.disks}
    for v in model.volumes:
        what = f"{when}: volume {v.index} ({v.name!r})"
        if v.level not in LEVELS:
            raise Impossible(f"{what}: level {v.level}")
        refs = [m.disk_ref for m in v.members if m.disk_ref is not None]
        if len(set(refs)) != len(refs):
            raise Impossible(f"{what}: a disk in several slots {refs}")
        slots = [m.slot for m in v.members]
        if len(set(slots)) != len(slots) or any(not 0 <= s < v.raid_disks for s in slots):
            raise Impossible(f"{what}: slots {slots} of {v.raid_disks}")
        done = None if v.migration is None else v.migration.checkpoint_sectors
        if done is not None and done > v.component_sectors:
            raise Impossible(f"{what}: checkpoint {done} > {v.component_sectors}")
        for m in v.members:
            size = sizes.get(m.disk_ref or "")
            if size and m.offset_sectors + v.component_sectors > size:
                raise Impossible(f"{what}: slot {m.slot} ends at {m.offset_sectors + v.component_sectors} > {size}")
        data = {0: v.raid_disks, -1: v.raid_disks, 1: 1, 4: v.raid_disks - 1, 5: v.raid_disks - 1}.get(v.level)
        data = {6: v.raid_disks - 2, 10: v.raid_disks / 2}.get(v.level, data)
        # IMSM's component is rounded down to the chunk, and mdadm trusts the stripes within 2048
        # sectors a member (calc_component_size): an array up to that much larger is what mdadm accepts
        slack = max(v.chunk_sectors, 2048) if model.format == "imsm" else 0
        if data is not None and v.size_sectors > max(data, 1) * (v.component_sectors + slack):
            raise Impossible(f"{what}: size {v.size_sectors} > {data} x {v.component_sectors}")


def _where(e: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/formats/" in f.filename or "/mdmond/" in f.filename]
    f = frames[-1] if frames else traceback.extract_tb(e.__traceback__)[-1]
    return f"{type(e).__name__} at {f.filename.rsplit('/', 2)[-2]}/{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in the main thread after ``seconds`` of this process's CPU time (SIGPROF).

    CPU time, not wall time: a case niced behind other work, or a run paused with SIGSTOP, is not
    a hang, and a real one (a loop that never ends) burns CPU.  A no-op bound off the main thread.
    """

    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout()

    try:
        old = signal.signal(signal.SIGPROF, expire)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def run_case(case: Case, *, time_limit: float = 10.0, trace_memory: bool = False) -> Outcome:
    if trace_memory:
        tracemalloc.start()
    try:
        with time_bound(time_limit):
            cls = pipeline(case)
        out = Outcome(cls)
    except CaseTimeout:
        out = Outcome("bug-hang", f"ran past {time_limit} s", "hang")
    except MemoryError as e:
        out = Outcome("bug-huge-allocation", "MemoryError", _where(e))
    except Impossible as e:
        out = Outcome("bug-impossible-accepted", str(e), str(e).split(":")[0] + ":" + str(e).split(":")[-1][:40])
    except UnreadableWrite as e:
        out = Outcome("bug-unreadable-write", str(e), _where(e.__cause__ or e))
    except NoMetadata:
        out = Outcome("no-metadata")
    except MetadataError as e:
        out = Outcome("refused" if _named(e) else "refused-vague", str(e), f"{e.structure}.{e.field}")
    except Exception as e:
        out = Outcome("bug-exception", f"{type(e).__name__}: {e}", _where(e))
    finally:
        if trace_memory:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    if trace_memory and peak > HUGE and not out.cls.startswith("bug-"):
        out = Outcome("bug-huge-allocation", f"peak {peak} bytes", "allocation")
    return out


def cases(seeds: list[Seed], count: int, seed: int = 0) -> Iterator[Case]:
    """``count`` cases spread over every seed's structures and every mutation, reproducible from ``seed``."""
    rng = random.Random(seed)
    pool = [(s, t) for s in seeds for t in s.targets]
    for i in range(count):
        s, t = pool[rng.randrange(len(pool))]
        mutation = MUTATIONS[rng.randrange(len(MUTATIONS))]
        yield Case(s, t, mutation, rng.random() < 0.6, seed * 1_000_003 + i, rng.random() < 0.25)


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    bugs: dict[str, tuple[str, str]] = field(default_factory=dict)  # where -> (case label, detail)
    vague: Counter[str] = field(default_factory=Counter)  # structure.field of refusals missing a location
    seconds: float = 0.0
    interrupted: bool = False

    def add(self, case: Case, out: Outcome) -> None:
        self.counts[out.cls] += 1
        if out.cls in BUGS:
            self.bugs.setdefault(out.where, (case.label(), out.detail))
        elif out.cls == "refused-vague":
            self.vague[out.where] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def text(self) -> str:
        lines = [f"{self.total} cases in {self.seconds:.0f} s{' (interrupted)' if self.interrupted else ''}"]
        lines += [f"  {c:22} {self.counts.get(c, 0)}" for c in CLASSES]
        lines.append(f"  {'bugs (distinct)':22} {len(self.bugs)}")
        for where, (label, detail) in sorted(self.bugs.items()):
            lines.append(f"    {where}\n      {label}\n      {detail[:300]}")
        if self.vague:
            lines.append("  refusals without a full location (structure.field: count):")
            lines += [f"    {k}: {v}" for k, v in self.vague.most_common(20)]
        return "\n".join(lines)


def run(
    seeds: list[Seed],
    count: int,
    seed: int = 0,
    *,
    time_limit: float = 10.0,
    trace_memory: bool = False,
    progress: Callable[[Report], None] | None = None,
    on_bug: Callable[[Case, Outcome], None] | None = None,
    trace_every: int = 0,
) -> Report:
    """Run ``count`` cases; with ``trace_every`` N, every Nth case's allocations are traced against ``HUGE``."""
    report = Report()
    start = time.monotonic()
    try:
        for i, case in enumerate(cases(seeds, count, seed)):
            traced = trace_memory or bool(trace_every and i % trace_every == 0)
            out = run_case(case, time_limit=time_limit, trace_memory=traced)
            if on_bug is not None and out.cls in BUGS and out.where not in report.bugs:
                on_bug(case, out)
            report.add(case, out)
            if progress is not None and (i + 1) % 10000 == 0:
                report.seconds = time.monotonic() - start
                progress(report)
    except KeyboardInterrupt:  # a long run stopped early still reports what it did
        report.interrupted = True
    report.seconds = time.monotonic() - start
    return report
