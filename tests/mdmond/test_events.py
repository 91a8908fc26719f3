"""The bounded event buffer: a reader's cursor, events lost to the bound, the context every event carries.

And the vocabulary: every kind the code emits is listed in ``KINDS`` (what ``mdmond events --kind`` accepts),
and every listed kind is emitted somewhere.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import mdmond
from mdmond.events import KINDS, Event, EventLog

#: Calls whose first argument is an event kind.
EMITTERS = {"emit", "_failed", "Event"}


def emitted_kinds() -> dict[str, str]:
    """Kind -> a file emitting it, for every literal kind (both arms of ``a if c else b``) in mdmond."""
    found: dict[str, str] = {}
    for path in Path(mdmond.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in EMITTERS:
                continue
            arg = node.args[0]
            arms = [arg.body, arg.orelse] if isinstance(arg, ast.IfExp) else [arg]
            for a in arms:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    found.setdefault(a.value, str(path))
    return found


def test_the_vocabulary_is_exactly_what_the_code_emits() -> None:
    emitted = emitted_kinds()
    assert {k: f for k, f in emitted.items() if k not in KINDS} == {}
    assert sorted(set(KINDS) - set(emitted)) == []
    assert all(meaning for meaning in KINDS.values())


def ticking() -> Callable[[], float]:
    t = [0.0]

    def clock() -> float:
        t[0] += 1.0
        return t[0]

    return clock


def test_since_returns_only_what_came_after_the_cursor() -> None:
    log = EventLog(clock=ticking())
    log.emit("a")
    log.emit("b", x=1)
    events, cursor, lost = log.since(0)
    assert [e.kind for e in events] == ["a", "b"] and cursor == 2 and lost == 0
    assert events[1].fields == {"x": 1} and events[1].at == 2.0
    assert log.since(cursor) == ([], 2, 0)
    log.emit("c")
    events, cursor, lost = log.since(cursor)
    assert [e.kind for e in events] == ["c"] and cursor == 3 and lost == 0


def test_events_pushed_out_by_the_bound_are_counted_as_lost() -> None:
    log = EventLog(size=3)
    for i in range(5):
        log.emit("e", i=i)
    assert log.dropped == 2 and log.total == 5 and len(log.records) == 3
    events, cursor, lost = log.since(0)
    assert [e.fields["i"] for e in events] == [2, 3, 4] and cursor == 5 and lost == 2
    # A reader that had seen the first event lost only the one between.
    events, _, lost = log.since(1)
    assert [e.fields["i"] for e in events] == [2, 3, 4] and lost == 1
    # A reader further along than the oldest kept event loses nothing.
    events, _, lost = log.since(3)
    assert [e.fields["i"] for e in events] == [3, 4] and lost == 0


def test_context_is_on_every_event_and_an_explicit_field_wins() -> None:
    log = EventLog(context={"container": "md127"})
    log.emit("dirty", array="md126")
    log.emit("moved", container="md130")
    assert log.records[0].fields == {"container": "md127", "array": "md126"}
    assert log.records[1].fields["container"] == "md130"
    assert log.context == {"container": "md127"}  # not changed by an event


def test_on_emit_is_called_after_the_event_is_in_the_buffer() -> None:
    log = EventLog()
    seen: list[int] = []
    log.on_emit = lambda: seen.append(log.total)
    log.emit("a")
    log.emit("b")
    assert seen == [1, 2]
    assert log.kinds() == ["a", "b"]


def test_json_form_has_event_time_and_fields() -> None:
    e = Event("disk-failed", {"disk": "sdb"}, 12.5)
    assert e.json() == {"event": "disk-failed", "time": 12.5, "disk": "sdb"}
