"""The Bot API calls the notifier makes, and the one function that maps aiogram's errors.

Errors are typed by what the caller must do: `TelegramRetry` (wait `retry_after_s` if Telegram
said so, else back off; `TelegramMalformed`, a getUpdates answer without update ids, is one),
`TelegramRejected` (this request will never succeed: drop it), `TelegramAuthFailed` (the token
is wrong: a person must fix it).

One update aiogram cannot validate fails its whole getUpdates answer, and the offset would never
pass it: no later command would ever arrive. So a refused answer is read again update by update;
the ones that fail come back as `IncomingUpdate(unreadable=...)`: confirm them, never handle them.

The token is part of every request URL, so every message that leaves this module is passed
through `redact` and raised `from None` (aiogram's and aiohttp's exceptions stay behind, with
whatever they captured).

aiogram takes seconds to import; it is imported here only when a notifier is started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from engine.logging import REDACTED

T = TypeVar("T")
ALLOWED_UPDATES = ["message", "callback_query"]


class TelegramError(Exception):
    """A Bot API call failed."""


class TelegramRetry(TelegramError):
    """Try again later: after retry_after_s when Telegram said so (429), else with backoff."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TelegramMalformed(TelegramRetry):
    """getUpdates answered no list of updates with ids: nothing to confirm, poll again later."""


class TelegramRejected(TelegramError):
    """Telegram refused this request (bad chat, blocked bot, malformed): never resend it."""


class TelegramAuthFailed(TelegramError):
    """The bot token is invalid or revoked: a person must set TELEGRAM_TOKEN."""


@dataclass(frozen=True, slots=True)
class IncomingUpdate:
    """A message or an inline-button press, reduced to what the command router needs."""

    update_id: int
    chat_id: int | None
    user: str  # "@name" or "id 123", for logs
    text: str  # the message text, or the button's callback data
    callback_id: str | None = None  # set for button presses
    message_id: int | None = None  # the message a pressed button belongs to
    unreadable: str | None = None  # why aiogram refused it (a schema break): skip, never handle


class BotApi(Protocol):
    async def get_me(self) -> str: ...

    async def send_message(
        self, chat_id: int, text: str, buttons: Sequence[tuple[str, str]] = ()
    ) -> int: ...

    async def edit_message_text(self, chat_id: int, message_id: int, text: str) -> None: ...

    async def answer_callback_query(self, callback_id: str, text: str = "") -> None: ...

    async def get_updates(self, offset: int | None, timeout_s: int) -> list[IncomingUpdate]: ...

    async def close(self) -> None: ...


def redact(text: str, token: str) -> str:
    """Remove the token (and its secret half, raw or URL-encoded) from a text."""
    secret = token.partition(":")[2]
    for value in (token, token.replace(":", "%3A"), token.replace(":", "%3a"), secret):
        if value and len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text


