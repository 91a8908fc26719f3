"""What the commands say when what they are given cannot be used.

Every refusal is one line on standard error, ``mdmond: WHAT: MESSAGE``, and
with ``--json`` the same facts as one object, ``{"error": {"kind", "message",
"what", "where"}}``, so that a script never has to parse a traceback.  The exit
statuses are the commands' interface (README, ``mdmond --help``):
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, NoReturn

from formats.errors import DiskIOError, MetadataError, NoMetadata

#: Exit statuses of ``examine``, ``dry-run`` and ``events``.
OK = 0
FAILED = 1  # a device, image or log could not be read or used; a dry run found errors
USAGE = 2  # the command line is wrong (argparse's own status, kept for every such check)
DIFFERS = 3  # examine --check-roundtrip: re-encoding what was parsed changes a byte
OUTPUT = 4  # standard output could not be written (a full disk); nothing was lost silently
BROKEN_PIPE = 141  # the reader went away (``| head``): 128 + SIGPIPE, as for a C tool
INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT

STATUSES = (
    (OK, "done"),
    (FAILED, "a device, image or event log could not be read or used, or a dry run reported errors"),
    (USAGE, "the command line is wrong: a bad option value, an unknown device, event kind or duplicated image"),
    (DIFFERS, "examine --check-roundtrip: the re-encoded metadata differs from the disk"),
    (OUTPUT, "standard output could not be written (e.g. a full disk)"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
    (BROKEN_PIPE, "the reader of standard output went away (| head); nothing is printed"),
)


@dataclass(frozen=True)
class Problem:
    """One thing that went wrong (or a warning): what it concerns, where in it, and why."""

    message: str
    what: str  # the thing named on the command line: an image, an option, a log file
    where: str | None = None  # a place in it: a byte offset, a line, an option's value
    kind: str = "usage"  # usage, io, no-metadata, bad-metadata, incomplete, bad-line, output, ...

    def __str__(self) -> str:
        return f"{self.what}: {self.message}" if self.where is None else f"{self.what}: {self.where}: {self.message}"

    def json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "what": self.what, "where": self.where}


class CommandError(Exception):
    """A refusal: the command stops with ``status`` after printing ``problem`` as one line."""

    def __init__(self, problem: Problem, status: int = USAGE) -> None:
        super().__init__(str(problem))
        self.problem = problem
        self.status = status


def error_object(p: Problem) -> dict[str, Any]:
    """The one JSON error shape, for every ``--json`` output."""
    return {"error": p.json()}


def seconds(value: str) -> float:
    """argparse type: a finite number of seconds, not negative (a NaN or inf would hang or crash the run)."""
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {value!r}") from None
    if not math.isfinite(t) or t < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, 0 or more, not {value!r}")
    return t


class Parser(argparse.ArgumentParser):
    """argparse with mdmond's one-line refusals: ``mdmond: dry-run: argument --duration: ...``, status 2."""

    def error(self, message: str) -> NoReturn:
        what = self.prog.removeprefix("mdmond").strip() or "command line"
        raise CommandError(Problem(f"{message} (see {self.prog} --help)", what=what))


def problem_of(what: str, err: MetadataError | DiskIOError) -> Problem:
    """A format-layer error about the device or image named ``what``, as one Problem."""
    if isinstance(err, MetadataError):
        loc = ".".join(p for p in (err.structure, err.field) if p)
        if err.offset is not None:
            loc = f"{loc} at byte {err.offset:#x}".strip()
        kind = "no-metadata" if isinstance(err, NoMetadata) else "bad-metadata"
        msg = err.message if err.format == "any" else f"{err.format}: {err.message}"
        return Problem(msg, what=what, where=loc or None, kind=kind)
    return Problem(err.message, what=what, where=None if err.offset is None else f"byte {err.offset:#x}", kind="io")


__all__ = ["STATUSES", "CommandError", "Parser", "Problem", "error_object", "problem_of", "seconds"]
