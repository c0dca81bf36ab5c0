"""Delivery over real sockets to the fake Bot API: retry_after, backoff, drops, a dead server, redaction.

The notifier sleeps on a ReplayClock, so a 7 s retry_after costs no real time and the fake's
request stamps (read from the same clock) show exactly how long the notifier waited.
"""

from __future__ import annotations

import itertools
import logging
import socket
import traceback
from decimal import Decimal

import pytest
import structlog
from notify_support import CHAT, OTHER_CHAT, SECRET_HALF, TOKEN, running, tg_config, wait_until
from pydantic import SecretStr
from telegram_fake import FakeTelegram, Fault

from engine.app import App
from engine.clock import ReplayClock
from engine.config import ConfigError, Secrets, parse_config
from engine.notices import MismatchNotice, SignalNotice, TradeNotice
from engine.notify import TelegramNotifier, attach_telegram
from engine.notify.botapi import AiogramBotApi, redact

T_MS = 1_767_268_800_000
ENTRY = TradeNotice(
    symbol="BTCUSDT",
    ts_ms=T_MS,
    kind="entry",
    side="BUY",
    price=Decimal(60000),
    quantity=Decimal("0.01"),
    reason="test entry",
    score=0.3,
    threshold=0.25,
    bundle_id="b1",
)
ENTRY_TEXT = (
    "🟢 ENTRY BTCUSDT BUY 0.01 @ 60,000 (12:00:00 UTC)\nreason: test entry\n"
    "score +0.30 · threshold 0.25 · model b1"
)


def mismatch(i: int) -> MismatchNotice:
    return MismatchNotice(T_MS, "BTCUSDT", f"difference {i}")


def notifier_for(base_url: str, clock: ReplayClock, **overrides: object) -> TelegramNotifier:
    config = tg_config(base_url, commands=False, **overrides)
    return TelegramNotifier(
        config, lambda: AiogramBotApi(TOKEN, config.api_base, config.request_timeout_s), clock=clock
    )


def stamps(fake: FakeTelegram) -> list[int]:
    return [r.stamp_ns for r in fake.calls("sendMessage", status=None)]  # type: ignore[misc]


async def test_alert_from_app_notify_reaches_every_chat(
    fake: FakeTelegram, clock: ReplayClock
) -> None:
    app = App(
        parse_config({"mode": "testnet", "logging": {"console": "off", "file": None}}), clock=clock
    )
    config = tg_config(fake.base_url, chat_ids=(CHAT, OTHER_CHAT), commands=False)
    notifier = attach_telegram(app, config, Secrets(telegram_token=SecretStr(TOKEN)))
    assert notifier is not None and app.notice_listeners == [notifier]
    assert [name for name, _ in app._services] == ["telegram"]
    async with running(notifier):
        app.notify(ENTRY)
        # the fake records a request before the notifier has read its answer: wait for both
        await fake.wait_for(lambda: len(fake.sent()) == 2 and notifier.stats.sent == 2)
    assert fake.sent(CHAT) == [ENTRY_TEXT]
    assert fake.sent(OTHER_CHAT) == [ENTRY_TEXT]
    assert notifier.stats.sent == 2


async def test_429_retry_after_is_waited_out(fake: FakeTelegram, clock: ReplayClock) -> None:
    fake.fail("sendMessage", Fault(429, "Too Many Requests: retry after 7", retry_after=7))
    notifier = notifier_for(fake.base_url, clock)
    async with running(notifier):
        notifier(ENTRY)
        await fake.wait_for(lambda: len(fake.sent()) == 1)
    assert [r.status for r in fake.calls("sendMessage", status=None)] == [429, 200]
    first, second = stamps(fake)
    assert second - first == 7 * 10**9  # exactly the wait Telegram asked for, no backoff on top
    assert fake.sent() == [ENTRY_TEXT]
    assert (notifier.stats.rate_limited, notifier.stats.retries, notifier.stats.failed) == (1, 0, 0)


