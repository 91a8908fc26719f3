"""The control socket against well-behaved and hostile peers, over a real Unix socket."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest
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


async def serving(  # type: ignore[no-untyped-def]
    tmp_path: Path, body, server_ref: list[ControlServer] | None = None, **kw: object
) -> tuple[Recorder, ControlServer]:
    rec = Recorder()
    server = ControlServer(rec.handlers(), version="mdmond - v4.2.0 - test", **kw)  # type: ignore[arg-type]
    if server_ref is not None:
        server_ref.append(server)  # for a body that looks at the server while it serves
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

    rec, server = await serving(tmp_path, body, frame_timeout=0.05)
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


# -- abuse: many, slow, silent and oversized peers; the descriptor table running out ---------------

PING = frames.encode(frames.Frame(0))
VERSION_REPLY = frames.reply(b"mdmond - v4.2.0 - test\0")


async def closed_by_server(s: trio.SocketStream, within: float = 2.0) -> bool:
    """Did the server close (or reset) this connection within ``within`` seconds?"""
    with trio.move_on_after(within):
        try:
            while await s.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def ticking(counter: list[int]) -> None:
    """Stands for the monitor serving the kernel: it must keep running whatever the peers do."""
    while True:
        counter[0] += 1
        await trio.sleep(0.005)


async def test_connections_past_the_cap_are_closed_and_the_server_keeps_serving(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        held = [await trio.open_unix_socket(path) for _ in range(4)]  # silent, each holding a connection
        await trio.sleep(0.05)
        extra = [await trio.open_unix_socket(path) for _ in range(200)]
        with trio.fail_after(5):
            assert all([await closed_by_server(s) for s in extra])  # refused at once, not queued
        for s in extra:
            await s.aclose()
        assert server_ref[0].connections == 4
        for s in held:  # once the four leave, a ping is served again
            await s.aclose()
        await trio.sleep(0.05)
        assert await exchange(path, PING, len(VERSION_REPLY)) == VERSION_REPLY

    server_ref: list[ControlServer] = []
    rec, server = await serving(tmp_path, body, max_connections=4, server_ref=server_ref)
    assert server.refused > 0 and server.connections == 0  # (some of the 200 may not get past the backlog)
    refusals = [e for e in server.events.records if e.kind == "control-refused"]
    assert 1 <= len(refusals) <= 10 and sum(e.fields["refused"] for e in refusals) <= server.refused  # no log flood
    assert rec.calls == [("ping-monitor", b"")]


async def test_a_thousand_connections_do_not_end_the_server(tmp_path: Path) -> None:
    """The issue's ~1,000 connections, with the default cap (in batches, to stay within this process's limit)."""

    async def body(path: str) -> None:
        for _ in range(4):
            batch = [await trio.open_unix_socket(path) for _ in range(250)]
            await trio.sleep(0.02)
            for s in batch:
                await s.aclose()
        with trio.fail_after(5):
            assert await exchange(path, PING, len(VERSION_REPLY)) == VERSION_REPLY

    rec, server = await serving(tmp_path, body)
    assert server.refused > 0 and rec.calls == [("ping-monitor", b"")]


class ExhaustedListener(trio.abc.Listener[trio.SocketStream]):
    """A listener whose first ``failures`` accepts fail as they do when the descriptor table is full."""

    def __init__(self, inner: trio.SocketListener, failures: int, err: int) -> None:
        self.inner = inner
        self.failures = failures
        self.err = err

    async def accept(self) -> trio.SocketStream:
        if self.failures:
            self.failures -= 1
            await trio.sleep(0)
            raise OSError(self.err, os.strerror(self.err))
        return await self.inner.accept()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("err", [errno.EMFILE, errno.ENFILE, errno.ECONNABORTED])
async def test_accept_running_out_of_descriptors_backs_off_and_never_raises(tmp_path: Path, err: int) -> None:
    rec = Recorder()
    server = ControlServer(rec.handlers(), version="mdmond - v4.2.0 - test", accept_backoff=0.01)
    path = str(tmp_path / "md127.sock")
    listener = ExhaustedListener(await server.listen(path), 5, err)
    async with trio.open_nursery() as n:
        n.start_soon(server.serve, listener)
        with trio.fail_after(5):
            assert await exchange(path, PING, len(VERSION_REPLY)) == VERSION_REPLY
        n.cancel_scope.cancel()
    assert listener.failures == 0 and rec.calls == [("ping-monitor", b"")]
    assert server.accept_errors == 5
    assert [e.kind for e in server.events.records].count("control-refused") == 1  # not one per failed try


async def test_slow_peers_are_dropped_and_never_delay_a_ping(tmp_path: Path) -> None:
    """Ten peers trickling one byte at a time (a slowloris); a legitimate ping is answered at once."""
    ticks = [0]
    delays: list[float] = []

    async def trickle(path: str) -> None:
        async with await trio.open_unix_socket(path) as s:
            data = frames.encode(frames.Frame(64, bytes(64)))
            try:
                for b in data:
                    await s.send_all(bytes([b]))
                    await trio.sleep(0.02)
            except trio.BrokenResourceError:
                pass  # dropped: the deadline is per frame, not per byte

    async def body(path: str) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(ticking, ticks)
            for _ in range(10):
                n.start_soon(trickle, path)
            await trio.sleep(0.1)
            for _ in range(3):
                start = trio.current_time()
                assert await exchange(path, PING, len(VERSION_REPLY)) == VERSION_REPLY
                delays.append(trio.current_time() - start)
                await trio.sleep(0.05)
            await trio.sleep(0.5)  # past the frame deadline: every trickler has been cut off
            n.cancel_scope.cancel()

    rec, server = await serving(tmp_path, body, frame_timeout=0.3)
    assert max(delays) < 0.25
    assert server.events.kinds().count("control-timeout") == 10
    assert rec.calls == [("ping-monitor", b"")] * 3  # no trickled update got through
    assert ticks[0] > 50  # the monitor stand-in kept running throughout


async def test_silent_peers_are_dropped_after_the_idle_timeout(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        peers = [await trio.open_unix_socket(path) for _ in range(5)]
        with trio.fail_after(3):
            assert all([await closed_by_server(s) for s in peers])

    _, server = await serving(tmp_path, body, idle_timeout=0.1)
    assert server.events.kinds() == ["control-timeout"] * 5 and server.connections == 0


async def test_updates_held_without_a_ping_are_bounded_per_connection(tmp_path: Path) -> None:
    """The issue's 40 x 4 MiB without a ping, scaled down: the update past the bound is refused, not kept."""
    update = frames.encode(frames.Frame(400, b"u" * 400))

    async def body(path: str) -> None:
        got = await exchange(path, update * 40, 40 * len(frames.reply()))
        assert got == frames.reply() * 2  # two acknowledged, then the connection is closed

    rec, server = await serving(tmp_path, body, max_pending_bytes=1000)
    assert rec.calls == [("update", b"|".join([b"u" * 400] * 2))]  # the acknowledged ones still reach the monitor
    assert "control-overflow" in server.events.kinds() and server.pending_total == 0


