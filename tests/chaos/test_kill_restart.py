"""Issue #6: the engine killed (SIGKILL) between intent and acknowledgement, and at random, and
restarted on the same journal, while every trading fault of the loopback simulator is injected;
afterwards no order is lost, none duplicated, every position protected, journal and simulator agree.

The simulator (trading on) replays the two spot tapes in this process and outlives the engine,
`tickloop run -c config.yaml` in mode testnet, a subprocess. Kill times, kill kinds and faults
come from one seed (the engine's own timing does not, so the orders differ from run to run; the
kinds of damage do not). One session feeds every invariant below; what it did is printed when one
fails. The soak variant (`--run-marked soak`) runs long sessions with faults during start-up too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chaos_driver import ChaosPlan, ChaosResult, run_chaos
from chaos_harness import train_chaos_bundle

from engine.model import Market

SPOT_SYMBOLS = {"BTCUSDT": "spot_btcusdt", "ETHUSDT": "spot_ethusdt"}
CI_SEED = 6
CI_CYCLES = 5


@pytest.fixture(scope="module")
def chaos_models(tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path]) -> Path:
    models_dir = tmp_path_factory.mktemp("chaos-models")
    for symbol, tape in SPOT_SYMBOLS.items():
        train_chaos_bundle(tapes[tape], models_dir, symbol)
    return models_dir


def _session(
    tapes: dict[str, Path], models_dir: Path, workdir: Path, plan: ChaosPlan
) -> ChaosResult:
    spot_tapes = [tapes[tape] for tape in SPOT_SYMBOLS.values()]
    return asyncio.run(
        run_chaos(spot_tapes, Market.SPOT, list(SPOT_SYMBOLS), workdir, models_dir, plan)
    )


@pytest.fixture(scope="module")
def spot_chaos(
    tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path], chaos_models: Path
) -> ChaosResult:
    plan = ChaosPlan(seed=CI_SEED, cycles=CI_CYCLES)
    return _session(tapes, chaos_models, tmp_path_factory.mktemp("chaos-spot"), plan)


def test_the_chaos_happened(spot_chaos: ChaosResult) -> None:
    report = spot_chaos.report()
    assert len(spot_chaos.kills) == CI_CYCLES, report
    assert spot_chaos.starts == CI_CYCLES + 1 + len(spot_chaos.crashes), report
    # every start reconciled before trading, on the same journal
    assert len(spot_chaos.named("startup_reconciled")) == CI_CYCLES + 1, report
    aimed = [k for k in spot_chaos.kills if k["aimed"]]
    assert aimed and any(k["in_window"] for k in aimed), report  # killed between intent and answer
    assert sum(spot_chaos.faults_injected.values()) >= CI_CYCLES, report
    counts = spot_chaos.verdict.counts
    assert counts["intents"] > 0 and counts["sim_fills"] > 0, report


def test_no_order_duplicated(spot_chaos: ChaosResult) -> None:
    assert spot_chaos.verdict.of("duplicated") == [], spot_chaos.report()


def test_no_order_lost(spot_chaos: ChaosResult) -> None:
    assert spot_chaos.verdict.of("lost") == [], spot_chaos.report()


def test_journal_fills_are_the_simulator_fills(spot_chaos: ChaosResult) -> None:
    assert spot_chaos.verdict.of("fills") == [], spot_chaos.report()


def test_every_position_protected(spot_chaos: ChaosResult) -> None:
    assert spot_chaos.verdict.of("unprotected") == [], spot_chaos.report()


@pytest.mark.xfail(
    strict=False,
    reason="open bug (reported to the lead): a position whose stops only partly match the journal's "
    "plan at start-up is left REDUCING with those stops unadopted; its later exit does not cancel "
    "them, so a spot STOP_LOSS keeps resting with no position behind it",
)
def test_no_stop_without_a_position_behind_it(spot_chaos: ChaosResult) -> None:
    assert spot_chaos.verdict.of("over_protected") == [], spot_chaos.report()


@pytest.mark.soak
@pytest.mark.parametrize("seed", [101, 202, 303])
def test_soak_many_kills(
    seed: int, tmp_path: Path, tapes: dict[str, Path], chaos_models: Path
) -> None:
    # 20 cycles fill most of the 5.7-minute tapes at replay speed 1
    plan = ChaosPlan(seed=seed, cycles=20, faults_during_startup=True, fault_gap_s=2.0)
    result = _session(tapes, chaos_models, tmp_path, plan)
    print(result.report())
    assert len(result.kills) == plan.cycles, result.report()
    for invariant in ("duplicated", "lost", "fills", "unprotected"):
        assert result.verdict.of(invariant) == [], result.report()
