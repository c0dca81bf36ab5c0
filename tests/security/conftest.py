"""The security suite imports the fake Telegram Bot API of the notifier tests (one definition)."""

from __future__ import annotations

import sys
from pathlib import Path

NOTIFY_TESTS = Path(__file__).resolve().parents[1] / "engine" / "notify"
if str(NOTIFY_TESTS) not in sys.path:
    sys.path.append(str(NOTIFY_TESTS))
