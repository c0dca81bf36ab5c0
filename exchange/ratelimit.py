"""REST rate-limit budgets: request weight and order counts, per fixed clock-aligned window.

Binance counts in fixed windows (a 1-minute window resets at :00, 1 day at 00:00 UTC, 10 s at
:00, :10, ...; API reference §4), seeded from exchangeInfo `rateLimits`. The local count is an
estimate; every response's `X-MBX-USED-WEIGHT-<n><unit>` / `X-MBX-ORDER-COUNT-<n><unit>` header
is the server's count and replaces it. A request that would exceed a budget waits (on the
injected clock) for the window to roll, or fails fast as Retryable when that is too long.

429 blocks REST for its Retry-After; 418 is a ban: REST halts until the ban ends. Websockets
are not affected, which is why this limiter belongs to the REST client only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock
from exchange.errors import Retryable

REQUEST_WEIGHT = "REQUEST_WEIGHT"
ORDERS = "ORDERS"
RAW_REQUESTS = "RAW_REQUESTS"

INTERVAL_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_HEADER_PREFIX = {REQUEST_WEIGHT: "x-mbx-used-weight-", ORDERS: "x-mbx-order-count-"}
DEFAULT_BAN_S = 120.0  # the shortest ban Binance hands out (2 minutes, growing to 3 days)
DEFAULT_BLOCK_MS = 60_000  # 429 without Retry-After: sit out the rest of the minute window


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One exchangeInfo `rateLimits[]` entry: at most `limit` per `interval_num` `interval`s."""

    kind: str
    interval: str
    interval_num: int
    limit: int

    @property
    def interval_ms(self) -> int:
        return INTERVAL_MS[self.interval] * self.interval_num

    @property
    def header_suffix(self) -> str:
        """Return the window as Binance names it in headers: '1m', '10s', '1d'."""
        return f"{self.interval_num}{self.interval[0]}".lower()


