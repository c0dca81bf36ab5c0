"""Shared pieces of the Telegram notifier tests: the token, chats, configs, a service runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from engine.notify import RetryPolicy, TelegramConfig, TelegramNotifier

# looks real (aiogram checks digits:secret); never a real bot's token
TOKEN = "123456789:AAHtestSecretPartOfTheToken_0123456789x"
SECRET_HALF = TOKEN.partition(":")[2]
CHAT = 424242
OTHER_CHAT = 515151
STRANGER = 999001
T0_NS = 1_767_268_800 * 10**9  # 2026-01-01T12:00:00Z


def tg_config(api_base: str, **overrides: Any) -> TelegramConfig:
    """A config for tests: small waits, one allowed chat unless overridden."""
    values: dict[str, Any] = {
        "enabled": True,
        "chat_ids": (CHAT,),
        "api_base": api_base,
        "poll_timeout_s": 1,
        "request_timeout_s": 5,
        "retry": RetryPolicy(max_attempts=4, backoff_initial_s=1, backoff_max_s=8),
        "confirmation_timeout_s": 60,
    }
    values.update(overrides)
    return TelegramConfig(**values)


@contextlib.asynccontextmanager
async def running(notifier: TelegramNotifier) -> AsyncIterator[asyncio.Task[None]]:
    """Run the notifier's service for the block; cancel it after."""
    task = asyncio.create_task(notifier.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def spot_exchange_info(shared_data: Path, symbols: tuple[str, ...]) -> list[dict]:
    """Real exchangeInfo entries (2021 capture) of the symbols."""
    info = json.loads(
        (shared_data / "binance-rest" / "spot_exchangeInfo_20211012.json").read_text()
    )
    return [s for s in info["symbols"] if s["symbol"] in symbols]


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Wait until predicate() holds (a safety limit against hangs, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met within the safety limit")
        await asyncio.sleep(0.005)
