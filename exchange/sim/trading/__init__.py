"""Trading side of the loopback Binance simulator: signed REST, matching, user-data streams.

Enable it with ``SimServer(..., trading=True)``; ``sim.trading`` is then a ``TradingSim``. Module
map: keys (API keys, signature and timestamp checks), api (the signed-endpoint wrapper), params,
feed (replay -> matching core), desk (one market's account, records, events), orders (Binance
bodies and events), spot, futures (routes), userstream (listenKeys, /private, /ws-api/v3),
faults, simulator (wiring).
"""

from exchange.sim.trading.keys import TEST_API_KEY, TEST_API_SECRET, ApiKey, ApiKeyRegistry

__all__ = ["TEST_API_KEY", "TEST_API_SECRET", "ApiKey", "ApiKeyRegistry"]
