"""Fixtures for the Telegram notifier tests: the fake Bot API server and a test clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from notify_support import T0_NS, TOKEN
from telegram_fake import FakeTelegram

from engine.clock import ReplayClock


@pytest.fixture
def clock() -> ReplayClock:
    return ReplayClock(T0_NS)


@pytest.fixture
async def fake(clock: ReplayClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, clock_ns=clock.now_ns) as server:
        yield server
