"""Fixtures of the dashboard tests: a tiny real model for BTCUSDT trained on the shared tape."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_harness import train_tiny_bundle


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path]) -> Path:
    models_dir = tmp_path_factory.mktemp("dashboard-models")
    train_tiny_bundle(tapes["spot_btcusdt"], models_dir, "BTCUSDT")
    return models_dir
