"""The Telegram notifier: a notice listener that never blocks, and the service that talks to Telegram.

    App.notify(notice) ─► TelegramNotifier(notice) ─► format ─► OutboundQueue (bounded, put only)
    run():  sender  ─ queue.get ─► sendMessage / editMessageText, retry_after and backoff
            poller  ─ getUpdates (long poll, offset) ─► CommandRouter ─► replies into the queue

The listener only formats and queues, so a slow or unreachable Telegram costs the trading loop
nothing but, when the queue is full, the oldest signal. `run()` is one App service; it returns
only when cancelled (or at once when the token is refused) and never raises into the App's
TaskGroup: a notifier problem must not stop trading.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import structlog

from engine.clock import Clock
from engine.config import ConfigError, Secrets
from engine.notices import Notice, SignalNotice
from engine.notify.botapi import (
    AiogramBotApi,
    BotApi,
    IncomingUpdate,
    TelegramAuthFailed,
    TelegramMalformed,
    TelegramRejected,
    TelegramRetry,
)
from engine.notify.commands import CommandRouter
from engine.notify.config import TelegramConfig
from engine.notify.control import AppControl, EngineControl
from engine.notify.format import (
    SignalThrottle,
    fit_message,
    format_notice,
    format_signal,
    signal_level,
)
from engine.notify.queue import Outbound, OutboundQueue, Priority

if TYPE_CHECKING:
    from engine.app import App

TOKEN_SHAPE = re.compile(r"^\d+:\S+$")  # what aiogram accepts: bot id, colon, secret
DROP_LOG_EVERY = 100


@dataclass
class NotifierStats:
    sent: int = 0
    failed: int = 0  # given up after max_attempts, or the token was refused
    rejected: int = 0  # Telegram refused the message itself (4xx)
    retries: int = 0  # backoff retries after 5xx / network errors
    rate_limited: int = 0  # 429s waited out
    poll_errors: int = 0
    malformed_polls: int = 0  # getUpdates answers with no update ids (also poll_errors)
    unreadable_updates: int = 0  # updates aiogram refused (schema breaks): confirmed, skipped


class TelegramNotifier:
    """Queue alerts for the allowlisted chats; send them and answer commands in `run()`."""

    def __init__(
        self,
        config: TelegramConfig,
        api_factory: Callable[[], BotApi],
        *,
        clock: Clock,
        control: EngineControl | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.queue = OutboundQueue(config.queue_size)
        self.stats = NotifierStats()
        self.log = structlog.get_logger("engine.notify")
        self.router = (
            CommandRouter(
                control, config.chat_ids, clock.monotonic_ns, config.confirmation_timeout_s
            )
            if control is not None and config.commands
            else None
        )
        self._api_factory = api_factory
        self._throttle = SignalThrottle(int(config.signal_repeat_s * 1000))
        self.offset: int | None = None  # next getUpdates offset

    def __repr__(self) -> str:
        return f"TelegramNotifier(chats={len(self.config.chat_ids)}, queued={len(self.queue)})"

    # -- the listener: called by App.notify on the trading loop; formats and queues only ----
    def __call__(self, notice: Notice) -> None:
        """Queue the alert text of a notice for every allowed chat (never blocks, never awaits)."""
        if isinstance(notice, SignalNotice):
            text = self._signal_text(notice)
            priority = Priority.LOW
        else:
            text = format_notice(notice)
            priority = Priority.HIGH
        if text is None:
            return
        for chat_id in self.config.chat_ids:
            self._enqueue(Outbound(chat_id, fit_message(text), priority))

    def _signal_text(self, notice: SignalNotice) -> str | None:
        cfg = self.config
        if not cfg.signals:
            return None
        level = signal_level(
            notice.score,
            cfg.icon_threshold(notice.threshold),
            cfg.signal_step,
            cfg.signal_max_icons,
        )
        if not self._throttle.should_say(notice.symbol, level, notice.ts_ms):
            return None
        return format_signal(notice, level)

    def _enqueue(self, message: Outbound) -> None:
        dropped = self.queue.put(message)
        if dropped is not None:
            total = self.queue.stats.dropped
            if total == 1 or total % DROP_LOG_EVERY == 0:
                self.log.warning(
                    "telegram_queue_full",
                    capacity=self.queue.capacity,
                    dropped_low=self.queue.stats.dropped_low,
                    dropped_high=self.queue.stats.dropped_high,
                )

    def health(self) -> dict:
        """Return the notifier's counters (for the heartbeat line)."""
        return dict(
            queued=len(self.queue),
            dropped_low=self.queue.stats.dropped_low,
            dropped_high=self.queue.stats.dropped_high,
            **asdict(self.stats),
        )

    # -- the service -------------------------------------------------------------------------
    async def run(self) -> None:
        """Send queued messages and answer commands until cancelled (never raises otherwise)."""
        try:
            api = self._api_factory()
        except TelegramAuthFailed as exc:
            self.log.error("telegram_disabled", reason=str(exc))
            return
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_loop(api), name="telegram-send")
                if self.router is not None:
                    tg.create_task(self._poll_loop(api), name="telegram-poll")
        except Exception:  # a bug here must end only the notifier, never the App's TaskGroup
            self.log.exception("telegram_notifier_failed")
        finally:
            try:
                await api.close()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                self.log.info("telegram_close_failed", error=type(exc).__name__)

    async def _send_loop(self, api: BotApi) -> None:
        while True:
            message = await self.queue.get()
            try:
                await self._deliver(api, message)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.failed += 1
                self.log.exception("telegram_send_bug", chat_id=message.chat_id)

    async def _deliver(self, api: BotApi, message: Outbound) -> None:
        """Send one message: wait out 429s, back off on 5xx/network errors, drop on 4xx."""
        retry = self.config.retry
        failures = 0
        while True:
            try:
                if message.edit_message_id is not None:
                    await api.edit_message_text(
                        message.chat_id, message.edit_message_id, message.text
                    )
                else:
                    await api.send_message(message.chat_id, message.text, message.buttons)
                self.stats.sent += 1
                return
            except TelegramRetry as exc:
                if exc.retry_after_s is not None:
                    self.stats.rate_limited += 1
                    self.log.warning(
                        "telegram_rate_limited",
                        retry_after_s=exc.retry_after_s,
                        queued=len(self.queue),
                    )
                    await self.clock.sleep(exc.retry_after_s)
                    continue
                failures += 1
                if failures >= retry.max_attempts:
                    self.stats.failed += 1
                    self.log.error(
                        "telegram_send_failed",
                        chat_id=message.chat_id,
                        attempts=failures,
                        error=str(exc),
                    )
                    return
                self.stats.retries += 1
                wait_s = retry.backoff_s(failures)
                self.log.info(
                    "telegram_send_retry", attempt=failures, wait_s=wait_s, error=str(exc)
                )
                await self.clock.sleep(wait_s)
            except TelegramRejected as exc:
                self.stats.rejected += 1
                self.log.warning("telegram_send_rejected", chat_id=message.chat_id, error=str(exc))
                return
            except TelegramAuthFailed as exc:
                self.stats.failed += 1
                self.log.error("telegram_auth_failed", error=str(exc))
                await self.clock.sleep(retry.backoff_max_s)  # no point hammering with a bad token
                return

    async def _poll_loop(self, api: BotApi) -> None:
        assert self.router is not None
        failures = 0
        started = False
        while True:
            try:
                if not started:
                    await self._start_polling(api)
                    started = True
                updates = await api.get_updates(self.offset, self.config.poll_timeout_s)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - polling recovers from anything, after a wait
                failures += 1
                self.stats.poll_errors += 1
                self.stats.malformed_polls += isinstance(exc, TelegramMalformed)
                await self.clock.sleep(self._poll_wait_s(exc, failures))
                continue
            for update in updates:
                self.offset = max(self.offset or 0, update.update_id + 1)
                if update.unreadable is not None:  # confirmed by the offset, never handled
                    self.stats.unreadable_updates += 1
                    self.log.warning(
                        "telegram_update_unreadable",
                        update_id=update.update_id,
                        schema_errors=update.unreadable,
                    )
                    continue
                try:
                    await self._handle(api, update)
                except Exception:  # one bad update must not stop the commands
                    self.log.exception("telegram_update_failed", update_id=update.update_id)

    def _poll_wait_s(self, exc: Exception, failures: int) -> float:
        """Log a failed poll; return the wait before the next (Telegram's retry_after first)."""
        retry = self.config.retry
        if isinstance(exc, TelegramRetry):
            wait_s = (
                exc.retry_after_s if exc.retry_after_s is not None else retry.backoff_s(failures)
            )
            self.log.warning("telegram_poll_failed", error=str(exc), wait_s=wait_s)
        elif isinstance(exc, TelegramAuthFailed | TelegramRejected):
            wait_s = retry.backoff_max_s
            self.log.error("telegram_poll_failed", error=str(exc), wait_s=wait_s)
        else:
            wait_s = retry.backoff_s(failures)
            self.log.exception("telegram_poll_bug", wait_s=wait_s)
        return wait_s

    async def _start_polling(self, api: BotApi) -> None:
        assert self.router is not None
        self.router.bot_username = await api.get_me()
        if self.config.skip_pending_updates and self.offset is None:
            # offset -1 returns only the newest update and confirms every older one
            backlog = await api.get_updates(-1, 0)
            if backlog:
                self.offset = backlog[-1].update_id + 1
                self.log.info("telegram_skipped_pending_updates", next_offset=self.offset)
        self.log.info("telegram_polling", bot=self.router.bot_username)

    async def _handle(self, api: BotApi, update: IncomingUpdate) -> None:
        assert self.router is not None
        handled = self.router.handle(update)
        if handled.callback_answer is not None and update.callback_id is not None:
            # first, and once: it stops the button's spinner; a lost answer only leaves it spinning
            try:
                await api.answer_callback_query(update.callback_id, handled.callback_answer)
            except (TelegramRetry, TelegramRejected, TelegramAuthFailed) as exc:
                self.log.info("telegram_callback_answer_failed", error=str(exc))
        for reply in handled.replies:
            self._enqueue(reply)


def attach_telegram(app: App, config: TelegramConfig, secrets: Secrets) -> TelegramNotifier | None:
    """Register a notifier as the App's notice listener and service; None when disabled."""
    if not config.enabled:
        return None
    if secrets.telegram_token is None:
        raise ConfigError(
            ["telegram.enabled: TELEGRAM_TOKEN is not set in the environment or .env"]
        )
    token = secrets.telegram_token.get_secret_value()
    if not TOKEN_SHAPE.match(token):
        raise ConfigError(
            ["TELEGRAM_TOKEN: not a bot token (expected digits:secret from @BotFather)"]
        )

    def api() -> BotApi:
        return AiogramBotApi(token, config.api_base, config.request_timeout_s)

    notifier = TelegramNotifier(config, api, clock=app.clock, control=AppControl(app, config))
    app.notice_listeners.append(notifier)
    app.add_service("telegram", notifier.run)
    return notifier
