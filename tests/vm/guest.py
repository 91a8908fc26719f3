"""Reading what a guest script printed."""

from __future__ import annotations


def fields(out: str) -> dict[str, str]:
    """The script's ``key=value`` lines (mdadm's messages and JSON event lines are not fields)."""
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line and not line.startswith(("mdadm", "{")))
