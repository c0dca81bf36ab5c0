"""Shared pieces of the fuzz suites: hypothesis settings per profile, and the case counters.

Profiles. CI runs a modest number of examples per property (the whole folder in well under 90 s
on two loaded cores); `TICKLOOP_FUZZ=deep` (or `pytest tests/fuzz --hypothesis-profile=deep`)
runs thousands. The database is off, so a CI run never depends on an earlier one; a failure
prints the shrunk input and a `@reproduce_failure` blob.

Counters. Every example calls `count(suite)` first (and may add sub-cases: frames fed, requests
sent); tests/fuzz/conftest.py prints one line per suite at the end of the session and writes
bench/results/fuzz.json.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, settings

T = TypeVar("T")

DEEP = "deep"
CI = "fuzz-ci"
# Registered here (imported by tests/fuzz/conftest.py) so `--hypothesis-profile=deep` works
# when tests/fuzz is on the command line.
settings.register_profile(DEEP, deadline=None, max_examples=2000)
settings.register_profile(CI, deadline=None)

_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.function_scoped_fixture,
    HealthCheck.large_base_example,
]

# suite -> {"examples": n, <unit>: n, ...}; read by conftest at the end of the session
COUNTS: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def profile_name() -> str:
    """Return "deep" when asked for thousands of examples, else the CI profile's name."""
    if os.environ.get("TICKLOOP_FUZZ", "").lower() == DEEP:
        return DEEP
    return DEEP if settings.get_current_profile_name() == DEEP else CI


def fuzz_settings(ci_examples: int, deep_examples: int = 2000, *, shrink: bool = True) -> settings:
    """Return the settings of one property: ci_examples in CI, deep_examples when deep.

    shrink=False for xfail properties of known findings: the first failure is enough.
    """
    deep = profile_name() == DEEP
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(
        max_examples=deep_examples if deep else ci_examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=_HEALTH,
        phases=phases,
        # CI draws the same examples every run (a red build is reproducible, never a lottery);
        # the deep profile explores new ones
        derandomize=not deep,
    )


def count(suite: str, unit: str = "examples", n: int = 1) -> None:
    """Count n cases of `unit` for suite (one call per hypothesis example, plus sub-cases)."""
    COUNTS[suite][unit] += n


class LoopRunner:
    """An event loop owned by a module fixture: servers live on it across hypothesis examples.

    Each example runs its client coroutine with `run()`; between examples the loop is idle, so a
    server started on it keeps its sockets and state (a request simply waits for the next run).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        """Run one coroutine to completion (a safety limit against hangs, not a timing check)."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout_s))

    def close(self) -> None:
        loop = self.loop
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
