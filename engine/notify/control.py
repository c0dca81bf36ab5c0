"""What Telegram commands may ask of the engine: `EngineControl`, and `AppControl` over an App.

Every method returns the answer text. `AppControl` uses only the App's public attributes
(config, clock, models, pipeline, trading: halt/resume, gate, portfolio, blocked) and is honest
about what this engine cannot do yet: /flatten on its own and /reload say "not available".
State transitions are announced by the trading loop (a StateNotice per transition), not here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from engine.notify.config import TelegramConfig
from engine.notify.format import (
    coin_glyph,
    format_amount,
    format_money,
    format_price,
    signal_icons,
    signal_level,
)
from risk.state import TradingState

if TYPE_CHECKING:  # the composition root is never imported at run time (DESIGN: import direction)
    from engine.app import App
    from engine.trading import TradingLoop

DAY_MS = 86_400_000
DAILY_DAYS = 7
OPERATOR_BLOCK = "entries stopped by operator"


class EngineControl(Protocol):
    """The engine as Telegram commands see it; every method returns the answer to show."""

    def status(self) -> str: ...
    def positions(self) -> str: ...
    def balance(self) -> str: ...
    def profit(self) -> str: ...
    def daily(self) -> str: ...
    def performance(self) -> str: ...
    def signals(self) -> str: ...
    def stop_entries(self) -> str: ...
    def resume_entries(self) -> str: ...
    def halt(self, reason: str) -> str: ...
    def flatten(self) -> str: ...
    def reload(self) -> str: ...


def _day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


class AppControl:
    """EngineControl over an App's public attributes (trading loop, models, pipeline)."""

    def __init__(self, app: App, config: TelegramConfig | None = None) -> None:
        self.app = app
        self.config = config or TelegramConfig()
        self._stopped: set[str] = set()  # symbols this control blocked (others were refused)

    # -- helpers ---------------------------------------------------------------------------
    def _no_trading(self) -> str:
        cfg = self.app.config
        return (
            f"Not available now: {cfg.mode} on {cfg.market.type.value} has no trading loop yet "
            "(it starts once start-up reconciliation is done)."
        )

    def _now_ms(self, trading: TradingLoop) -> int:
        # the trading loop's own (exchange) time; the App's clock before any market data
        return trading.exchange_time_ms or trading.venue.now_ms or self.app.clock.now_ns() // 10**6

    def _state_text(self, trading: TradingLoop) -> str:
        risk = trading.gate.risk_state
        if risk.mode is TradingState.HALTED and risk.halt_trigger is not None:
            return f"HALTED ({risk.halt_trigger.value})"
        if risk.mode is TradingState.REDUCING:
            return f"REDUCING ({', '.join(sorted(t.value for t in risk.conditions))})"
        return risk.mode.value

    def _quote(self, trading: TradingLoop) -> str:
        return trading.portfolio.valuation_asset

    # -- read-only -------------------------------------------------------------------------
    def status(self) -> str:
        """Return mode, trading state, entries and per-symbol book/model state."""
        app, cfg = self.app, self.app.config
        trading = app.trading
        lines = [f"mode {cfg.mode} · {cfg.market.type.value}"]
        if trading is None:
            lines.append("no trading loop yet: market data only until start-up is done")
        else:
            lines[0] += f" · trading {self._state_text(trading)}"
            stopped = sorted(self._stopped & set(trading.blocked))
            lines.append(
                f"entries stopped by operator: {', '.join(stopped)}" if stopped else "entries: on"
            )
        for symbol, md in app.pipeline.symbols.items():
            book = "book ok" if md.book_valid else "book not synced"
            if symbol in app.models.models:
                model = "model loaded"
            elif symbol in app.models.refused:
                model = "model refused"
            else:
                model = "no model"
            lines.append(f"{symbol}: {book}, {model}")
        if trading is not None:
            quote = self._quote(trading)
            open_count = len(trading.portfolio.open_positions())
            lines.append(
                f"equity {format_money(trading.portfolio.equity())} {quote} · "
                f"open positions {open_count}"
            )
        return "\n".join(lines)

    def positions(self) -> str:
        """Return each open position with mark, unrealised PnL, stop and next target."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        portfolio = trading.portfolio
        open_positions = portfolio.open_positions()
        if not open_positions:
            return "No open positions."
        lines = []
        for symbol, pos in open_positions.items():
            mark = portfolio.marks.get(symbol, pos.avg_price)
            side = "LONG" if pos.qty > 0 else "SHORT"
            line = (
                f"{symbol} {side} {format_amount(abs(pos.qty))} @ {format_amount(pos.avg_price)}"
                f" · mark {format_amount(mark)} · uPnL "
                f"{format_money(pos.unrealized_pnl(mark), signed=True)}"
            )
            plan = trading.gate.plans.get(symbol)
            if plan is not None:
                line += f" · stop {format_amount(plan.stop_price)}"
                target = next(
                    (
                        b.target_price
                        for b in plan.brackets
                        if not b.done and b.target_price is not None
                    ),
                    None,
                )
                if target is not None:
                    line += f" · target {format_amount(target)}"
            else:
                line += " · no protective orders"
            lines.append(line)
        return "\n".join(lines)

    def balance(self) -> str:
        """Return the non-zero balances and the equity in the valuation asset."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        portfolio = trading.portfolio
        lines = [
            f"{asset} {format_amount(amount)}"
            for asset, amount in sorted(portfolio.ledger.balances.items())
            if amount
        ]
        lines.append(f"equity {format_money(portfolio.equity())} {self._quote(trading)}")
        unvalued = portfolio.unvalued_assets()
        if unvalued:
            lines.append(f"not valued (no price yet): {', '.join(unvalued)}")
        return "\n".join(lines)

    def profit(self) -> str:
        """Return closed-trade PnL, win rate, fees, funding, unrealised PnL and return since start."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        portfolio = trading.portfolio
        trades = portfolio.closed_trades
        wins = sum(1 for t in trades if t.pnl > 0)
        net = sum((t.pnl for t in trades), Decimal(0))
        equity, start = portfolio.equity(), portfolio.start_equity
        ret = f" ({(equity / start - 1) * 100:+.2f} % since start)" if start else ""
        rate = f" · wins {wins} ({wins * 100 // len(trades)} %)" if trades else ""
        quote = self._quote(trading)
        return (
            f"closed trades {len(trades)}{rate}\n"
            f"closed PnL {format_money(net, signed=True)} {quote} (net of fees and funding)\n"
            f"fees {format_money(portfolio.fees())} · funding "
            f"{format_money(portfolio.funding(), signed=True)}\n"
            f"unrealised {format_money(portfolio.unrealized_pnl(), signed=True)}\n"
            f"equity {format_money(equity)} {quote}{ret}"
        )

    def daily(self) -> str:
        """Return closed trades and their net PnL per UTC day, for the last 7 days."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        trades = trading.portfolio.closed_trades
        last_ms = max([self._now_ms(trading), *(t.closed_ms for t in trades)])
        per_day: dict[str, list[Decimal]] = defaultdict(list)
        for t in trades:
            per_day[_day(t.closed_ms)].append(t.pnl)
        lines = []
        for back in range(DAILY_DAYS - 1, -1, -1):
            day = _day(last_ms - back * DAY_MS)
            pnls = per_day.get(day, [])
            lines.append(
                f"{day}: trades {len(pnls)} · PnL "
                f"{format_money(sum(pnls, Decimal(0)), signed=True)}"
            )
        return "\n".join(lines)

    def performance(self) -> str:
        """Return closed trades, win rate and net PnL per symbol, best first."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        per_symbol: dict[str, list[Decimal]] = defaultdict(list)
        for t in trading.portfolio.closed_trades:
            per_symbol[t.symbol].append(t.pnl)
        if not per_symbol:
            return "No closed trades yet."
        ranked = sorted(per_symbol.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        return "\n".join(
            f"{symbol}: trades {len(pnls)} · wins {sum(1 for p in pnls if p > 0)} · PnL "
            f"{format_money(sum(pnls, Decimal(0)), signed=True)}"
            for symbol, pnls in ranked
        )

    def signals(self) -> str:
        """Return each coin's latest model score with its icons and threshold."""
        models = self.app.models
        if not models.available:
            return "No model scores: no verified model bundle is loaded."
        cfg = self.config
        lines = []
        for symbol in models.models:
            update = models.latest.get(symbol)
            if update is None:
                lines.append(f"{symbol}: no score yet (features warming up)")
                continue
            score = update.score if update.score is not None else update.confidence
            threshold = cfg.icon_threshold(update.threshold)
            level = signal_level(score, threshold, cfg.signal_step, cfg.signal_max_icons)
            md = self.app.pipeline.symbols.get(symbol)
            price = format_price(md.rows.last("close")) if md is not None and len(md.rows) else ""
            parts = (coin_glyph(symbol), price, signal_icons(level), f"Score: {score:+.2f}")
            lines.append(
                " ".join(p for p in parts if p)
                + f" (buy {update.confidence:.2f} / threshold {update.threshold:.2f})"
            )
        return "\n".join(lines)

    # -- actions ---------------------------------------------------------------------------
    def stop_entries(self) -> str:
        """Refuse new entries on every symbol; open positions stay protected."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        newly = [s for s in trading.instruments if s not in trading.blocked]
        for symbol in newly:
            trading.blocked[symbol] = OPERATOR_BLOCK
        self._stopped.update(newly)
        if not newly:
            return "Entries were already stopped."
        return (
            f"Entries stopped for {', '.join(newly)}. Open positions keep their stops and "
            "targets. /start resumes."
        )

    def resume_entries(self) -> str:
        """Lift the operator's entry stop and leave HALTED/REDUCING by a manual resume."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        for symbol in self._stopped:
            if trading.blocked.get(symbol) == OPERATOR_BLOCK:
                del trading.blocked[symbol]
        self._stopped.clear()
        before = trading.gate.trading_state
        if before is not TradingState.ACTIVE:
            trading.resume("Telegram", self._now_ms(trading))
        refused = sorted(trading.blocked)
        tail = f" Not traded (refused): {', '.join(refused)}." if refused else ""
        return f"Entries resumed. Trading {self._state_text(trading)} (was {before.value}).{tail}"

    def halt(self, reason: str) -> str:
        """Halt trading: entries refused, working entries cancelled, flattened if configured."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        if trading.gate.trading_state is TradingState.HALTED:
            return f"Already {self._state_text(trading)}."
        trading.halt(reason, self._now_ms(trading))
        if self.app.config.risk.flatten_on_halt:
            positions = "open positions are being closed at market (risk.flatten_on_halt)"
        else:
            positions = "open positions keep their stops and targets"
        return (
            f"Trading {self._state_text(trading)}: new entries and adds are refused, working "
            f"entry orders are cancelled, {positions}. /start resumes."
        )

    def flatten(self) -> str:
        """Close every open position at market now (reduce-only; protective orders cancelled)."""
        trading = self.app.trading
        if trading is None:
            return self._no_trading()
        open_positions = trading.portfolio.open_positions()
        if not open_positions:
            return "No open positions: nothing to flatten."
        held = ", ".join(f"{s} {format_amount(p.qty)}" for s, p in open_positions.items())
        sent = trading.flatten("operator flatten (Telegram)", self._now_ms(trading))
        missing = sorted(set(open_positions) - set(sent))
        tail = f" Refused for: {', '.join(missing)}." if missing else ""
        entries = "allowed" if trading.gate.trading_state is TradingState.ACTIVE else "refused"
        return (
            f"Closing at market: {held}. Their protective orders are cancelled; new entries stay "
            f"{entries} (/halt or /stopentry to stop them).{tail}"
        )

    def reload(self) -> str:
        """Reload promoted model bundles (verified again); configuration changes need a restart."""
        return self.app.reload_models() + " Configuration changes need a restart."
