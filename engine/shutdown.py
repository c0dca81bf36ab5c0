"""Graceful shutdown: ordered steps, each bounded by what is left of one deadline.

On stop() or SIGTERM the App (1) stops intake, so no new strategy decision can be made, (2)
keeps or cancels its open orders as `shutdown.orders_on_exit` says, (3) flushes and closes the
journal, recorder and collector, (4) logs one final line with every step's outcome. A step
that overruns its budget is abandoned (logged as `timeout`) and the next one still runs, so
the durable steps happen even when a network step hangs; a step that raises is logged and the
next one runs. Synchronous steps (SQLite commits, file closes) cannot be interrupted and are
fast; only awaitable steps are bounded.

Keeping orders is the default because protective orders (stop-loss, take-profit) must keep
resting on the exchange while a position is open, also while the engine restarts.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field

from engine.clock import Clock
from engine.orders import OrderEvent, OrderRole

OrdersOnExit = Literal["keep", "cancel_entries", "cancel_all"]
# the share of the deadline the intake step may use: the later steps must keep some time
INTAKE_SHARE = 0.4
# time kept for the synchronous steps after the order step (commits, file closes)
FLUSH_RESERVE_S = 1.0


class ShutdownConfig(BaseModel):
    """`shutdown:` section: what happens to open orders on exit, and the overall deadline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # keep: leave every order resting; cancel_entries: cancel orders that would open or add to
    # a position, keep protective ones; cancel_all: cancel everything (positions unprotected)
    orders_on_exit: OrdersOnExit = "keep"
    # the whole shutdown; systemd's TimeoutStopSec and docker's stop timeout must exceed it
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0


def shutdown_config_of(config: Any) -> ShutdownConfig:
    """Return the config's `shutdown` section, or the defaults when it has none."""
    section = getattr(config, "shutdown", None)
    if isinstance(section, ShutdownConfig):
        return section
    if isinstance(section, Mapping):
        return ShutdownConfig.model_validate(dict(section))
    return ShutdownConfig()


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """How one shutdown step ended: `ok`, `timeout`, `error` or `skipped` (already done)."""

    name: str
    outcome: str
    elapsed_ms: float
    detail: str = ""


StepAction = Callable[[], Awaitable[Any] | Any]


class ShutdownSequence:
    """Run named steps in order against one deadline; each step runs at most once."""

    def __init__(self, timeout_s: float, clock: Clock, log: Any | None = None) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._log = log or structlog.get_logger("engine.shutdown")
        self._started_ns: int | None = None
        self.steps: dict[str, StepOutcome] = {}

    def start(self) -> None:
        """Start the deadline (the first step starts it too)."""
        if self._started_ns is None:
            self._started_ns = self._clock.monotonic_ns()

    @property
    def elapsed_s(self) -> float:
        if self._started_ns is None:
            return 0.0
        return (self._clock.monotonic_ns() - self._started_ns) / 1e9

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.timeout_s - self.elapsed_s)

    async def step(self, name: str, action: StepAction, budget_s: float | None = None) -> StepOutcome:
        """Run action (sync, or awaited for at most its budget); never raise, except cancellation."""
        self.start()
        if name in self.steps:
            return self.steps[name]
        budget = self.remaining_s if budget_s is None else min(budget_s, self.remaining_s)
        began = self._clock.monotonic_ns()
        outcome, detail = "ok", ""
        try:
            result = action()
            if inspect.isawaitable(result):
                # an exhausted deadline still gives an awaitable a moment: it may be done already
                await asyncio.wait_for(_as_coroutine(result), timeout=max(budget, 0.05))
        except TimeoutError:
            outcome, detail = "timeout", f"abandoned after {budget:.1f} s"
        except Exception as exc:  # noqa: BLE001 - a failing step must not skip the next ones
            outcome, detail = "error", f"{type(exc).__name__}: {exc}"
        elapsed_ms = (self._clock.monotonic_ns() - began) / 1e6
        result_ = StepOutcome(name, outcome, round(elapsed_ms, 1), detail)
        self.steps[name] = result_
        log = self._log.info if outcome == "ok" else self._log.warning
        log("shutdown_step", step=name, outcome=outcome, elapsed_ms=result_.elapsed_ms,
            **({"detail": detail} if detail else {}))
        return result_

    def summary(self) -> dict[str, Any]:
        """Return the fields of the final log line: total time and each step's outcome."""
        return {
            "shutdown_ms": round(self.elapsed_s * 1000, 1),
            "shutdown_ok": all(s.outcome == "ok" for s in self.steps.values()),
            "steps": {s.name: s.outcome for s in self.steps.values()},
        }


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class CancellingVenue(Protocol):
    """What the order step needs of a synchronous venue (the simulated venue)."""

    @property
    def now_ms(self) -> int: ...

    def open_orders(self, symbol: str | None = None) -> list[Any]: ...

    def cancel(self, symbol: str, client_order_id: str, now_ms: int) -> list[OrderEvent]: ...

    def advance(self, now_ms: int) -> list[OrderEvent]: ...


def orders_to_cancel(open_orders: list[Any], policy: OrdersOnExit) -> list[Any]:
    """Return the open orders the policy cancels (orders of unknown role count as entries)."""
    if policy == "keep":
        return []
    if policy == "cancel_all":
        return list(open_orders)
    kept = {OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT, OrderRole.TRAILING_STOP, OrderRole.EXIT,
            OrderRole.FLATTEN}
    return [o for o in open_orders if o.intent is None or o.intent.role not in kept]


def cancel_open_orders(
    venue: CancellingVenue,
    policy: OrdersOnExit,
    on_event: Callable[[OrderEvent], None],
    latency_ms: int = 0,
) -> tuple[int, int]:
    """Cancel what the policy says on a synchronous venue; return (cancelled, kept) counts."""
    open_orders = venue.open_orders()
    doomed = orders_to_cancel(open_orders, policy)
    now = venue.now_ms
    events: list[OrderEvent] = []
    list_of = getattr(venue, "order_list_of", None)
    done: set[str] = set()
    for order in doomed:
        if order.client_order_id in done:
            continue  # cancelled with its OCO sibling: a second cancel would be unknown (-2011)
        sibling = list_of(order.symbol, order.client_order_id) if list_of is not None else None
        events += venue.cancel(order.symbol, order.client_order_id, now)
        done.add(order.client_order_id)
        if sibling is not None:
            done.add(sibling[1])
    if doomed:
        events += venue.advance(now + latency_ms)  # the cancels arrive after the venue's latency
    for event in events:
        on_event(event)
    return len(doomed), len(open_orders) - len(doomed)
