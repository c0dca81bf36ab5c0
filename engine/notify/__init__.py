"""Telegram alerts and commands, in their own task and queue (aiogram is imported only when used)."""

from engine.notify.config import RetryPolicy, TelegramConfig
from engine.notify.control import AppControl, EngineControl
from engine.notify.telegram import TelegramNotifier, attach_telegram

__all__ = [
    "AppControl",
    "EngineControl",
    "RetryPolicy",
    "TelegramConfig",
    "TelegramNotifier",
    "attach_telegram",
]
