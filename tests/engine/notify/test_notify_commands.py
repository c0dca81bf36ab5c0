"""Commands over real sockets: aiogram against the fake Bot API, a real paper-trading App behind.

The App is built from real exchangeInfo entries and never run (no Binance connection); its
portfolio is given fills through its public `apply`, so every answer below is known by hand:
ETH bought 1 @ 3000 (fee 3) and sold @ 3100 (fee 3.1): a closed trade of +93.90;
BTC bought 0.01 @ 60000 (fee 0.6), marked at 61000: open, +10 unrealised.
Balances: USDT 10000 - 3003 + 3096.9 - 600.6 = 9493.3, BTC 0.01; equity 9493.3 + 610 = 10103.3.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from notify_support import (
    CHAT,
    OTHER_CHAT,
    STRANGER,
    TOKEN,
    running,
    spot_exchange_info,
    tg_config,
)
from pydantic import SecretStr
from telegram_fake import FakeTelegram, Fault

from engine.app import App
from engine.clock import ReplayClock
from engine.config import Secrets, parse_config
from engine.model import Side
from engine.notify import TelegramNotifier, attach_telegram
from engine.notify.control import OPERATOR_BLOCK
from engine.orders import Liquidity, OrderFilled
from risk.state import TradingState

HOUR_MS = 3_600_000
T0_MS = 1_767_268_800_000  # 2026-01-01 12:00:00 UTC, the clock's start


def fill(
    symbol: str, side: Side, price: str, qty: str, fee: str, trade_id: int, ts_ms: int
) -> OrderFilled:
    return OrderFilled(
        symbol,
        f"fill-{trade_id}",
        trade_id,
        side,
        Decimal(price),
        Decimal(qty),
        Decimal(fee),
        "USDT",
        Liquidity.TAKER,
        ts_ms,
        True,
    )


def paper_app(shared_data: Path, clock: ReplayClock) -> App:
    config = parse_config({"logging": {"console": "off", "file": None}})
    app = App(
        config, clock=clock, exchange_info=spot_exchange_info(shared_data, config.market.symbols)
    )
    assert app.trading is not None
    portfolio = app.trading.portfolio
    portfolio.apply(fill("ETHUSDT", Side.BUY, "3000", "1", "3", 1, T0_MS - 2 * HOUR_MS))
    portfolio.apply(fill("ETHUSDT", Side.SELL, "3100", "1", "3.1", 2, T0_MS - HOUR_MS))
    portfolio.apply(fill("BTCUSDT", Side.BUY, "60000", "0.01", "0.6", 3, T0_MS - HOUR_MS // 2))
    portfolio.mark("BTCUSDT", Decimal(61000))
    return app


class Session:
    """The operator's side of the chat: send a text or press a button, read the answers."""

    def __init__(self, fake: FakeTelegram, app: App, notifier: TelegramNotifier) -> None:
        self.fake, self.app, self.notifier = fake, app, notifier

    async def ready(self) -> None:
        # the poller has skipped the backlog: what is pushed from now on gets an answer
        await self.fake.wait_for(
            lambda: any(
                r.method == "getUpdates" and r.fields.get("offset") == "-1" and r.status == 200
                for r in self.fake.requests
            )
        )

    async def say(self, text: str, chat: int = CHAT, answers: int = 1) -> list[str]:
        before = len(self.fake.sent(chat))
        self.fake.push_message(chat, text)
        await self.fake.wait_for(lambda: len(self.fake.sent(chat)) >= before + answers)
        return self.fake.sent(chat)[before:]

    async def say_until(self, text: str, prefix: str, chat: int = CHAT) -> str:
        """Send a text; return the first new message to the chat that starts with prefix."""
        before = len(self.fake.sent(chat))

        def answer() -> str | None:
            return next((m for m in self.fake.sent(chat)[before:] if m.startswith(prefix)), None)

        self.fake.push_message(chat, text)
        await self.fake.wait_for(lambda: answer() is not None)
        return answer()  # type: ignore[return-value]

    async def press(
        self, data: str, message_id: int, chat: int = CHAT, answers: int = 1
    ) -> list[str]:
        before = len(self.fake.sent(chat))
        self.fake.push_callback(chat, data, message_id)
        await self.fake.wait_for(lambda: len(self.fake.sent(chat)) >= before + answers)
        return self.fake.sent(chat)[before:]

    def last_prompt(self) -> tuple[str, int, dict]:
        """The newest confirmation prompt: its code, message id and inline keyboard."""
        message = self.fake.messages[-1]
        code = re.search(r"/confirm (\d{4})", message["text"])
        assert code is not None, message["text"]
        return code.group(1), message["message_id"], message["reply_markup"]


