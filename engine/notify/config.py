"""The `telegram:` section of config.yaml. The bot token is a secret: TELEGRAM_TOKEN, never here."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RetryPolicy(_Frozen):
    """How a failed Bot API call is retried; a 429's retry_after is always waited out, uncounted."""

    max_attempts: Annotated[int, Field(ge=1, le=100)] = 6
    backoff_initial_s: Annotated[float, Field(gt=0)] = 1.0
    backoff_max_s: Annotated[float, Field(gt=0)] = 60.0

    def backoff_s(self, failures: int) -> float:
        """Return the wait after the n-th consecutive failure (1-based): initial * 2^(n-1), capped."""
        # the exponent is capped too: 2 ** 1024 does not convert to a float (OverflowError after
        # ~1,000 failed polls, i.e. hours of an unreachable Telegram, ended the whole notifier)
        return min(self.backoff_initial_s * 2.0 ** min(failures - 1, 60), self.backoff_max_s)


class TelegramConfig(_Frozen):
    """Telegram alerts and commands; off unless `enabled` and TELEGRAM_TOKEN is set."""

    enabled: bool = False
    # the only chats that receive alerts and whose commands are obeyed (private chat id = user id)
    chat_ids: tuple[int, ...] = ()
    api_base: str = "https://api.telegram.org"
    commands: bool = True  # poll getUpdates and answer commands
    signals: bool = True  # send signal notifications (`₿ 60,518 📉📉📉 Score: -0.26`)
    # |score| at which a signal gets its first icon; one more icon per signal_step beyond it.
    # null: each notice's own threshold (the model's), for scores that are confidences
    signal_threshold: Annotated[float, Field(gt=0, lt=1)] | None = 0.15
    signal_step: Annotated[float, Field(gt=0, le=1)] = 0.05
    signal_max_icons: Annotated[int, Field(ge=1, le=20)] = 10
    # the same symbol at the same icon level is not repeated within this many seconds
    signal_repeat_s: Annotated[float, Field(ge=0)] = 300.0
    queue_size: Annotated[int, Field(ge=10, le=100_000)] = 1000
    retry: RetryPolicy = RetryPolicy()
    confirmation_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    poll_timeout_s: Annotated[int, Field(ge=0, le=50)] = 25  # getUpdates long-polling wait
    request_timeout_s: Annotated[float, Field(gt=0)] = 15.0  # per call, on top of the long poll
    # ignore commands sent while the engine was down (they would act on a stale decision)
    skip_pending_updates: bool = True

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s):// URL")
        return value.rstrip("/")

    @field_validator("chat_ids", mode="before")
    @classmethod
    def _chat_ids_are_a_list(cls, value: object) -> object:
        if isinstance(value, int | str):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a config problem
                "must be a list of chat ids, e.g. [123456789]"
            )
        return value

    @field_validator("chat_ids")
    @classmethod
    def _unique_chat_ids(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        duplicates = sorted({c for c in value if value.count(c) > 1})
        if duplicates:
            raise ValueError(f"duplicate chat ids: {', '.join(map(str, duplicates))}")
        return value

    def icon_threshold(self, notice_threshold: float) -> float:
        """Return the |score| of the first icon: signal_threshold, or the notice's own."""
        return notice_threshold if self.signal_threshold is None else self.signal_threshold

    @model_validator(mode="after")
    def _enabled_needs_chats(self) -> TelegramConfig:
        if self.enabled and not self.chat_ids:
            raise ValueError("chat_ids: must name at least one chat when telegram is enabled")
        return self
