"""Engine bugs the soak found that are not fixed yet, each recognised by its narrow signature.

A violation that matches is still counted and printed (the JSON's `violations` is the total); the
short CI soak fails only on violations nobody has explained yet. Delete an entry once its fix has
landed: the soak then fails again if the bug comes back. Each entry says where the bug lives.
"""

from __future__ import annotations

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


# B2 (stacked exits: while an exit was unanswered the strategy's exit was requested again for the
# whole position) was fixed by the gate's one-exit-per-position guard; the full day after the fix
# had no violation, so its signature is gone and the soak fails again if it comes back.
KNOWN_BUGS: tuple[KnownBug, ...] = ()


def explain(
    v: Violation, workdir: Path | None = None, symptoms: dict[tuple[str, str], int] | None = None
) -> str | None:
    """Return the code of the known bug a violation matches, None if it is unexplained."""
    ctx = Context(workdir, symptoms or {})
    return next((bug.code for bug in KNOWN_BUGS if bug.matches(v, ctx)), None)
