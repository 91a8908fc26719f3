"""The control socket against well-behaved and hostile peers, over a real Unix socket."""

from __future__ import annotations

import struct
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from mdmond.control import frames
from mdmond.control.server import ControlServer, Handlers


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def handlers(self) -> Handlers:
        async def ping_monitor() -> None:
            self.calls.append(("ping-monitor", b""))

        async def ping_manager() -> None:
            self.calls.append(("ping-manager", b""))

        async def update(payloads: list[bytes]) -> None:
            self.calls.append(("update", b"|".join(payloads)))

        return Handlers(ping_monitor, ping_manager, update)


async def serving(tmp_path: Path, body, **kw: object) -> tuple[Recorder, ControlServer]:  # type: ignore[no-untyped-def]
    rec = Recorder()
    server = ControlServer(rec.handlers(), version="mdmond - v4.2.0 - test", **kw)  # type: ignore[arg-type]
    path = str(tmp_path / "md127.sock")
    async with trio.open_nursery() as n:
        n.start_soon(server.serve, await server.listen(path))
        await body(path)
        n.cancel_scope.cancel()
    return rec, server


async def exchange(path: str, data: bytes, expect: int) -> bytes:
    async with await trio.open_unix_socket(path) as s:
        await s.send_all(data)
        got = b""
        with trio.fail_after(5):
            while len(got) < expect:
                try:
                    chunk = await s.receive_some()
                except trio.BrokenResourceError:
                    break  # reset: the server closed with our bytes unread
                if not chunk:
                    break
                got += chunk
        return got


async def test_pings_and_updates_are_answered_in_order(tmp_path: Path) -> None:
    version = b"mdmond - v4.2.0 - test\0"
    request = frames.encode(frames.Frame(4, b"abcd")) + frames.encode(frames.Frame(-1)) + frames.encode(frames.Frame(0))
    answers = frames.reply() + frames.reply() + frames.reply(version)

    async def body(path: str) -> None:
        assert await exchange(path, request, len(answers)) == answers

    rec, _ = await serving(tmp_path, body)
    assert rec.calls == [("update", b"abcd"), ("ping-manager", b""), ("ping-monitor", b"")]


async def test_one_clients_updates_reach_the_monitor_together_before_its_ping(tmp_path: Path) -> None:
    """DDF's new volume is two messages (VD record, then config): applied apart, the first is invalid."""
    two = frames.encode(frames.Frame(2, b"vd")) + frames.encode(frames.Frame(4, b"conf"))
    request = two + frames.encode(frames.Frame(0)) + frames.encode(frames.Frame(1, b"x"))
    answers = frames.reply() + frames.reply() + frames.reply(b"mdmond - v4.2.0 - test\0") + frames.reply()

    async def body(path: str) -> None:
        assert await exchange(path, request, len(answers)) == answers

    rec, _ = await serving(tmp_path, body)
    # the ping flushes the pair as one batch; the last update, never followed by a ping, goes when the client leaves
    assert rec.calls == [("update", b"vd|conf"), ("ping-monitor", b""), ("update", b"x")]


async def test_socket_is_private(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        assert Path(path).stat().st_mode & 0o077 == 0  # owner (root) only

    await serving(tmp_path, body)


async def test_bad_magic_cuts_off_that_peer_only(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        assert await exchange(path, struct.pack("=Ii", 0xDEADBEEF, 0), 1) == b""
        assert await exchange(path, frames.encode(frames.Frame(-1)), 12) == frames.reply()

    rec, server = await serving(tmp_path, body)
    assert server.events.kinds() == ["control-bad-frame"]
    assert rec.calls == [("ping-manager", b"")]


async def test_huge_length_is_refused_before_reading_it(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        assert await exchange(path, struct.pack("=Ii", frames.START_MAGIC, 1 << 30), 1) == b""

    rec, server = await serving(tmp_path, body)
    assert "exceeds" in server.events.records[0].fields["error"] and rec.calls == []


async def test_peer_stalling_mid_frame_is_dropped(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        async with await trio.open_unix_socket(path) as s:
            await s.send_all(struct.pack("=Ii", frames.START_MAGIC, 10) + b"abc")
            with trio.fail_after(5):
                assert await s.receive_some() == b""  # closed by the server

    rec, server = await serving(tmp_path, body, chunk_timeout=0.05)
    assert server.events.kinds() == ["control-timeout"] and rec.calls == []


async def test_peer_that_is_not_allowed_is_refused(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        assert await exchange(path, frames.encode(frames.Frame(0)), 1) == b""

    rec, server = await serving(tmp_path, body, allowed_uids=frozenset({4242}))
    assert server.events.kinds() == ["control-refused"] and rec.calls == []


@given(st.binary(max_size=64))
def test_any_bytes_decode_to_a_frame_or_a_frame_error(data: bytes) -> None:
    try:
        f = frames.decode(data)
    except frames.FrameError:
        return
    assert frames.encode(f) == data
