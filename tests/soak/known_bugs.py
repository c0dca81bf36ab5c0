"""Engine bugs the soak found that are not fixed yet, each recognised by its narrow signature.

A violation that matches is still counted and printed (the JSON's `violations` is the total); the
short CI soak fails only on violations nobody has explained yet. Delete an entry once its fix has
landed: the soak then fails again if the bug comes back. Each entry says where the bug lives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.soak.soak_invariants import Violation


@dataclass(frozen=True)
class Context:
    """What a signature may look at besides the violation: the phase's files and earlier finds."""

    workdir: Path | None
    earlier: list[Violation]


@dataclass(frozen=True)
class KnownBug:
    code: str
    summary: str
    matches: Callable[[Violation, Context], bool]


def _unknown_overwrote_report(v: Violation, _: Context) -> bool:
    # journal left UNKNOWN (or NEW after a late re-acceptance) although the exchange finished the
    # order and every fill of it is journaled
    found = re.match(r"journal (UNKNOWN|NEW) (\S+), exchange (FILLED|EXPIRED|CANCELED) (\S+)$", v.detail)
    return v.kind == "lost" and found is not None and float(found[2]) == float(found[4])


def _stacked_exits(v: Violation, ctx: Context) -> bool:
    if v.kind == "duplicated" and v.key.endswith(" exits"):
        return True
    if v.kind != "unprotected":
        return False
    # what follows on that symbol: a spot short, then exits of the short that overshoot again
    return "sold base it never bought" in v.detail or any(
        e.kind == "duplicated" and e.key == f"{v.key} exits" for e in ctx.earlier
    )


def _startup_not_retried(v: Violation, ctx: Context) -> bool:
    if v.kind != "crash" or ctx.workdir is None:
        return False
    stderr = ctx.workdir / f"stderr-{v.key.removeprefix('start ')}.txt"
    text = stderr.read_text(errors="replace") if stderr.exists() else ""
    return "exchange.errors.Retryable" in text and "start_session" in text


KNOWN_BUGS = (
    KnownBug(
        "B1", "exchange/binance/order_manager.py _place: an UnknownOutcome (timeout, 5xx) arriving "
        "after the user stream already reported the order marks it UNKNOWN in the journal and the "
        "manager, and nothing resolves it (the stream wait returns at once, reconciliation skips "
        "UNKNOWN)", _unknown_overwrote_report,
    ),
    KnownBug(
        "B2", "engine/trading.py _exit / risk/gate.py request_exit: while an exit is queued or "
        "unanswered, the strategy's exit is requested again every cooldown, each for the whole "
        "position; the stacked exits overshoot (on spot: sell base never bought, then buy back "
        "too much), and what follows on that symbol is unprotected", _stacked_exits,
    ),
    KnownBug(
        "B3", "engine/live_start.py start_session: a Retryable answer (429, 418, 5xx) during "
        "start-up is not retried: the process exits 1 with a traceback", _startup_not_retried,
    ),
)


def explain(v: Violation, workdir: Path | None = None, earlier: list[Violation] | None = None) -> str | None:
    """Return the code of the known bug a violation matches, None if it is unexplained."""
    ctx = Context(workdir, earlier or [])
    return next((bug.code for bug in KNOWN_BUGS if bug.matches(v, ctx)), None)
