"""Loopback Binance market-data simulator: replays recorded tapes over the real wire protocol.

Entry points: ``SimServer`` (async context manager, for tests and the demo) and ``run_sim`` (serve
until cancelled, for ``tickloop sim``). Module map: timeline (tape loading), replay (the walk),
book (the simulator's own books), connection (routing, queues, keep-alive), controls (subscribe
protocol), rest (REST endpoints), exchange_info, faults, server (wiring).
"""

from exchange.sim.server import SimServer, run_sim

__all__ = ["SimServer", "run_sim"]
