"""Fault injection for the simulator: programmatic, over HTTP, or on a seeded random schedule.

Semantics (what a client observes):

* ``gap(symbol, n)``: the next n diff-depth frames of the symbol are not sent to anyone; the
  simulator's own book still applies them, so the client must detect the id gap and resync.
* ``duplicate(symbol|None, n)``: the next n frames (of that symbol, or of any) are sent twice.
* ``reorder(symbol)``: the next diff of the symbol is held and sent right after the one following it.
* ``delay(ms)``: the replay holds every frame for ms of real time, then sends the backlog in a
  burst (the timeline does not slip: frames due meanwhile go out back to back).
* ``stall(seconds, pings=False)``: connections open now stay open but get nothing for that long
  (frames meant for them are dropped, the market moves on); with pings=False no pings either.
  Connections opened during the stall are served normally, as a reconnect would be.
* ``drop_connections()``: every open connection is dropped without a close frame.
* ``server_shutdown(after_ms)``: every connection gets ``{"e":"serverShutdown","E":ms}`` (on
  combined streams in a ``!serverShutdown`` envelope), then is closed after_ms later.
* ``http_error(status, n)``: the next n REST requests fail with that status (429/418 carry
  Retry-After and -1003; 5xx carry -1001).

``schedule_random`` draws faults at tape times from a seed: the same seed gives the same faults
at the same tape positions whatever the replay speed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

RANDOM_KINDS = ("gap", "duplicate", "delay", "stall", "drop", "server_shutdown", "reorder")
ALL_KINDS = (*RANDOM_KINDS, "http_error")


class FaultError(ValueError):
    """A fault request named an unknown kind or bad parameters."""


class FaultTarget(Protocol):
    """What the server offers the fault injector for faults that act at once."""

    def drop_all(self) -> int: ...

    def stall_all(self, seconds: float, pings: bool) -> int: ...

    def shutdown_all(self, after_ms: int) -> int: ...

    def hold_replay(self, ms: float) -> None: ...

    def depth_symbols(self) -> list[str]: ...

    def tape_duration_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """One fault of a random schedule, due when the replay reaches tape offset at_s."""

    at_s: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


class Faults:
    """Pending faults and counters; the replay consumes the pending ones frame by frame."""

    def __init__(self, target: FaultTarget, seed: int = 0) -> None:
        self._target = target
        self._seed = seed
        self.injected: Counter[str] = Counter()
        self.gaps: Counter[str] = Counter()  # symbol -> diffs still to skip
        self.duplicates: Counter[str | None] = Counter()  # symbol or None (any) -> frames left
        self.reorders: Counter[str] = Counter()
        self.http_errors: list[int] = []  # statuses for the next REST requests
        self.schedule: list[ScheduledFault] = []
        self._next_scheduled = 0

    def gap(self, symbol: str, n: int = 1) -> None:
        """Skip the next n diff-depth frames of symbol (the sim's book still applies them)."""
        self.gaps[symbol.upper()] += _positive(n)
        self.injected["gap"] += 1

    def duplicate(self, symbol: str | None = None, n: int = 1) -> None:
        """Send the next n frames of symbol (any symbol when None) twice."""
        self.duplicates[symbol.upper() if symbol else None] += _positive(n)
        self.injected["duplicate"] += 1

    def reorder(self, symbol: str) -> None:
        """Send the next diff of symbol after the one that follows it."""
        self.reorders[symbol.upper()] += 1
        self.injected["reorder"] += 1

    def delay(self, ms: float) -> None:
        """Hold all frames for ms of real time, then burst them."""
        self._target.hold_replay(float(ms))
        self.injected["delay"] += 1

    def stall(self, seconds: float, pings: bool = False) -> int:
        """Send nothing (and no pings unless pings=True) to open connections for seconds."""
        affected = self._target.stall_all(float(seconds), bool(pings))
        self.injected["stall"] += 1
        return affected

    def drop_connections(self) -> int:
        """Drop every open websocket without a close frame; return how many."""
        affected = self._target.drop_all()
        self.injected["drop"] += 1
        return affected

    def server_shutdown(self, after_ms: int = 1000) -> int:
        """Announce serverShutdown on every connection and close them after_ms later."""
        affected = self._target.shutdown_all(int(after_ms))
        self.injected["server_shutdown"] += 1
        return affected

    def http_error(self, status: int = 503, n: int = 1) -> None:
        """Fail the next n REST requests with an HTTP status."""
        if status not in (418, 429) and not 500 <= status <= 599:
            raise FaultError(f"http_error status must be 418, 429 or 5xx, not {status}")
        self.http_errors.extend([int(status)] * _positive(n))
        self.injected["http_error"] += 1

    def apply(self, kind: str, **params: Any) -> None:
        """Inject one fault by kind name with keyword parameters (the HTTP endpoint's path)."""
        actions: dict[str, Callable[..., Any]] = {
            "gap": self.gap,
            "duplicate": self.duplicate,
            "reorder": self.reorder,
            "delay": self.delay,
            "stall": self.stall,
            "drop": self.drop_connections,
            "server_shutdown": self.server_shutdown,
            "http_error": self.http_error,
        }
        if kind not in actions:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(ALL_KINDS)}")
        try:
            actions[kind](**params)
        except (TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, FaultError):
                raise
            raise FaultError(f"bad parameters for {kind}: {exc}") from exc

    def schedule_random(
        self,
        rate_per_min: float,
        kinds: Iterable[str] = RANDOM_KINDS,
        *,
        duration_s: float | None = None,
        seed: int | None = None,
    ) -> list[ScheduledFault]:
        """Draw faults over the tape (Poisson at rate_per_min of tape time), deterministic by seed.

        The draw uses `seed`, else the server's seed; duration_s defaults to the tape's length.
        """
        if duration_s is None:
            duration_s = self._target.tape_duration_s()
        kinds = tuple(kinds)
        unknown = set(kinds) - set(RANDOM_KINDS)
        if unknown or not kinds or rate_per_min <= 0:
            raise FaultError(f"need rate_per_min > 0 and kinds from {RANDOM_KINDS}")
        rng = random.Random(self._seed if seed is None else seed)
        symbols = self._target.depth_symbols()
        if not symbols:
            kinds = tuple(k for k in kinds if k not in ("gap", "reorder")) or ("drop",)
        drawn: list[ScheduledFault] = []
        at_s = rng.expovariate(rate_per_min / 60.0)
        while at_s < duration_s:
            kind = rng.choice(kinds)
            drawn.append(ScheduledFault(round(at_s, 6), kind, _random_params(kind, rng, symbols)))
            at_s += rng.expovariate(rate_per_min / 60.0)
        self.schedule = sorted([*self.schedule, *drawn], key=lambda f: f.at_s)
        self._next_scheduled = 0
        return drawn

    def fire_due(self, tape_offset_s: float) -> None:
        """Inject every scheduled fault whose tape time has been reached."""
        while self._next_scheduled < len(self.schedule):
            fault = self.schedule[self._next_scheduled]
            if fault.at_s > tape_offset_s:
                return
            self._next_scheduled += 1
            self.apply(fault.kind, **fault.params)

    def rewind_schedule(self) -> None:
        """Replay the schedule again from its start (a replay loop wrapped)."""
        self._next_scheduled = 0

    def take_http_error(self) -> int | None:
        """Return the status the next REST request must fail with, if any."""
        return self.http_errors.pop(0) if self.http_errors else None


def _positive(n: int) -> int:
    if int(n) < 1:
        raise FaultError("n must be >= 1")
    return int(n)


def _random_params(kind: str, rng: random.Random, symbols: list[str]) -> dict[str, Any]:
    symbol = rng.choice(symbols) if symbols else None
    if kind == "gap" and symbol:
        return {"symbol": symbol, "n": rng.randint(1, 3)}
    if kind == "duplicate":
        return {"symbol": symbol if rng.random() < 0.5 else None, "n": rng.randint(1, 5)}
    if kind == "reorder" and symbol:
        return {"symbol": symbol}
    if kind == "delay":
        return {"ms": rng.randint(50, 500)}
    if kind == "stall":
        return {"seconds": round(rng.uniform(0.2, 2.0), 3), "pings": rng.random() < 0.5}
    if kind == "server_shutdown":
        return {"after_ms": rng.randint(100, 1000)}
    return {}