@pytest.fixture
async def session(
    shared_data: Path, fake: FakeTelegram, clock: ReplayClock
) -> AsyncIterator[Session]:
    app = paper_app(shared_data, clock)
    config = tg_config(fake.base_url, chat_ids=(CHAT, OTHER_CHAT))
    notifier = attach_telegram(app, config, Secrets(telegram_token=SecretStr(TOKEN)))
    assert notifier is not None
    async with running(notifier):
        s = Session(fake, app, notifier)
        await s.ready()
        yield s


async def test_every_read_command_answers(session: Session) -> None:
    assert await session.say("/status") == [
        (
            "mode paper · spot · trading ACTIVE\n"
            "entries: on\n"
            "BTCUSDT: book not synced, no model\n"
            "ETHUSDT: book not synced, no model\n"
            "equity 10,103.30 USDT · open positions 1"
        )
    ]
    assert await session.say("/positions") == [
        "BTCUSDT LONG 0.01 @ 60,000 · mark 61,000 · uPnL +10.00 · no protective orders"
    ]
    assert await session.say("/balance") == ["BTC 0.01\nUSDT 9,493.3\nequity 10,103.30 USDT"]
    assert await session.say("/profit") == [
        (
            "closed trades 1 · wins 1 (100 %)\n"
            "closed PnL +93.90 USDT (net of fees and funding)\n"
            "fees 6.70 · funding +0.00\n"
            "unrealised +10.00\n"
            "equity 10,103.30 USDT (+1.03 % since start)"
        )
    ]
    assert await session.say("/daily") == [
        (
            "2025-12-26: trades 0 · PnL +0.00\n"
            "2025-12-27: trades 0 · PnL +0.00\n"
            "2025-12-28: trades 0 · PnL +0.00\n"
            "2025-12-29: trades 0 · PnL +0.00\n"
            "2025-12-30: trades 0 · PnL +0.00\n"
            "2025-12-31: trades 0 · PnL +0.00\n"
            "2026-01-01: trades 1 · PnL +93.90"
        )
    ]
    assert await session.say("/performance") == ["ETHUSDT: trades 1 · wins 1 · PnL +93.90"]
    assert await session.say("/signals") == ["No model scores: no verified model bundle is loaded."]
    (help_text,) = await session.say("/help")
    for command in (
        "/status",
        "/positions",
        "/balance",
        "/profit",
        "/daily",
        "/performance",
        "/signals",
        "/stopentry",
        "/start",
        "/halt",
        "/flatten",
        "/reload",
        "/confirm",
    ):
        assert f"\n{command} " in help_text
    assert await session.say("/frobnicate") == [
        "Unknown command /frobnicate. /help lists the commands."
    ]
    # addressed to this bot by name, in any case
    assert (await session.say("/PERFORMANCE@tickloop_test_bot")) == [
        "ETHUSDT: trades 1 · wins 1 · PnL +93.90"
    ]


async def test_commands_for_another_bot_and_chatter_are_ignored(session: Session) -> None:
    session.fake.push_message(CHAT, "/status@some_other_bot")
    session.fake.push_message(CHAT, "good morning")
    assert await session.say("/performance") == ["ETHUSDT: trades 1 · wins 1 · PnL +93.90"]


