"""Notices as Telegram text: plain text (no parse mode), so no reason string can break markup.

Signal notifications follow the reference system's one-liner, `₿ 60,518 📉📉📉 Score: -0.26`:

    level = 0                                            if |score| < threshold
    level = floor((|score| - threshold) / step) + 1     otherwise, capped at max_icons

one 📈 (score > 0) or 📉 (score < 0) per level. With the defaults (threshold 0.15, step 0.05) a
score of -0.26 is floor(0.11 / 0.05) + 1 = 3 icons; 0.15 gives 1, 0.20 gives 2, 0.1499 nothing.
The arithmetic is done in Decimal on the shortest repr of the floats, so 0.25 is exactly 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal

from engine.notices import (
    DailySummaryNotice,
    ErrorNotice,
    MismatchNotice,
    Notice,
    SignalNotice,
    StateNotice,
    TradeNotice,
)

MAX_MESSAGE_CHARS = 4096  # Telegram's limit for one message's text
GLYPHS = {"BTC": "₿", "ETH": "Ξ"}
_QUOTES = (
    "USDT USDC FDUSD BUSD TUSD USDP DAI BTC ETH BNB EUR TRY BRL GBP JPY AUD RUB UAH BIDR IDRT "
    "ZAR PLN RON ARS MXN COP CZK USD"
)
# longest first, so FDUSD is not read as ...USD and BUSD not as ...USD
QUOTE_ASSETS = tuple(sorted(_QUOTES.split(), key=len, reverse=True))
TRADE_HEADERS = {
    "entry": ("🟢", "ENTRY"),
    "exit": ("⚪", "EXIT"),
    "stop_loss": ("🛑", "STOP-LOSS"),
    "take_profit": ("🎯", "TAKE-PROFIT"),
    "flatten": ("⏹", "FLATTEN"),
}
CRYPTO_QUOTES = frozenset({"BTC", "ETH", "BNB"})  # PnL in these needs more than cents
STATE_ICONS = {"ACTIVE": "✅", "REDUCING": "⚠️", "HALTED": "⛔"}


def split_symbol(symbol: str) -> tuple[str, str]:
    """Return (base, quote) of a Binance symbol; quote is "" when no known quote asset ends it."""
    for quote in QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, ""


def coin_glyph(symbol: str) -> str:
    """Return ₿ for BTC pairs, Ξ for ETH pairs, else the base asset's name."""
    base, _ = split_symbol(symbol)
    return GLYPHS.get(base, base)


def format_price(price: float | Decimal) -> str:
    """Format a price for reading: 60,518 / 3,012.45 / 0.0001234 (4 significant digits below 1)."""
    value = abs(float(price))
    if value >= 1000:
        decimals = 0
    elif value >= 1:
        decimals = 2
    elif value == 0:
        return "0"
    else:
        decimals = 3 - math.floor(math.log10(value))
    return f"{float(price):,.{decimals}f}"


def format_amount(value: Decimal) -> str:
    """Format an exact quantity or price: thousands separators, no trailing zeros, no exponent."""
    text = f"{value.normalize():,f}"
    return "0" if text in ("-0", "0") else text


def format_money(value: Decimal | float, signed: bool = False) -> str:
    """Format money to cents with thousands separators (+ sign when signed); never -0.00."""
    if round(value, 2) == 0:
        return "+0.00" if signed else "0.00"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def format_pnl(value: Decimal, quote: str) -> str:
    """Format a signed PnL: cents in fiat and stablecoins, up to 8 decimals in BTC/ETH/BNB."""
    if quote not in CRYPTO_QUOTES:
        return format_money(value, signed=True)
    text = format_amount(value.quantize(Decimal("1e-8")))
    return text if text.startswith("-") else f"+{text}"


