"""Risk: sizing, exchange filters, pre-trade checks, protective orders, trading state; see docs/risk.md."""
