"""structlog set-up: JSON lines to a rotating file, a readable console on a terminal, redaction.

Log records are events with bound context (`log.bind(component="feed", symbol="BTCUSDT")`).
Secrets are scrubbed twice: by key name (api_key, secret, token, ...) and by value (any string
containing one of the process's known secret values), so a secret that slips into an exception
message or a URL still never reaches a file or the console.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import structlog

from engine.config import SECRET_KEY_RE, LoggingConfig

REDACTED = "***"
_URL_SECRET_RE = re.compile(r"((?:listenKey|signature|apiKey|token)=)[^&\s\"']+", re.I)


class SecretRedactor:
    """structlog processor that removes secret values from every event before rendering."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in secret_values if v and len(v) >= 4}, key=len, reverse=True)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._values:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return _URL_SECRET_RE.sub(r"\1" + REDACTED, value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self._scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        for key in list(event_dict):
            if SECRET_KEY_RE.search(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._scrub(event_dict[key])
        return event_dict


def _shared_processors(redactor: SecretRedactor) -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]


def configure_logging(
    cfg: LoggingConfig,
    log_dir: Path,
    *,
    secret_values: Iterable[str] = (),
    console: TextIO | None = None,
) -> list[logging.Handler]:
    """Route structlog and stdlib logging to a rotating JSON file and the console; return the handlers."""
    console = console if console is not None else sys.stderr
    redactor = SecretRedactor(secret_values)
    shared = _shared_processors(redactor)
    handlers: list[logging.Handler] = []

    if cfg.file:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_dir / cfg.file, maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8"
        )
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                            structlog.processors.JSONRenderer()],
                foreign_pre_chain=shared,
            )
        )
        handlers.append(file_handler)

    mode = cfg.console
    if mode == "auto":
        mode = "pretty" if getattr(console, "isatty", lambda: False)() else "json"
    if mode != "off":
        renderer: Any = (
            structlog.dev.ConsoleRenderer(colors=True)
            if mode == "pretty"
            else structlog.processors.JSONRenderer()
        )
        console_handler = logging.StreamHandler(console)
        console_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
                foreign_pre_chain=shared,
            )
        )
        handlers.append(console_handler)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(cfg.level)
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    structlog.configure(
        # drop below-level events before any processing: per-row debug lines must cost ~nothing
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handlers
