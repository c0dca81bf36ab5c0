"""Simulator lifecycle: looping, slow consumers, clean shutdown without leaked tasks, run_sim."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest

from engine.tape import read_tape
from exchange.sim.server import SimServer, run_sim
from exchange.sim.timeline import Timeline


def other_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_loop_closes_connections_at_wrap_and_replays_from_the_start(
    spot_timeline: Timeline, spot_tape: Path
) -> None:
    trades = [
        f.payload
        for f in read_tape(spot_tape)
        if f.payload.startswith(b'{"stream":"btcusdt@trade"')
    ]
    url_path = "/stream?streams=btcusdt@trade"
    async with (
        SimServer(spot_timeline, speed=0, start_delay_s=0, loop=True) as sim,
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(sim.base_ws + url_path) as first:
            received = [m.data.encode() async for m in first if m.type is aiohttp.WSMsgType.TEXT]
            assert first.close_code == 1001
        assert received == trades
        async with http.ws_connect(sim.base_ws + url_path) as second:
            again = await second.receive()
            assert again.data.encode() == trades[0]
        assert sim.status()["loops"] == 1


async def test_a_client_that_stops_reading_is_dropped_without_stalling_the_replay(
    spot_timeline: Timeline,
) -> None:
    async with (
        SimServer(spot_timeline, speed=0, start_delay_s=0, slow_consumer_timeout_s=0.5) as sim,
        aiohttp.ClientSession() as http,
    ):
        stuck = await http.ws_connect(
            f"{sim.base_ws}/stream?streams=btcusdt@bookTicker/btcusdt@depth@100ms"
        )
        await sim.wait_finished()  # would hang if the replay waited for the stuck client
        assert sim.status()["slow_consumer_drops"] == 1
        await stuck.close()


async def test_close_leaves_no_task_and_closes_clients_with_going_away(
    spot_timeline: Timeline,
) -> None:
    before = other_tasks()
    async with aiohttp.ClientSession() as http:
        sim = SimServer(spot_timeline, speed=10, start_delay_s=0)
        await sim.open()
        ws = await http.ws_connect(f"{sim.base_ws}/stream?streams=btcusdt@trade")
        await ws.receive()  # the replay is running

        async def read_until_closed() -> int | None:  # a real client reads all the time
            async for _ in ws:
                pass
            return ws.close_code

        reader = asyncio.create_task(read_until_closed())
        await sim.close()
        assert await reader == 1001
    assert other_tasks() == before


async def test_run_sim_serves_until_cancelled(
    spot_tape: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a free port; run_sim must be told one to be reachable
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = other_tasks()
    server = asyncio.create_task(run_sim([spot_tape], speed=0, port=port))
    async with aiohttp.ClientSession() as http:
        for _ in range(500):
            try:
                async with http.get(f"http://127.0.0.1:{port}/api/v3/time") as resp:
                    assert resp.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)  # still loading the tape
        else:
            pytest.fail("run_sim never answered")
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out
    assert other_tasks() == before
