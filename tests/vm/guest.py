"""Reading what a guest script printed."""

from __future__ import annotations


def fields(out: str) -> dict[str, str]:
    """The script's ``key=value`` lines (mdadm's messages and JSON event lines are not fields)."""
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith(("mdadm", "{")))


def same_end(ends: dict[str, object], key: str, daemon: str, end: object) -> None:
    """Record a scenario's end state under one daemon; once both have run, they must agree.

    ``ends`` is the calling module's dict (a module stays on one test worker).
    """
    ends[f"{key}@{daemon}"] = end
    other = ends.get(f"{key}@{'mdmon' if daemon == 'mdmond' else 'mdmond'}")
    if other is not None:
        assert end == other, f"mdmon and mdmond differ for {key}: {daemon} {end!r}, the other {other!r}"
