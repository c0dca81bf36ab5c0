"""Faults of the simulated exchange's trading side (programmatic, or POST /_sim/fault by kind).

What a client observes:

* ``timestamp_error(n)``: the next n signed requests fail with -1021 (the client's clock
  offset looks stale); nothing is executed.
* ``order_unknown(n, status=503)``: the next n order placements ARE executed, but the answer is
  lost: 503 ``"Unknown error, please check your request or try again later."`` (futures code
  -1000) or spot's -1007 "execution status unknown". The order shows up in queries and streams.
* ``order_timeout(seconds, n)``: the next n placements are executed at once, but the response
  is held for `seconds` (of the injected clock) - past the client's timeout.
* ``duplicate_ack(n)``: the next n placements are executed, and the answer is the duplicate
  client-id rejection (-2010 spot, -4116 futures) a retried request would get: "the first
  attempt landed".
* ``listen_key_expire(listen_key=None)``: the key (every key when None) expires now:
  ``listenKeyExpired`` is sent, and a keep-alive answers -1125.
* ``user_stream_drop()``: every user-data websocket (futures private and spot WS API) is dropped
  without a close frame.

429/418 with Retry-After use the server's existing ``http_error`` fault, which every trading
endpoint honours too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from exchange.sim.faults import FaultError

TRADING_KINDS = (
    "timestamp_error",
    "order_unknown",
    "order_timeout",
    "duplicate_ack",
    "listen_key_expire",
    "user_stream_drop",
)


class TradingFaults:
    """Pending trading faults; endpoints consume them request by request."""

    kinds = TRADING_KINDS

    def __init__(
        self,
        expire_listen_keys: Callable[[str | None], int],
        drop_user_streams: Callable[[], int],
    ) -> None:
        self._expire = expire_listen_keys
        self._drop = drop_user_streams
        self.injected: Counter[str] = Counter()
        self.timestamp_errors = 0
        self.unknown_outcomes: list[int] = []  # HTTP statuses for the next placements
        self.timeouts: list[float] = []  # seconds to hold the next placements' answers
        self.duplicate_acks = 0

    def timestamp_error(self, n: int = 1) -> None:
        """Fail the next n signed requests with -1021."""
        self.timestamp_errors += _positive(n)
        self.injected["timestamp_error"] += 1

    def order_unknown(self, n: int = 1, status: int = 503) -> None:
        """Execute the next n placements but answer 5xx 'unknown'."""
        if not 500 <= int(status) <= 599:
            raise FaultError(f"order_unknown status must be 5xx, not {status}")
        self.unknown_outcomes.extend([int(status)] * _positive(n))
        self.injected["order_unknown"] += 1

    def order_timeout(self, seconds: float = 15.0, n: int = 1) -> None:
        """Execute the next n placements but hold their answers for seconds."""
        if float(seconds) <= 0:
            raise FaultError("seconds must be > 0")
        self.timeouts.extend([float(seconds)] * _positive(n))
        self.injected["order_timeout"] += 1

    def duplicate_ack(self, n: int = 1) -> None:
        """Execute the next n placements but answer the duplicate client-id rejection."""
        self.duplicate_acks += _positive(n)
        self.injected["duplicate_ack"] += 1

    def listen_key_expire(self, listen_key: str | None = None) -> int:
        """Expire one listenKey (all when None) now; return how many expired."""
        expired = self._expire(listen_key)
        self.injected["listen_key_expire"] += 1
        return expired

    def user_stream_drop(self) -> int:
        """Drop every user-data websocket without a close frame; return how many."""
        dropped = self._drop()
        self.injected["user_stream_drop"] += 1
        return dropped

    def apply(self, kind: str, **params: Any) -> None:
        """Inject one trading fault by kind name (the HTTP endpoint's path)."""
        if kind not in TRADING_KINDS:
            raise FaultError(f"unknown trading fault kind {kind!r}; known: {TRADING_KINDS}")
        try:
            getattr(self, kind)(**params)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FaultError):
                raise
            raise FaultError(f"bad parameters for {kind}: {exc}") from exc

    # ---- consumed by the endpoints -----------------------------------------------------------

    def take_timestamp_error(self) -> bool:
        if self.timestamp_errors:
            self.timestamp_errors -= 1
            return True
        return False

    def take_placement_fault(self) -> tuple[str, float] | None:
        """Return ("unknown", status) | ("timeout", seconds) | ("duplicate", 0) for a placement."""
        if self.unknown_outcomes:
            return "unknown", float(self.unknown_outcomes.pop(0))
        if self.timeouts:
            return "timeout", self.timeouts.pop(0)
        if self.duplicate_acks:
            self.duplicate_acks -= 1
            return "duplicate", 0.0
        return None


def _positive(n: int) -> int:
    if int(n) < 1:
        raise FaultError("n must be >= 1")
    return int(n)
