"""Each injected fault is observable by a client over real sockets, programmatically or over HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from sim_client_reference import ClientBook, recorded_diffs, recorded_snapshot

from engine.tape import read_tape
from exchange.sim.server import SimServer
from exchange.sim.timeline import Timeline

FAST = {"speed": 0, "start_delay_s": 0, "close_when_finished": True}
DEPTH_AND_TRADES = "btcusdt@depth@100ms/btcusdt@trade"


def tape_messages(path: Path, streams: tuple[str, ...]) -> list[bytes]:
    """The tape's envelopes of the given streams, in order."""
    heads = tuple(b'{"stream":"%s"' % s.encode() for s in streams)
    return [f.payload for f in read_tape(path) if f.payload.startswith(heads)]


async def read_frames(ws: aiohttp.ClientWebSocketResponse, limit: int | None = None) -> list:
    """Read (loop time, text) until the server closes, or until `limit` frames."""
    loop = asyncio.get_running_loop()
    frames = []
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            frames.append((loop.time(), msg.data.encode()))
            if limit is not None and len(frames) >= limit:
                break
    return frames


def depth_ids(messages: list[bytes]) -> list[int]:
    return [json.loads(m)["data"]["u"] for m in messages if b"@depth" in m[:40]]


def frame_index_of_diff(frames: list[tuple[float, bytes]], diff_number: int) -> int:
    """Index in frames of the diff_number-th depth frame."""
    return [i for i, (_, m) in enumerate(frames) if b"@depth" in m[:40]][diff_number - 1]


def inject_at(sim: SimServer, diff_number: int, action) -> None:
    """Run action() right after the diff_number-th diff has been emitted."""
    count = 0

    def on_depth(symbol: str, u: int) -> None:
        nonlocal count
        count += 1
        if count == diff_number:
            action()

    sim.on_depth_sent(on_depth)


async def run_client(sim: SimServer, path: str = f"/stream?streams={DEPTH_AND_TRADES}") -> list:
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.base_ws + path) as ws:
        return [m for _, m in await read_frames(ws)]