async def test_unknown_chats_are_refused_logged_and_never_answered(session: Session) -> None:
    fake = session.fake
    with structlog.testing.capture_logs() as logs:
        fake.push_message(STRANGER, "/balance")
        fake.push_message(STRANGER, "/halt now")
        fake.push_callback(STRANGER, "confirm:1234", message_id=7)
        # the allowed chat's command after them is answered: the three were handled before it
        await session.say("/signals")
    refused = [e for e in logs if e["event"] == "telegram_refused"]
    assert [(e["chat_id"], e["command"], e["button"]) for e in refused] == [
        (STRANGER, "/balance", False),
        (STRANGER, "/halt", False),
        (STRANGER, "confirm:1234", True),
    ]
    assert all(e["log_level"] == "warning" for e in refused)
    assert fake.sent(STRANGER) == []
    assert not any(r.fields.get("chat_id") == str(STRANGER) for r in fake.requests)
    assert fake.calls("answerCallbackQuery", status=None) == []
    assert session.app.trading.gate.trading_state is TradingState.ACTIVE  # type: ignore[union-attr]
    assert session.notifier.router.refused == 3  # type: ignore[union-attr]


async def test_halt_asks_then_runs_on_confirm(session: Session) -> None:
    trading = session.app.trading
    assert trading is not None
    (prompt,) = await session.say("/halt too volatile")
    code, _, keyboard = session.last_prompt()
    assert prompt == (
        "Confirm /halt too volatile? Trading becomes HALTED: no new entries or adds until /start.\n"
        f"Tap a button or send /confirm {code} within 60 s."
    )
    assert keyboard == {
        "inline_keyboard": [
            [
                {"text": "✅ Confirm", "callback_data": f"confirm:{code}"},
                {"text": "✖ Cancel", "callback_data": f"cancel:{code}"},
            ]
        ]
    }
    assert trading.gate.trading_state is TradingState.ACTIVE  # nothing happens before the answer
    # (the trading loop may announce the transition too; the reply is what is checked here)
    assert await session.say_until(f"/confirm {code}", "/halt:") == (
        "/halt: Trading HALTED (MANUAL_HALT): new entries and adds are refused, working entry "
        "orders are cancelled, open positions keep their stops and targets. /start resumes."
    )
    assert trading.gate.trading_state is TradingState.HALTED
    assert [(t.to_state, t.detail) for t in trading.stats.transitions] == [
        (TradingState.HALTED, "manual halt: too volatile")
    ]
    # a code works once
    assert await session.say_until(f"/confirm {code}", "No pending") == (
        f"No pending command with code {code}: it expired or was done."
    )
    # /start asks too, and resumes
    await session.say("/start")
    code, _, _ = session.last_prompt()
    assert await session.say_until(f"/confirm {code}", "/start:") == (
        "/start: Entries resumed. Trading ACTIVE (was HALTED)."
    )
    assert trading.gate.trading_state is TradingState.ACTIVE
    assert trading.stats.transitions[-1].detail == "manual resume: Telegram"


async def test_buttons_cancel_and_confirm(session: Session) -> None:
    fake, trading = session.fake, session.app.trading
    assert trading is not None
    (prompt,) = await session.say("/stopentry")
    code, message_id, _ = session.last_prompt()
    assert await session.press(f"cancel:{code}", message_id) == ["Cancelled /stopentry."]
    assert trading.blocked == {}
    edits = fake.calls("editMessageText")
    assert [(e.fields["message_id"], e.fields["text"]) for e in edits] == [
        (str(message_id), f"{prompt}\n→ cancelled")
    ]
    assert [c.fields.get("text") for c in fake.calls("answerCallbackQuery")] == ["Cancelled"]
    # confirming the cancelled code does nothing
    assert await session.press(f"confirm:{code}", message_id) == [
        f"No pending command with code {code}: it expired or was done."
    ]
    assert fake.calls("answerCallbackQuery")[-1].fields.get("text") == "Expired"
    assert trading.blocked == {}

    await session.say("/stopentry")
    code, message_id, _ = session.last_prompt()
    assert await session.press(f"confirm:{code}", message_id) == [
        (
            "/stopentry: Entries stopped for BTCUSDT, ETHUSDT. Open positions keep their stops and "
            "targets. /start resumes."
        )
    ]
    assert trading.blocked == {"BTCUSDT": OPERATOR_BLOCK, "ETHUSDT": OPERATOR_BLOCK}
    assert fake.calls("answerCallbackQuery")[-1].fields.get("text") == "Confirmed"
    status = (await session.say("/status"))[0]
    assert "\nentries stopped by operator: BTCUSDT, ETHUSDT\n" in status