def utc_time(ts_ms: int) -> str:
    """Return HH:MM:SS UTC of an exchange timestamp (alerts can arrive late; this says when)."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M:%S UTC")


def signal_level(score: float, threshold: float, step: float, max_icons: int) -> int:
    """Return the signed icon count of a score (0 below the threshold); see the module doc."""
    magnitude = abs(Decimal(repr(score)))
    t, s = Decimal(repr(threshold)), Decimal(repr(step))
    if magnitude < t:
        return 0
    level = min(int(((magnitude - t) / s).to_integral_value(ROUND_FLOOR)) + 1, max_icons)
    return level if score > 0 else -level


def signal_icons(level: int) -> str:
    return "📈" * level if level > 0 else "📉" * -level


def format_signal(notice: SignalNotice, level: int) -> str:
    """Return `₿ 60,518 📉📉📉 Score: -0.26` for a signal at its icon level."""
    glyph = coin_glyph(notice.symbol)
    return f"{glyph} {format_price(notice.price)} {signal_icons(level)} Score: {notice.score:+.2f}"


def _contributions(contributions: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f"{name} {value:+.3f}" for name, value in contributions[:5])


def format_trade(n: TradeNotice) -> str:
    """Return a trade alert: what filled, its PnL, and why (reason, score, model, stop, target)."""
    icon, label = TRADE_HEADERS.get(n.kind, ("•", n.kind.upper()))
    _, quote = split_symbol(n.symbol)
    header = (
        f"{icon} {label} {n.symbol} {n.side} {format_amount(n.quantity)} @ "
        f"{format_amount(n.price)} ({utc_time(n.ts_ms)})"
    )
    lines = [header]
    if n.realized_pnl is not None:
        lines.append(f"PnL {format_pnl(n.realized_pnl, quote)} {quote}".rstrip())
    lines.append(f"reason: {n.reason or label.lower()}")
    why = []
    if n.score is not None:
        why.append(f"score {n.score:+.2f}")
    if n.threshold is not None:
        why.append(f"threshold {n.threshold:.2f}")
    if n.bundle_id:
        why.append(f"model {n.bundle_id}")
    if why:
        lines.append(" · ".join(why))
    if n.contributions:
        lines.append(f"top: {_contributions(n.contributions)}")
    levels = []
    if n.stop_price is not None:
        levels.append(f"stop {format_amount(n.stop_price)}")
    if n.target_price is not None:
        levels.append(f"target {format_amount(n.target_price)}")
    if levels:
        lines.append(" · ".join(levels))
    return "\n".join(lines)


def format_state(n: StateNotice) -> str:
    icon = STATE_ICONS.get(n.to_state, "•")
    return (
        f"{icon} Trading {n.to_state} (was {n.from_state}) ({utc_time(n.ts_ms)})\n"
        f"reason: {n.reason or 'not given'}"
    )


def format_error(n: ErrorNotice) -> str:
    return f"🚨 {n.component}: {n.message} ({utc_time(n.ts_ms)})\nA person must act."


def format_mismatch(n: MismatchNotice) -> str:
    return f"❗ Reconciliation mismatch {n.symbol} ({utc_time(n.ts_ms)})\n{n.detail}"


def format_daily(n: DailySummaryNotice) -> str:
    wins = f" · wins {n.wins} ({n.wins * 100 // n.trades} %)" if n.trades else ""
    return (
        f"📅 Daily summary {n.day}\n"
        f"equity {format_money(n.equity)} · PnL {format_money(n.pnl, signed=True)} "
        f"({n.pnl_pct:+.2f} %)\n"
        f"trades {n.trades}{wins}"
    )


def format_notice(notice: Notice) -> str | None:
    """Return the alert text of a non-signal notice, or None when it is not for people."""
    if isinstance(notice, TradeNotice):
        return format_trade(notice)
    if isinstance(notice, StateNotice):
        return format_state(notice)
    if isinstance(notice, ErrorNotice):
        return format_error(notice) if notice.needs_person else None
    if isinstance(notice, MismatchNotice):
        return format_mismatch(notice)
    if isinstance(notice, DailySummaryNotice):
        return format_daily(notice)
    return None


def fit_message(text: str) -> str:
    """Cut a text to Telegram's 4096-character limit (marking the cut)."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 2] + "\n…"


@dataclass
class SignalThrottle:
    """Say a symbol's signal when its icon level changes, or again after repeat_ms at one level.

    Exchange time (notice.ts_ms) decides, so it is deterministic. Falling silent resets the
    symbol: crossing the threshold again is news.
    """

    repeat_ms: int
    _last: dict[str, tuple[int, int]] = field(default_factory=dict)  # symbol -> (level, ts said)

    def should_say(self, symbol: str, level: int, ts_ms: int) -> bool:
        """Return True when this level of this symbol is worth a message now (and remember it)."""
        last = self._last
        if level == 0:
            last.pop(symbol, None)
            return False
        previous = last.get(symbol)
        if previous is not None and previous[0] == level and ts_ms - previous[1] < self.repeat_ms:
            return False
        last[symbol] = (level, ts_ms)
        return True
