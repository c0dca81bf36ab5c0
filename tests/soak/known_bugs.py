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
    symptoms: dict[tuple[str, str], int]  # every mismatch the checker saw: first server ms


@dataclass(frozen=True)
class KnownBug:
    code: str
    summary: str
    matches: Callable[[Violation, Context], bool]


_EXIT_ID = re.compile(r"^[A-Za-z0-9]+-([A-Z0-9]+)-\d+-ex\d*(?:r\d+)?$")


def _stacked_exits(v: Violation, ctx: Context) -> bool:
    if v.kind == "duplicated" and v.key.endswith(" exits"):
        return True
    if v.kind == "unprotected":
        symbol = v.key
    elif v.kind == "lost" and (found := _EXIT_ID.match(v.key)) and "no such order" in v.detail:
        symbol = found[1]  # an exit still queued behind the stacked ones
    else:
        return False
    # once exits stacked beyond the position on a symbol (seen at any check, healed or not), what
    # follows there is their doing: a spot short, exits of the short that overshoot again, a
    # position left without stops, exits waiting in a queue that never drains
    since = ctx.symptoms.get(("duplicated", f"{symbol} exits"))
    return "sold base it never bought" in v.detail or (since is not None and since <= v.server_ms)


KNOWN_BUGS = (
    KnownBug(
        "B2",
        "engine/trading.py _exit / risk/gate.py request_exit: while an exit is queued or "
        "unanswered, the strategy's exit is requested again every cooldown, each for the whole "
        "position; the stacked exits overshoot (on spot: sell base never bought, then buy back "
        "too much), and what follows on that symbol is unprotected",
        _stacked_exits,
    ),
)


def explain(
    v: Violation, workdir: Path | None = None, symptoms: dict[tuple[str, str], int] | None = None
) -> str | None:
    """Return the code of the known bug a violation matches, None if it is unexplained."""
    ctx = Context(workdir, symptoms or {})
    return next((bug.code for bug in KNOWN_BUGS if bug.matches(v, ctx)), None)