async def test_5xx_is_retried_with_exponential_backoff(
    fake: FakeTelegram, clock: ReplayClock
) -> None:
    fake.fail("sendMessage", Fault(502, "Bad Gateway"))
    fake.fail("sendMessage", Fault(502, body="<html>502 Bad Gateway</html>"))  # a proxy's page
    fake.fail("sendMessage", Fault(500, "Internal Server Error"))
    notifier = notifier_for(fake.base_url, clock)
    async with running(notifier):
        notifier(ENTRY)
        await fake.wait_for(lambda: len(fake.sent()) == 1)
    assert [r.status for r in fake.calls("sendMessage", status=None)] == [502, 502, 500, 200]
    t = stamps(fake)
    assert [b - a for a, b in itertools.pairwise(t)] == [1 * 10**9, 2 * 10**9, 4 * 10**9]
    assert (notifier.stats.retries, notifier.stats.sent, notifier.stats.failed) == (3, 1, 0)


async def test_gives_up_after_max_attempts_and_goes_on(
    fake: FakeTelegram, clock: ReplayClock
) -> None:
    fake.fail("sendMessage", Fault(503, "Service Unavailable"), times=4)  # max_attempts is 4
    notifier = notifier_for(fake.base_url, clock)
    async with running(notifier):
        notifier(ENTRY)
        notifier(mismatch(1))
        await fake.wait_for(lambda: len(fake.sent()) == 1)
    assert [r.status for r in fake.calls("sendMessage", status=None)] == [503] * 4 + [200]
    assert fake.sent() == ["❗ Reconciliation mismatch BTCUSDT (12:00:00 UTC)\ndifference 1"]
    assert (notifier.stats.failed, notifier.stats.retries) == (1, 3)


async def test_4xx_is_not_retried(fake: FakeTelegram, clock: ReplayClock) -> None:
    fake.fail("sendMessage", Fault(400, "Bad Request: chat not found"))
    fake.fail("sendMessage", Fault(403, "Forbidden: bot was blocked by the user"))
    notifier = notifier_for(fake.base_url, clock)
    async with running(notifier):
        for i in range(3):
            notifier(mismatch(i))
        await fake.wait_for(lambda: len(fake.sent()) == 1)
    assert [r.status for r in fake.calls("sendMessage", status=None)] == [400, 403, 200]
    assert fake.sent() == ["❗ Reconciliation mismatch BTCUSDT (12:00:00 UTC)\ndifference 2"]
    assert (notifier.stats.rejected, notifier.stats.retries) == (2, 0)


async def test_a_hanging_telegram_times_out_and_is_retried(
    fake: FakeTelegram, clock: ReplayClock
) -> None:
    fake.fail("sendMessage", Fault(500, "too late", delay_s=0.5))  # answers after we gave up
    notifier = notifier_for(fake.base_url, clock, request_timeout_s=0.05)
    async with running(notifier):
        notifier(ENTRY)
        # the fake records the text before it answers: wait for the notifier to have the answer
        await fake.wait_for(lambda: len(fake.sent()) == 1 and notifier.stats.sent == 1)
    assert fake.sent() == [ENTRY_TEXT]
    assert (notifier.stats.retries, notifier.stats.sent, notifier.stats.failed) == (1, 1, 0)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_telegram_never_holds_up_notify(clock: ReplayClock) -> None:
    app = App(
        parse_config({"mode": "testnet", "logging": {"console": "off", "file": None}}), clock=clock
    )
    config = tg_config(f"http://127.0.0.1:{closed_port()}", commands=False, queue_size=10)
    notifier = attach_telegram(app, config, Secrets(telegram_token=SecretStr(TOKEN)))
    assert notifier is not None
    queue = notifier.queue
    with structlog.testing.capture_logs() as logs:
        async with running(notifier):
            app.notify(mismatch(0))
            # the sender has taken it and is retrying against the dead port
            await wait_until(lambda: notifier.stats.retries >= 2)
            assert len(queue) == 0
            # between two awaits of the sender: all of this runs without yielding to it
            for i in range(15):
                app.notify(SignalNotice(f"C{i}USDT", T_MS, 0.9, 0.5, 1.0))
                assert len(queue) <= 10
            for i in range(1, 13):
                app.notify(mismatch(i))
                assert len(queue) <= 10
            app.notify(SignalNotice("LATEUSDT", T_MS, 0.9, 0.5, 1.0))
            # 15 signals: 10 queued, 5 pushed out; 12 alerts push out the 10 signals, then 2
            # alerts; the last signal finds only alerts and is dropped itself
            assert len(queue) == 10
            assert [m.text.split("\n")[1] for m in queue.pending()] == [
                f"difference {i}" for i in range(3, 13)
            ]
            assert (queue.stats.dropped_low, queue.stats.dropped_high) == (16, 2)
    assert notifier.stats.sent == 0
    full = [e for e in logs if e["event"] == "telegram_queue_full"]
    assert full and full[0]["capacity"] == 10


