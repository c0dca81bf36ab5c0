"""Telegram alerts and commands, in their own task and queue (aiogram is imported only when used).

Only the config is imported eagerly: engine/config.py embeds `TelegramConfig`, and the notifier
modules import engine.config, so importing them here would be circular.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.notify.config import RetryPolicy, TelegramConfig

if TYPE_CHECKING:
    from engine.notify.control import AppControl, EngineControl
    from engine.notify.telegram import TelegramNotifier, attach_telegram

_LAZY = {
    "AppControl": "engine.notify.control",
    "EngineControl": "engine.notify.control",
    "TelegramNotifier": "engine.notify.telegram",
    "attach_telegram": "engine.notify.telegram",
}

__all__ = [
    "AppControl",
    "EngineControl",
    "RetryPolicy",
    "TelegramConfig",
    "TelegramNotifier",
    "attach_telegram",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine.notify' has no attribute {name!r}")