class AiogramBotApi:
    """BotApi over aiogram's Bot with an aiohttp session pointed at `api_base`."""

    def __init__(self, token: str, api_base: str, request_timeout_s: float) -> None:
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer
        from aiogram.utils.token import TokenValidationError

        self._token = token
        self._request_timeout_s = request_timeout_s
        session = AiohttpSession(
            api=TelegramAPIServer.from_base(api_base), timeout=request_timeout_s
        )
        try:
            self._bot = Bot(token, session=session)
        except TokenValidationError:
            raise TelegramAuthFailed("TELEGRAM_TOKEN is not a bot token (123456:ABC...)") from None

    def __repr__(self) -> str:
        return "AiogramBotApi()"

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        from aiogram import exceptions as tg

        try:
            return await call()
        except tg.TelegramRetryAfter as exc:
            message, retry_after = self._text(exc), float(exc.retry_after)
            raise TelegramRetry(f"{what}: {message}", retry_after) from None
        except tg.TelegramUnauthorizedError as exc:
            raise TelegramAuthFailed(f"{what}: {self._text(exc)}") from None
        except (tg.TelegramServerError, tg.TelegramNetworkError, tg.TelegramConflictError) as exc:
            # 5xx, timeouts, refused connections; 409: another poller holds the token for now
            raise TelegramRetry(f"{what}: {self._text(exc)}") from None
        except tg.TelegramAPIError as exc:  # 400, 403, 404, 413, migrated chats
            raise TelegramRejected(f"{what}: {self._text(exc)}") from None
        except tg.ClientDecodeError as exc:  # a proxy's HTML error page, a truncated body
            raise TelegramRetry(
                f"{what}: undecodable response ({type(exc.original).__name__})"
            ) from None
        except (TimeoutError, OSError) as exc:
            raise TelegramRetry(f"{what}: {type(exc).__name__}: {self._text(exc)}") from None

    def _text(self, exc: BaseException) -> str:
        message = getattr(exc, "message", None) or str(exc)
        return redact(str(message), self._token)

    async def get_me(self) -> str:
        """Return the bot's username (commands in groups are addressed as /cmd@username)."""
        me = await self._call("getMe", self._bot.get_me)
        return me.username or ""

    async def send_message(
        self, chat_id: int, text: str, buttons: Sequence[tuple[str, str]] = ()
    ) -> int:
        """Send a plain-text message (with one row of inline buttons); return its message id."""
        markup = self._markup(buttons)

        async def call() -> Any:
            return await self._bot.send_message(chat_id=chat_id, text=text, reply_markup=markup)

        message = await self._call("sendMessage", call)
        return int(message.message_id)

    async def edit_message_text(self, chat_id: int, message_id: int, text: str) -> None:
        """Replace a message's text (its inline buttons go away)."""

        async def call() -> Any:
            return await self._bot.edit_message_text(
                text=text, chat_id=chat_id, message_id=message_id
            )

        await self._call("editMessageText", call)

    async def answer_callback_query(self, callback_id: str, text: str = "") -> None:
        """Stop the button's spinner (with a short toast when text is given)."""

        async def call() -> Any:
            return await self._bot.answer_callback_query(callback_id, text=text or None)

        await self._call("answerCallbackQuery", call)

    async def get_updates(self, offset: int | None, timeout_s: int) -> list[IncomingUpdate]:
        """Long-poll for messages and button presses after offset (unreadable ones marked)."""
        from aiogram.exceptions import ClientDecodeError
        from pydantic import ValidationError

        async def call() -> list[IncomingUpdate]:
            try:
                updates = await self._bot.get_updates(
                    offset=offset,
                    timeout=timeout_s,
                    allowed_updates=ALLOWED_UPDATES,
                    request_timeout=int(timeout_s + self._request_timeout_s + 1),
                )
            except ClientDecodeError as exc:
                if not isinstance(exc.original, ValidationError):  # not even JSON
                    kind = type(exc.original).__name__
                    raise TelegramMalformed(f"getUpdates: undecodable response ({kind})") from None
                return self._read_each(exc.data)  # the JSON aiogram parsed, then refused
            return [_incoming(update) for update in updates]

        return await self._call("getUpdates", call)

    def _read_each(self, body: Any) -> list[IncomingUpdate]:
        """Validate a refused getUpdates answer update by update; mark the ones that fail."""
        from aiogram.types import Update
        from pydantic import ValidationError

        items = body.get("result") if isinstance(body, dict) and body.get("ok") is True else None
        if not isinstance(items, list) or any(_update_id(item) is None for item in items):
            # no id to confirm past; a garbled answer may come intact on the next poll
            raise TelegramMalformed("getUpdates: the answer is no list of updates with ids")
        updates = []
        for item in items:
            try:
                update = Update.model_validate(item, context={"bot": self._bot})
            except ValidationError as exc:
                reason = _schema_errors(exc)
                updates.append(
                    IncomingUpdate(item["update_id"], None, "unknown", "", unreadable=reason)
                )
                continue
            updates.append(_incoming(update))
        return updates

    async def close(self) -> None:
        await self._bot.session.close()

    @staticmethod
    def _markup(buttons: Sequence[tuple[str, str]]) -> Any:
        if not buttons:
            return None
        from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

        row = [InlineKeyboardButton(text=label, callback_data=data) for label, data in buttons]
        return InlineKeyboardMarkup(inline_keyboard=[row])


def _update_id(item: Any) -> int | None:
    update_id = item.get("update_id") if isinstance(item, dict) else None
    return update_id if type(update_id) is int else None  # a bool or "7" is no update id


def _schema_errors(exc: Any, shown: int = 4) -> str:
    """Name the fields that broke the schema, never their values (message texts stay out)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    named = [".".join(str(part) for part in e["loc"]) + f": {e['type']}" for e in errors[:shown]]
    more = f" (+{len(errors) - shown} more)" if len(errors) > shown else ""
    return "; ".join(named) + more


def _user(user: Any) -> str:
    if user is None:
        return "unknown"
    return f"@{user.username}" if user.username else f"id {user.id}"


def _incoming(update: Any) -> IncomingUpdate:
    if update.message is not None:
        message = update.message
        return IncomingUpdate(
            update.update_id,
            message.chat.id,
            _user(message.from_user),
            message.text or "",
            message_id=message.message_id,
        )
    if update.callback_query is not None:
        query = update.callback_query
        message = query.message
        return IncomingUpdate(
            update.update_id,
            message.chat.id if message is not None else None,
            _user(query.from_user),
            query.data or "",
            callback_id=query.id,
            message_id=message.message_id if message is not None else None,
        )
    return IncomingUpdate(update.update_id, None, "unknown", "")