def rate_limits_from_exchange_info(info: Mapping[str, Any]) -> tuple[RateLimit, ...]:
    """Return the rate limits an exchangeInfo body declares (unknown intervals are skipped).

    Raise ValueError (TypeError for a wrong JSON type) for an entry that is not a usable limit:
    a budget of 0 or a window of 0 would refuse every request or divide by zero on it.
    """
    entries = info.get("rateLimits", [])
    if not isinstance(entries, list):
        raise TypeError(f"rateLimits is not a list: {entries!r:.100}")
    limits = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            raise TypeError(f"rateLimits entry is not an object: {entry!r:.100}")
        if entry.get("interval") not in INTERVAL_MS:
            continue
        try:
            limit = RateLimit(
                kind=str(entry["rateLimitType"]),
                interval=str(entry["interval"]),
                interval_num=int(entry["intervalNum"]),
                limit=int(entry["limit"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unusable rateLimits entry {entry!r:.200}: {exc!r}") from None
        if limit.interval_num < 1 or limit.limit < 1:
            raise ValueError(f"unusable rateLimits entry {entry!r:.200}")
        limits.append(limit)
    return tuple(limits)


@dataclass(frozen=True, slots=True)
class Permit:
    """What one request was charged, to be settled when it ends."""

    weight: int
    orders: int
    acquired_ms: int


class _Budget:
    __slots__ = ("in_flight", "limit", "used", "window")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.window = -1
        self.used = 0
        # window -> cost charged to requests of that window that have not answered yet
        self.in_flight: dict[int, int] = {}

    def used_in(self, window: int) -> int:
        return self.used if window == self.window else 0

    def charge(self, window: int, cost: int) -> None:
        self.used = self.used_in(window) + cost
        self.window = window
        # A request never settled must not haunt later windows.
        for old in [w for w in self.in_flight if w < window]:
            del self.in_flight[old]
        self.in_flight[window] = self.in_flight.get(window, 0) + cost

    def release(self, window: int, cost: int) -> None:
        left = self.in_flight.get(window, 0) - cost
        if left > 0:
            self.in_flight[window] = left
        else:
            self.in_flight.pop(window, None)


class RateLimiter:
    """Weight and order budgets for one IP and account; waits or raises Retryable."""

    def __init__(
        self, clock: Clock, limits: Iterable[RateLimit] = (), *, max_wait_s: float = 10.0
    ) -> None:
        self._clock = clock
        self._max_wait_s = max_wait_s
        self._budgets: list[_Budget] = []
        self._blocked_until_ms = 0
        self._orders_blocked_until_ms = 0
        self._banned_until_ms = 0
        self.configure(limits)

    def configure(self, limits: Iterable[RateLimit]) -> None:
        """Replace the budgets (from exchangeInfo), keeping counts of windows that still match."""
        old = {(b.limit.kind, b.limit.interval_ms): b for b in self._budgets}
        budgets = []
        for limit in limits:
            budget = _Budget(limit)
            previous = old.get((limit.kind, limit.interval_ms))
            if previous is not None:
                budget.window, budget.used = previous.window, previous.used
                budget.in_flight = dict(previous.in_flight)
            budgets.append(budget)
        self._budgets = budgets

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return tuple(b.limit for b in self._budgets)

    @property
    def banned_until_ms(self) -> int | None:
        """Return the end of the current REST ban (epoch ms), or None when not banned."""
        return self._banned_until_ms if self._banned_until_ms > self._now_ms() else None

    def used(self, kind: str, header_suffix: str) -> int:
        """Return the count of one budget (e.g. REQUEST_WEIGHT, '1m') in the current window."""
        now_ms = self._now_ms()
        for budget in self._budgets:
            if budget.limit.kind == kind and budget.limit.header_suffix == header_suffix:
                return budget.used_in(now_ms // budget.limit.interval_ms)
        raise KeyError(f"no {kind} limit over {header_suffix}")

    def _now_ms(self) -> int:
        return self._clock.now_ns() // 1_000_000

    @staticmethod
    def _cost(budget: _Budget, weight: int, orders: int) -> int:
        kind = budget.limit.kind
        if kind == REQUEST_WEIGHT:
            return weight
        if kind == ORDERS:
            return orders
        return 1 if kind == RAW_REQUESTS else 0

    def _wait_ms(self, now_ms: int, weight: int, orders: int) -> int:
        blocked = self._blocked_until_ms
        if orders:
            blocked = max(blocked, self._orders_blocked_until_ms)
        wait_ms = max(0, blocked - now_ms)
        for budget in self._budgets:
            cost = self._cost(budget, weight, orders)
            if cost == 0:
                continue
            interval_ms = budget.limit.interval_ms
            window = now_ms // interval_ms
            if budget.used_in(window) + cost > budget.limit.limit:
                wait_ms = max(wait_ms, (window + 1) * interval_ms - now_ms)
        return wait_ms

    async def acquire(
        self, weight: int, orders: int = 0, *, max_wait_s: float | None = None
    ) -> Permit:
        """Charge a request to every budget, first waiting for room; raise Retryable if banned."""
        limit_s = self._max_wait_s if max_wait_s is None else max_wait_s
        for budget in self._budgets:
            if self._cost(budget, weight, orders) > budget.limit.limit:
                raise ValueError(f"cost of one request exceeds {budget.limit}")
        while True:
            now_ms = self._now_ms()
            if self._banned_until_ms > now_ms:
                wait_s = (self._banned_until_ms - now_ms) / 1000
                raise Retryable(
                    f"REST is banned until {self._banned_until_ms}",
                    retry_after_s=wait_s,
                    status=418,
                    banned_until_ms=self._banned_until_ms,
                )
            wait_ms = self._wait_ms(now_ms, weight, orders)
            if wait_ms == 0:
                break
            if wait_ms > limit_s * 1000:
                raise Retryable(
                    f"rate budget exhausted for {wait_ms} ms",
                    retry_after_s=wait_ms / 1000,
                    orders_only=orders > 0 and self._wait_ms(now_ms, weight, 0) == 0,
                )
            await self._clock.sleep(wait_ms / 1000)
        for budget in self._budgets:
            cost = self._cost(budget, weight, orders)
            if cost:
                budget.charge(now_ms // budget.limit.interval_ms, cost)
        return Permit(weight, orders, now_ms)

    def try_acquire(self, weight: int, orders: int = 0) -> Permit | None:
        """Charge a request that may go now; None (nothing charged) if it would wait or is banned."""
        now_ms = self._now_ms()
        if self._banned_until_ms > now_ms or self._wait_ms(now_ms, weight, orders):
            return None
        for budget in self._budgets:  # a cost over a whole budget waits forever: None above
            cost = self._cost(budget, weight, orders)
            if cost:
                budget.charge(now_ms // budget.limit.interval_ms, cost)
        return Permit(weight, orders, now_ms)

    def refund(self, permit: Permit) -> None:
        """Give back what a request that was never sent was charged."""
        for budget in self._budgets:
            cost = self._cost(budget, permit.weight, permit.orders)
            window = permit.acquired_ms // budget.limit.interval_ms
            if cost:
                budget.release(window, cost)
                if budget.window == window:
                    budget.used = max(0, budget.used - cost)

    def settle(self, permit: Permit, headers: Mapping[str, str] | None) -> None:
        """End a request: drop it from the in-flight counts and adopt the server's counts."""
        now_ms = self._now_ms()
        for budget in self._budgets:
            cost = self._cost(budget, permit.weight, permit.orders)
            if cost:
                budget.release(permit.acquired_ms // budget.limit.interval_ms, cost)
        if not headers:
            return
        lowered = {name.lower(): value for name, value in headers.items()}
        for budget in self._budgets:
            prefix = _HEADER_PREFIX.get(budget.limit.kind)
            text = lowered.get(f"{prefix}{budget.limit.header_suffix}") if prefix else None
            text = text.strip() if text is not None else ""
            if not (text.isascii() and text.isdigit()):  # "²".isdigit() too, but int() refuses it
                continue
            interval_ms = budget.limit.interval_ms
            window = now_ms // interval_ms
            if permit.acquired_ms // interval_ms != window:
                continue  # the window rolled while the request was out: the count is ambiguous
            # Requests still out may not be in the server's count yet: keep them charged.
            budget.used = int(text) + budget.in_flight.get(window, 0)
            budget.window = window

    def block(self, retry_after_s: float | None, *, orders_only: bool = False) -> None:
        """Hold back REST (or only orders, for -1015) after a 429, for its Retry-After."""
        now_ms = self._now_ms()
        if retry_after_s is None:
            until_ms = (now_ms // DEFAULT_BLOCK_MS + 1) * DEFAULT_BLOCK_MS
        else:
            until_ms = now_ms + int(retry_after_s * 1000)
        if orders_only:
            self._orders_blocked_until_ms = max(self._orders_blocked_until_ms, until_ms)
        else:
            self._blocked_until_ms = max(self._blocked_until_ms, until_ms)

    def ban(self, until_ms: int | None, retry_after_s: float | None = None) -> None:
        """Halt all REST after a 418 until the ban ends (epoch in the message, or Retry-After)."""
        now_ms = self._now_ms()
        if until_ms is None:
            until_ms = now_ms + int(
                (retry_after_s if retry_after_s is not None else DEFAULT_BAN_S) * 1000
            )
        self._banned_until_ms = max(self._banned_until_ms, until_ms)
