"""Bad getUpdates answers over real sockets: aiogram against the fake Bot API, a real App behind.

An update aiogram cannot validate (a schema break) is confirmed by the next offset, counted and
logged, never handled, and the updates around it are handled as usual. An answer with no update
ids to confirm past is counted as malformed and polled again after the usual backoff.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from notify_support import (
    CHAT,
    SECRET_HALF,
    STRANGER,
    TOKEN,
    running,
    spot_exchange_info,
    tg_config,
)
from pydantic import SecretStr
from telegram_fake import DATE, FakeTelegram, Fault

from engine.app import App
from engine.clock import ReplayClock
from engine.config import Secrets, parse_config
from engine.notify import TelegramNotifier, attach_telegram
from engine.notify.commands import HELP


@dataclass
class Bot:
    fake: FakeTelegram
    notifier: TelegramNotifier

    async def ready(self, attempts: int = 1) -> None:
        """Wait until the backlog is skipped (on this attempt): what is pushed from now on is
        handled, not skipped as pending."""
        await self.fake.wait_for(
            lambda: (
                sum(r.fields.get("offset") == "-1" for r in self.fake.calls("getUpdates"))
                >= attempts
            )
        )

    async def polled_from(self, offset: int) -> None:
        """Wait for a getUpdates that confirms every update below offset."""
        await self.fake.wait_for(
            lambda: any(
                r.fields.get("offset") == str(offset) for r in self.fake.calls("getUpdates")
            )
        )


@pytest.fixture
async def bot(shared_data: Path, fake: FakeTelegram, clock: ReplayClock) -> AsyncIterator[Bot]:
    config = parse_config({"logging": {"console": "off", "file": None}})
    app = App(
        config, clock=clock, exchange_info=spot_exchange_info(shared_data, config.market.symbols)
    )
    notifier = attach_telegram(
        app, tg_config(fake.base_url), Secrets(telegram_token=SecretStr(TOKEN))
    )
    assert notifier is not None
    async with running(notifier):
        yield Bot(fake, notifier)


def _message_without_date(chat_id: int, text: str) -> dict:
    return {"message": {"message_id": 7, "chat": {"id": chat_id, "type": "private"}, "text": text}}


async def test_an_unreadable_update_is_skipped_and_the_ones_around_it_are_handled(
    bot: Bot,
) -> None:
    fake, notifier = bot.fake, bot.notifier
    await bot.ready()
    with structlog.testing.capture_logs() as logs:
        # alone in its answer: the offset still passes it
        lone = fake._push(_message_without_date(CHAT, "/halt now"))
        await bot.polled_from(lone + 1)
        # in one answer with a stranger's command and a good one from the allowed chat
        stranger = fake.push_message(STRANGER, "/balance")
        button = fake._push(  # a press on a confirm button, without from and chat_instance
            {
                "callback_query": {
                    "id": "cb1",
                    "data": "confirm:1234",
                    "message": {
                        "message_id": 8,
                        "date": DATE,
                        "chat": {"id": CHAT, "type": "private"},
                    },
                }
            }
        )
        good = fake.push_message(CHAT, "/help")
        assert (stranger, button, good) == (lone + 1, lone + 2, lone + 3)
        await fake.wait_for(lambda: HELP in fake.sent(CHAT))
        await bot.polled_from(good + 1)

    assert fake.sent(CHAT) == [HELP]  # neither /halt nor the confirm press was acted on
    assert fake.calls("answerCallbackQuery", status=None) == []
    assert fake.sent(STRANGER) == []
    assert notifier.router is not None and notifier.router.refused == 1
    refused = [(e["chat_id"], e["command"]) for e in logs if e["event"] == "telegram_refused"]
    assert refused == [(STRANGER, "/balance")]
    unreadable = [e for e in logs if e["event"] == "telegram_update_unreadable"]
    assert [(e["update_id"], e["schema_errors"], e["log_level"]) for e in unreadable] == [
        (lone, "message.date: missing", "warning"),
        (button, "callback_query.from: missing; callback_query.chat_instance: missing", "warning"),
    ]
    assert "/halt" not in repr(unreadable) and "confirm:1234" not in repr(unreadable)
    assert TOKEN not in repr(logs) and SECRET_HALF not in repr(logs)
    health = notifier.health()
    assert (health["unreadable_updates"], health["malformed_polls"], health["poll_errors"]) == (
        2,
        0,
        0,
    )


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>502 Bad Gateway</body></html>",  # not JSON
        "[1, 2]",  # JSON, no envelope
        '{"ok": true, "result": "none"}',  # no list
        '{"ok": true, "result": [{"message": {"message_id": 1}}]}',  # no update id
        '{"ok": true, "result": [{"update_id": "5", "message": {}}]}',  # an id that is no int
    ],
)
async def test_an_answer_without_update_ids_is_malformed_and_polled_again_after_a_backoff(
    bot: Bot, body: str
) -> None:
    fake, notifier = bot.fake, bot.notifier
    fake.fail("getUpdates", Fault(200, body=body), times=2)
    await bot.ready(attempts=3)
    fake.push_message(CHAT, "/help")
    await fake.wait_for(lambda: HELP in fake.sent(CHAT))

    start = [(r.method, r.fields.get("offset"), r.stamp_ns) for r in fake.requests][:6]
    assert [(method, offset) for method, offset, _ in start] == [
        ("getMe", None),
        ("getUpdates", "-1"),  # malformed
        ("getMe", None),
        ("getUpdates", "-1"),  # malformed
        ("getMe", None),
        ("getUpdates", "-1"),
    ]
    t = [stamp for _, _, stamp in start]
    # backoff as after any failed poll: 1 s after the first, 2 s after the second (initial 1 s)
    assert (t[2] - t[1], t[4] - t[3]) == (1 * 10**9, 2 * 10**9)
    health = notifier.health()
    assert (health["malformed_polls"], health["poll_errors"], health["unreadable_updates"]) == (
        2,
        2,
        0,
    )