async def test_gap_skips_diffs_for_clients_but_not_for_the_sim_book(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    tape_ids = [d["u"] for d in recorded_diffs(spot_tape)]
    sim = SimServer(spot_timeline, **FAST)
    inject_at(sim, 100, lambda: sim.faults.gap("BTCUSDT", n=3))
    async with sim:
        received = depth_ids(await run_client(sim))
        status = sim.status()
    assert received == tape_ids[:100] + tape_ids[103:]
    assert status["frames_gapped"] == 3 and status["faults_injected"] == {"gap": 1}
    reference = ClientBook(False, recorded_snapshot(spot_tape))
    for diff in recorded_diffs(spot_tape):
        reference.feed(diff)
    assert sim.book_levels("BTCUSDT") == reference.levels()


async def test_duplicate_sends_the_next_frames_twice(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    expected = tape_messages(spot_tape, ("btcusdt@depth@100ms", "btcusdt@trade"))
    sim = SimServer(spot_timeline, **FAST)
    inject_at(sim, 50, lambda: sim.faults.duplicate(None, n=2))
    async with sim:
        received = await run_client(sim)
    fiftieth = [i for i, m in enumerate(expected) if b"@depth" in m[:40]][49]
    nxt = fiftieth + 1
    doubled = expected[:nxt] + [expected[nxt]] * 2 + [expected[nxt + 1]] * 2 + expected[nxt + 2 :]
    assert received == doubled


async def test_reorder_swaps_the_next_two_diffs(spot_timeline: Timeline, spot_tape: Path) -> None:
    tape_ids = [d["u"] for d in recorded_diffs(spot_tape)]
    sim = SimServer(spot_timeline, **FAST)
    inject_at(sim, 30, lambda: sim.faults.reorder("BTCUSDT"))
    async with sim:
        received = depth_ids(await run_client(sim))
    assert received == tape_ids[:30] + [tape_ids[31], tape_ids[30]] + tape_ids[32:]


async def test_drop_closes_connections_without_a_close_frame(spot_timeline: Timeline) -> None:
    sim = SimServer(spot_timeline, **FAST)
    inject_at(sim, 200, lambda: sim.faults.drop_connections())
    async with sim, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{sim.base_ws}/stream?streams={DEPTH_AND_TRADES}") as ws:
            frames = await read_frames(ws)
            assert ws.close_code not in (1000, 1001)  # no orderly close
        assert 0 < len(depth_ids([m for _, m in frames])) <= 200
        assert sim.status()["faults_injected"] == {"drop": 1}
        # The server keeps serving: a reconnecting client gets the rest of the tape.
        rest = await run_client(sim)
        assert rest


async def test_stall_sends_nothing_to_open_connections_for_the_period(
    spot_timeline: Timeline,
) -> None:
    stall_s = 1.0
    sim = SimServer(spot_timeline, speed=10, start_delay_s=0, ping_interval_s=0.1,
                    pong_timeout_s=30)  # fmt: skip
    loop = asyncio.get_running_loop()
    stalled_at: list[float] = []
    inject_at(sim, 20, lambda: (stalled_at.append(loop.time()), sim.faults.stall(stall_s)))
    async with sim, aiohttp.ClientSession() as http:
        url = f"{sim.base_ws}/stream?streams={DEPTH_AND_TRADES}"
        stalled = await http.ws_connect(url, autoping=False)  # pongs would count against 5/s
        pings: list[float] = []
        frames: list[tuple[float, bytes]] = []

        async def read_stalled() -> None:
            async for msg in stalled:
                if msg.type is aiohttp.WSMsgType.PING:
                    pings.append(loop.time())
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    frames.append((loop.time(), msg.data.encode()))
                    if stalled_at and loop.time() > stalled_at[0] + stall_s + 0.3:
                        return

        reader = asyncio.create_task(read_stalled())
        while not stalled_at:
            await asyncio.sleep(0.01)
        # A connection opened during the stall is served at once (as a reconnect would be).
        async with http.ws_connect(url) as fresh:
            fresh_first = (await read_frames(fresh, limit=1))[0][0]
        await reader
        await stalled.close()
    start = stalled_at[0]
    # Frames up to the 20th diff were queued before the stall; everything after waits it out.
    twentieth = frame_index_of_diff(frames, 20)
    after_stall = frames[twentieth + 1][0]
    assert after_stall - start >= stall_s * 0.95  # nothing at all during the stall
    assert fresh_first < after_stall
    assert not [t for t in pings if start + 0.2 < t < start + stall_s - 0.05]  # pings=False


async def test_delay_holds_frames_then_delivers_them_all(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    expected = tape_messages(spot_tape, ("btcusdt@depth@100ms", "btcusdt@trade"))[:1500]
    sim = SimServer(spot_timeline, speed=20, start_delay_s=0)
    loop = asyncio.get_running_loop()
    delayed_at: list[float] = []
    inject_at(sim, 20, lambda: (delayed_at.append(loop.time()), sim.faults.delay(500)))
    async with (
        sim,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{sim.base_ws}/stream?streams={DEPTH_AND_TRADES}") as ws,
    ):
        frames = await read_frames(ws, limit=len(expected))
    assert [m for _, m in frames] == expected  # nothing lost, nothing reordered
    twentieth = frame_index_of_diff(frames, 20)
    assert frames[twentieth + 1][0] - delayed_at[0] >= 0.45


async def test_server_shutdown_notice_then_close(spot_timeline: Timeline) -> None:
    sim = SimServer(spot_timeline, speed=0, start_delay_s=0)
    inject_at(sim, 100, lambda: sim.faults.server_shutdown(after_ms=200))
    async with sim, aiohttp.ClientSession() as http:
        combined = await http.ws_connect(f"{sim.base_ws}/stream?streams={DEPTH_AND_TRADES}")
        raw = await http.ws_connect(f"{sim.base_ws}/ws/btcusdt@trade")
        got_combined, got_raw = await asyncio.gather(read_frames(combined), read_frames(raw))
        assert combined.close_code == raw.close_code == 1001
    notices = [json.loads(m) for _, m in got_combined if b"serverShutdown" in m]
    assert len(notices) == 1 and notices[0]["stream"] == "!serverShutdown"
    notice = notices[0]["data"]
    assert notice["e"] == "serverShutdown"
    event_times = [json.loads(m)["data"]["E"] for _, m in got_combined if b"@depth" in m[:40]]
    assert min(event_times) - 5000 < notice["E"] < max(event_times) + 5000
    raw_notices = [json.loads(m) for _, m in got_raw if b"serverShutdown" in m]
    assert raw_notices == [{"e": "serverShutdown", "E": raw_notices[0]["E"]}]


async def test_http_fault_endpoint_and_status(spot_timeline: Timeline, spot_tape: Path) -> None:
    tape_ids = [d["u"] for d in recorded_diffs(spot_tape)]
    async with SimServer(spot_timeline, **FAST) as sim, aiohttp.ClientSession() as http:
        fault_url = f"{sim.base_http}/_sim/fault"
        async with http.post(fault_url, json={"kind": "gap", "symbol": "BTCUSDT", "n": 2}) as r:
            assert r.status == 200
        async with http.post(fault_url, json={"kind": "meteor"}) as r:
            assert r.status == 400
        async with http.post(fault_url, json={"kind": "gap", "colour": "red"}) as r:
            assert r.status == 400
        async with http.post(fault_url, json={"kind": "http_error", "status": 429}) as r:
            assert r.status == 200
        async with http.get(f"{sim.base_http}/api/v3/time") as r:
            assert r.status == 429 and "Retry-After" in r.headers
            assert (await r.json())["code"] == -1003
        async with http.get(f"{sim.base_http}/api/v3/time") as r:
            assert r.status == 200
        received = depth_ids(await run_client(sim))
        async with http.get(f"{sim.base_http}/_sim/status") as r:
            status = await r.json()
    assert received == tape_ids[2:]
    assert status["faults_injected"] == {"gap": 1, "http_error": 1}
    assert status["frames_gapped"] == 2
    assert status["frames_sent"] == len(received) + 9757  # depth diffs and trades
    assert status["replay"]["finished"] is True
    assert status["replay"]["position_index"] == status["frames_total"] - 1
    assert status["connections_total"] == 1


async def test_random_schedule_is_deterministic_for_a_seed(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    kinds = ("gap", "duplicate", "reorder")
    runs = []
    for seed in (7, 7, 8):
        sim = SimServer(spot_timeline, seed=seed, **FAST)
        schedule = sim.faults.schedule_random(rate_per_min=12, kinds=kinds)
        async with sim:
            received = await run_client(sim, "/stream?streams=btcusdt@depth@100ms")
        runs.append((schedule, depth_ids(received), dict(sim.faults.injected)))
    (schedule_a, ids_a, injected_a), (schedule_b, ids_b, _), (schedule_c, ids_c, _) = runs
    assert schedule_a == schedule_b and len(schedule_a) > 20
    assert schedule_c != schedule_a
    assert ids_a == ids_b
    assert ids_a != [d["u"] for d in recorded_diffs(spot_tape)]
    assert ids_c != ids_a
    assert sum(injected_a.values()) == len(schedule_a)