async def test_confirmation_times_out(session: Session, clock: ReplayClock) -> None:
    trading = session.app.trading
    assert trading is not None
    await session.say("/halt")
    code, message_id, _ = session.last_prompt()
    clock.advance_to(clock.now_ns() + 59 * 10**9)
    await session.say("/flatten")  # still pending after 59 s; another prompt meanwhile
    flatten_code, _, _ = session.last_prompt()
    clock.advance_to(clock.now_ns() + 2 * 10**9)  # 61 s after /halt
    assert await session.say(f"/confirm {code}") == [
        f"No pending command with code {code}: it expired or was done."
    ]
    assert await session.press(f"confirm:{code}", message_id) == [
        f"No pending command with code {code}: it expired or was done."
    ]
    assert session.fake.calls("editMessageText")[-1].fields["text"] == (
        "Confirmation\n→ expired or already answered"
    )
    assert trading.gate.trading_state is TradingState.ACTIVE
    # /flatten (2 s old) is still good: it sends the exit at market
    assert await session.say(f"/confirm {flatten_code}") == [
        (
            "/flatten: Closing at market: BTCUSDT 0.01. Their protective orders are cancelled; "
            "new entries stay allowed (/halt or /stopentry to stop them)."
        )
    ]
    assert trading.stats.denied == 0


async def test_a_code_only_works_in_its_own_chat(session: Session) -> None:
    await session.say("/reload")
    code, _, _ = session.last_prompt()
    assert await session.say(f"/confirm {code}", chat=OTHER_CHAT) == [
        f"No pending command with code {code}: it expired or was done."
    ]
    assert await session.say("/cancel") == ["Cancelled /reload."]
    assert await session.say("/cancel") == ["Nothing to cancel."]


async def test_commands_sent_while_down_are_skipped(
    shared_data: Path, fake: FakeTelegram, clock: ReplayClock
) -> None:
    fake.push_message(CHAT, "/halt")
    fake.push_message(CHAT, "/status")
    app = paper_app(shared_data, clock)
    notifier = attach_telegram(
        app, tg_config(fake.base_url), Secrets(telegram_token=SecretStr(TOKEN))
    )
    assert notifier is not None
    async with running(notifier):
        session = Session(fake, app, notifier)
        await session.ready()
        assert await session.say("/performance") == ["ETHUSDT: trades 1 · wins 1 · PnL +93.90"]
    assert len(fake.sent(CHAT)) == 1
    assert [r.fields.get("offset") for r in fake.calls("getUpdates")][:1] == ["-1"]


async def test_polling_recovers_from_telegram_errors(
    shared_data: Path, fake: FakeTelegram, clock: ReplayClock
) -> None:
    fake.fail("getMe", Fault(502, "Bad Gateway"))
    fake.fail("getUpdates", Fault(429, "Too Many Requests: retry after 3", retry_after=3))
    fake.fail("getUpdates", Fault(500, "Internal Server Error"))
    app = paper_app(shared_data, clock)
    notifier = attach_telegram(
        app, tg_config(fake.base_url), Secrets(telegram_token=SecretStr(TOKEN))
    )
    assert notifier is not None
    async with running(notifier):
        session = Session(fake, app, notifier)
        await session.ready()
        assert await session.say("/performance") == ["ETHUSDT: trades 1 · wins 1 · PnL +93.90"]
    start = [(r.method, r.status, r.stamp_ns) for r in fake.requests][:7]
    assert [(m, status) for m, status, _ in start] == [
        ("getMe", 502),
        ("getMe", 200),
        ("getUpdates", 429),
        ("getMe", 200),
        ("getUpdates", 500),
        ("getMe", 200),
        ("getUpdates", 200),
    ]
    t = [stamp for _, _, stamp in start]
    # waits: backoff 1 s after the first failure, Telegram's 3 s, backoff 4 s after the third
    assert (t[1] - t[0], t[3] - t[2], t[5] - t[4]) == (1 * 10**9, 3 * 10**9, 4 * 10**9)
    assert notifier.stats.poll_errors == 3