async def test_updates_held_without_a_ping_are_bounded_in_total(tmp_path: Path) -> None:
    update = frames.encode(frames.Frame(400, b"t" * 400))

    async def body(path: str) -> None:
        peers = [await trio.open_unix_socket(path) for _ in range(3)]
        for p in peers[:2]:
            await p.send_all(update)
            with trio.fail_after(2):
                assert await p.receive_some() == frames.reply()
        await peers[2].send_all(update)
        with trio.fail_after(2):
            assert await closed_by_server(peers[2])  # 1200 bytes held in all would pass 1000
        assert server_ref[0].pending_total == 800
        for p in peers:
            await p.aclose()

    server_ref: list[ControlServer] = []
    rec, server = await serving(tmp_path, body, server_ref=server_ref, max_pending_total=1000)
    assert server.events.kinds() == ["control-overflow"] and server.pending_total == 0
    assert sorted(rec.calls) == [("update", b"t" * 400)] * 2


async def test_an_oversized_frame_is_refused_before_any_payload_is_read(tmp_path: Path) -> None:
    async def body(path: str) -> None:
        async with await trio.open_unix_socket(path) as s:
            await s.send_all(struct.pack("=Ii", frames.START_MAGIC, frames.MAX_PAYLOAD))
            with trio.fail_after(2):
                assert await closed_by_server(s)

    _, server = await serving(tmp_path, body, max_pending_bytes=1 << 20)
    assert server.events.kinds() == ["control-overflow"] and server.pending_total == 0