async def test_the_token_never_leaves(
    fake: FakeTelegram,
    clock: ReplayClock,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    # faults whose descriptions quote the request path, as some proxies do: the path has the token
    fake.fail("sendMessage", Fault(500, "Internal Server Error", echo_path=True))
    fake.fail("sendMessage", Fault(404, "Not Found", echo_path=True))
    notifier = notifier_for(fake.base_url, clock)
    with structlog.testing.capture_logs() as logs:
        async with running(notifier):
            notifier(mismatch(1))
            notifier(mismatch(2))
            await fake.wait_for(lambda: len(fake.calls("sendMessage", status=None)) == 3)
    logged = repr(logs)
    # (booleans, not the texts, go into the asserts: a failure must not print the token)
    redacted_path_logged = "/bot***/sendMessage" in logged  # the description arrived, redacted
    assert redacted_path_logged
    # a bot on another token (a revoked one): 401 from the fake
    wrong = AiogramBotApi("987654321:AAHanotherSecretTokenValue_xyz123", fake.base_url, 5)
    api = AiogramBotApi(TOKEN, fake.base_url, 5)
    fake.fail("sendMessage", Fault(400, "Bad Request", echo_path=True))
    fake.fail("sendMessage", Fault(502, "Bad Gateway", echo_path=True))
    dead = AiogramBotApi(TOKEN, f"http://127.0.0.1:{closed_port()}", 5)
    errors: list[BaseException] = []
    for call in (
        lambda: wrong.send_message(CHAT, "x"),
        lambda: api.send_message(CHAT, "x"),
        lambda: api.send_message(CHAT, "x"),
        dead.get_me,
    ):
        try:
            await call()
        except Exception as exc:  # noqa: BLE001 - collected and checked below
            errors.append(exc)
    for bot in (wrong, api, dead):
        await bot.close()
    assert [type(e).__name__ for e in errors] == [
        "TelegramAuthFailed",
        "TelegramRejected",
        "TelegramRetry",
        "TelegramRetry",
    ]
    shown = "".join("".join(traceback.format_exception(e)) for e in errors)
    shown += logged + caplog.text + repr(notifier) + repr(api) + repr(notifier.health())
    out = capsys.readouterr()
    shown += out.out + out.err
    leaked = [
        name
        for name, secret in (
            ("token", TOKEN),
            ("secret half", SECRET_HALF),
            ("other token", "AHanotherSecretTokenValue"),
        )
        if secret in shown
    ]
    assert leaked == []


def test_redact() -> None:
    text = f"POST /bot{TOKEN}/getMe; /bot{TOKEN.replace(':', '%3A')}/x; secret {SECRET_HALF}"
    assert redact(text, TOKEN) == "POST /bot***/getMe; /bot***/x; secret ***"


def test_attach_refuses_a_missing_or_malformed_token() -> None:
    app = App(parse_config({"mode": "testnet", "logging": {"console": "off", "file": None}}))
    config = tg_config("http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="TELEGRAM_TOKEN is not set"):
        attach_telegram(app, config, Secrets())
    bad = "not-a-token-but-secret-words"
    with pytest.raises(ConfigError) as raised:
        attach_telegram(app, config, Secrets(telegram_token=SecretStr(bad)))
    assert bad not in str(raised.value)
    assert attach_telegram(app, tg_config("http://127.0.0.1:1", enabled=False), Secrets()) is None
    assert app.notice_listeners == [] and app._services == []
