"""`tickloop run -c cfg.yaml` with the soak's sped-up clock: the engine process the kill phase kills.

Same steps as engine.commands.run_live (logging, tick sizes, App with the configured journal,
operator surfaces, SIGINT/SIGTERM handlers, App.run), with one difference: the App is built on the
ScaledClock named by TICKLOOP_SOAK_CLOCK, the clock the simulator in the parent runs on, so the
exchange's time and the engine's advance together at the soak's speed.

    python -m tests.soak.engine_child -c config.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from engine.app import App
from engine.commands import attach_surfaces, fetch_tick_sizes, setup_logging
from engine.config import load_config
from tests.soak.scaled_clock import ScaledClock


async def run(config_path: str) -> int:
    config = load_config(config_path)
    setup_logging(config)
    clock = ScaledClock.from_spec(os.environ["TICKLOOP_SOAK_CLOCK"])
    journal_path = config.paths.journal_path()
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    app = App(
        config, clock=clock, tick_sizes=await fetch_tick_sizes(config), journal_path=journal_path
    )
    attach_surfaces(app, config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.stop)
    await app.run()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    return asyncio.run(run(parser.parse_args().config))


if __name__ == "__main__":
    raise SystemExit(main())
