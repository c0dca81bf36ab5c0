"""Test-side client of the simulator's trading API: signs requests itself (hmac over the bytes it
sends), positions the replay, and reads the tape independently of the simulator."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp

from exchange.sim.server import SimServer
from exchange.sim.trading import TEST_API_KEY, TEST_API_SECRET


def signed_query(params: dict[str, Any], secret: str = TEST_API_SECRET) -> str:
    """Return the percent-encoded query with its HMAC-SHA256 signature appended."""
    query = urlencode(params)
    digest = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={digest}"


class Client:
    """Signed REST calls against one simulator."""

    def __init__(self, sim: SimServer, http: aiohttp.ClientSession) -> None:
        self.sim, self.http = sim, http

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        secret: str = TEST_API_SECRET,
        key: str | None = TEST_API_KEY,
        timestamp_ms: int | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        params = dict(params or {})
        params["timestamp"] = self.sim.server_time_ms() if timestamp_ms is None else timestamp_ms
        url = f"{self.sim.base_http}{path}?{signed_query(params, secret)}"
        headers = {"X-MBX-APIKEY": key} if key is not None else {}
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
        async with self.http.request(method, url, headers=headers, timeout=timeout) as resp:
            return resp.status, await resp.json(), dict(resp.headers)


async def run_to_diff(sim: SimServer, n: int) -> None:
    """Start the replay and pause it right after its n-th diff-depth frame."""
    count = 0
    reached = asyncio.Event()

    def on_diff(symbol: str, final_update_id: int) -> None:
        nonlocal count
        count += 1
        if count == n:
            sim.pause()
            reached.set()

    sim.on_depth_sent(on_diff)
    sim.start()
    await reached.wait()


def tape_trades(sim: SimServer, after_position: bool) -> list[dict]:
    """Return the recorded trades after (or up to) the replay's position, read from the frames."""
    position = sim.replay.position
    frames = sim.timeline.frames
    chosen = frames[position + 1 :] if after_position else frames[: position + 1]
    return [json.loads(f.data) for f in chosen if f.stream.endswith("@trade")]


def floor_step(qty: Decimal, step: Decimal) -> Decimal:
    return qty.quantize(step, rounding=ROUND_DOWN)


def walk(
    levels: list[tuple[Decimal, Decimal]], qty: Decimal, step: Decimal
) -> list[tuple[Decimal, Decimal]]:
    """Reference taker walk: best level first, level quantities on the LOT_SIZE step."""
    fills = []
    left = qty
    for price, level_qty in levels:
        take = min(left, floor_step(level_qty, step))
        if take > 0:
            fills.append((price, take))
            left -= take
        if left == 0:
            break
    return fills


def commission(price: Decimal, qty: Decimal, rate: Decimal) -> Decimal:
    """Commission rounded half-up to 8 decimals (Binance reports 8)."""
    return (price * qty * rate).quantize(Decimal("0.00000001"), rounding=ROUND_HALF_UP)
