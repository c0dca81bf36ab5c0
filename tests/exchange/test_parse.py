"""FrameDecoder on real tape lines and on every kind of bad frame: counted, logged, never raises."""

from __future__ import annotations

import json
import math
from itertools import islice
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from engine.events import (
    BookTickerUpdated,
    DepthDiff,
    MarkPriceUpdated,
    ServerShutdownAnnounced,
    TradePrinted,
)
from engine.model import Market
from engine.tape import read_tape
from exchange.binance.parse import FrameDecoder, MalformedFrame

TS = 1_723_161_253_937_085_768


def first_frame(path: Path, needle: bytes) -> bytes:
    for frame in read_tape(path):
        if needle in frame.payload[:60] and not frame.is_snapshot:
            return frame.payload
    raise AssertionError(f"{needle!r} not in {path}")


def snapshot_payload(path: Path) -> tuple[bytes, str]:
    for frame in read_tape(path):
        if frame.is_snapshot:
            assert frame.snapshot_symbol
            return frame.payload, frame.snapshot_symbol
    raise AssertionError(f"no snapshot in {path}")


def levels(raw: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(p), float(q)) for p, q in raw]


# ---------------------------------------------------------------- real frames, every kind


def test_spot_depth_update(tapes) -> None:
    payload = first_frame(tapes["spot_btcusdt"], b"@depth")
    raw = json.loads(payload)["data"]
    ev = FrameDecoder(Market.SPOT).decode(payload, TS)
    assert isinstance(ev, DepthDiff)
    assert (ev.symbol, ev.ts_event_ms, ev.ts_recv_ns) == ("BTCUSDT", raw["E"], TS)
    assert (ev.first_update_id, ev.final_update_id, ev.prev_final_update_id) == (
        raw["U"],
        raw["u"],
        None,
    )
    assert ev.bids == levels(raw["b"]) and ev.asks == levels(raw["a"])
    assert any(q == 0.0 for _, q in ev.bids)  # "0.00000000" decodes to a numeric zero


def test_usdm_depth_update_has_pu_and_numeric_zero(tapes) -> None:
    payload = first_frame(tapes["usdm_btcusdt"], b"@depth")
    raw = json.loads(payload)["data"]
    ev = FrameDecoder(Market.USDM).decode(payload, TS)
    assert isinstance(ev, DepthDiff)
    assert ev.prev_final_update_id == raw["pu"] and ev.final_update_id == raw["u"]
    assert ev.bids == levels(raw["b"]) and ev.asks == levels(raw["a"])
    zero_prices = [p for p, q in raw["b"] if q == "0.000"]
    assert zero_prices and all(q == 0.0 for p, q in ev.bids if f"{p:.2f}" in zero_prices)


@pytest.mark.parametrize(
    ("tape", "market"), [("spot_btcusdt", Market.SPOT), ("usdm_btcusdt", Market.USDM)]
)
def test_trade(tapes, tape, market) -> None:
    payload = first_frame(tapes[tape], b"@trade")
    raw = json.loads(payload)["data"]
    ev = FrameDecoder(market).decode(payload, TS)
    assert ev == TradePrinted(
        symbol=raw["s"],
        ts_event_ms=raw["E"],
        ts_trade_ms=raw["T"],
        ts_recv_ns=TS,
        trade_id=raw["t"],
        price=float(raw["p"]),
        qty=float(raw["q"]),
        buyer_is_maker=raw["m"],
        trade_count=1,
        first_trade_id=raw["t"],
    )


def test_agg_trade_counts_trades(shared_data) -> None:
    folder = shared_data / "binance-captures-2021" / "2021-04-05_usdm_5sym"
    payload = first_frame(folder, b"@aggTrade")
    raw = json.loads(payload)["data"]
    ev = FrameDecoder(Market.USDM).decode(payload, TS)
    assert isinstance(ev, TradePrinted)
    assert ev.trade_count == raw["l"] - raw["f"] + 1
    assert (ev.trade_id, ev.first_trade_id) == (raw["l"], raw["f"])
    assert (ev.price, ev.qty, ev.ts_trade_ms) == (float(raw["p"]), float(raw["q"]), raw["T"])


def test_spot_book_ticker_has_no_event_time(tapes) -> None:
    payload = first_frame(tapes["spot_btcusdt"], b"@bookTicker")
    raw = json.loads(payload)["data"]
    ev = FrameDecoder(Market.SPOT).decode(payload, TS)
    assert ev == BookTickerUpdated(
        raw["s"], raw["u"], None, TS, float(raw["b"]), float(raw["B"]), float(raw["a"]),
        float(raw["A"]),
    )  # fmt: skip


def test_usdm_book_ticker(shared_data) -> None:
    folder = shared_data / "binance-captures-2021" / "2021-07-22_usdm_4sym"
    payload = first_frame(folder, b"@bookTicker")
    raw = json.loads(payload)["data"]
    ev = FrameDecoder(Market.USDM).decode(payload, TS)
    assert isinstance(ev, BookTickerUpdated)
    assert (ev.ts_event_ms, ev.update_id, ev.ask) == (raw["E"], raw["u"], float(raw["a"]))


def test_mark_price(tapes) -> None:
    payload = first_frame(tapes["usdm_btcusdt_2023a"], b"@markPrice")
    raw = json.loads(payload)["data"]
    ev = FrameDecoder(Market.USDM).decode(payload, TS)
    assert ev == MarkPriceUpdated(
        raw["s"], raw["E"], TS, float(raw["p"]), float(raw["i"]), float(raw["r"]), raw["T"]
    )


def test_delivery_mark_price_with_empty_funding_rate() -> None:
    payload = b'{"e":"markPriceUpdate","E":1,"s":"BTCUSD_210625","p":"57000.1","i":"","r":"","T":0}'
    ev = FrameDecoder(Market.USDM).decode(payload, TS)
    assert isinstance(ev, MarkPriceUpdated)
    assert math.isnan(ev.funding_rate) and math.isnan(ev.index_price)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"e":"serverShutdown","E":1770123456789}',
        b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}',
        b'{"stream":"unknown@name","data":{"e":"serverShutdown","E":1770123456789}}',
    ],
)
def test_server_shutdown(payload) -> None:
    decoder = FrameDecoder(Market.SPOT)
    assert decoder.decode(payload, TS) == ServerShutdownAnnounced(1770123456789, TS)
    assert decoder.counters["serverShutdown"] == 1


def test_raw_ws_payloads_and_key_order_variants(tapes) -> None:
    decoder = FrameDecoder(Market.SPOT)
    payload = first_frame(tapes["spot_btcusdt"], b"@depth")
    data = json.loads(payload)["data"]
    ev = decoder.decode(payload, TS)
    raw_ev = decoder.decode(json.dumps(data).encode(), TS)  # unwrapped /ws payload
    reordered = json.dumps({"data": data, "stream": "btcusdt@depth@100ms"}, indent=1).encode()
    assert raw_ev == ev and decoder.decode(reordered, TS) == ev
    spot_ticker = (
        b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",'
        b'"a":"25.36520000","A":"40.66000000"}'
    )
    assert isinstance(decoder.decode(spot_ticker, TS), BookTickerUpdated)
    assert decoder.counters["depthUpdate"] == 3 and decoder.counters["bookTicker"] == 1


def test_text_and_buffer_payloads_decode_like_bytes(tapes) -> None:
    decoder = FrameDecoder(Market.SPOT)
    payload = first_frame(tapes["spot_btcusdt"], b"@trade")
    expected = decoder.decode(payload, TS)
    assert isinstance(expected, TradePrinted)
    assert decoder.decode(payload.decode(), TS) == expected  # aiohttp TEXT frames are str
    assert decoder.decode(bytearray(payload), TS) == expected
    assert decoder.decode(memoryview(payload), TS) == expected
    assert decoder.decode(None, TS) is None  # type: ignore[arg-type]
    assert decoder.counters["trade"] == 4 and decoder.counters["malformed"] == 1


def test_whole_tape_every_frame_counted_once(tapes) -> None:
    decoder = FrameDecoder(Market.USDM)
    frames = [f for f in read_tape(tapes["usdm_btcusdt_2023a"]) if not f.is_snapshot]
    events = [decoder.decode(f.payload, f.ts_recv_ns) for f in frames]
    assert all(e is not None for e in events)
    assert sum(decoder.counters.values()) == len(frames)
    assert decoder.counters["markPriceUpdate"] == 99


@pytest.mark.parametrize("symbol_len", range(4, 30))
def test_stream_names_of_every_length_route_the_same_when_seen_again(symbol_len) -> None:
    """The route cache is keyed by a frame's first bytes when they hold the whole stream name:
    names around that window's edge, seen twice, decode as the first time; a partial-depth
    stream sharing the symbol (and most of the name) stays unknown."""
    symbol = ("X" * symbol_len)[:-3] + "USD"
    trade = {**TRADE, "s": symbol, "t": 7, "p": "2.5", "q": "0.125", "T": 3, "E": 4}
    expected = TradePrinted(symbol, 4, 3, TS, 7, 2.5, 0.125, True, 1, 7)
    depth = {**DEPTH, "s": symbol, "b": [["1.5", "2"]], "a": [["1.75", "0"]]}
    expected_diff = DepthDiff(symbol, 1, TS, 1, 2, None, [(1.5, 2.0)], [(1.75, 0.0)])
    decoder = FrameDecoder(Market.SPOT)
    for _ in range(2):
        assert decoder.decode(frame(f"{symbol.lower()}@trade", trade), TS) == expected
        assert decoder.decode(frame(f"{symbol.lower()}@depth@100ms", depth), TS) == expected_diff
        assert decoder.decode(frame(f"{symbol.lower()}@depth@1000ms", depth), TS) == expected_diff
        assert decoder.decode(frame(f"{symbol.lower()}@depth5@100ms", depth), TS) is None
        assert decoder.decode(frame(f"{symbol.lower()}@trade", {**trade, "p": "x"}), TS) is None
    assert decoder.counters["trade"] == 2 and decoder.counters["depthUpdate"] == 4
    assert decoder.counters["unknown"] == 2 and decoder.counters["malformed"] == 2


def test_events_are_immutable_values(tapes) -> None:
    payload = first_frame(tapes["spot_btcusdt"], b"@trade")
    ev = FrameDecoder(Market.SPOT).decode(payload, TS)
    assert isinstance(ev, TradePrinted)
    with pytest.raises(AttributeError):
        ev.price = 1.0  # type: ignore[misc]
    same = TradePrinted(**msgspec.structs.asdict(ev))
    assert same == ev and hash(same) == hash(ev)
    moved = msgspec.structs.replace(ev, ts_recv_ns=TS + 1)
    assert moved != ev and moved.ts_recv_ns == TS + 1 and moved.price == ev.price


# ---------------------------------------------------------------- snapshots


def test_spot_and_usdm_snapshots(tapes) -> None:
    payload, symbol = snapshot_payload(tapes["spot_btcusdt"])
    raw = json.loads(payload)
    snap = FrameDecoder(Market.SPOT).decode_snapshot(payload, symbol, TS)
    assert (snap.symbol, snap.last_update_id, snap.ts_event_ms) == (
        "BTCUSDT",
        raw["lastUpdateId"],
        None,
    )
    assert snap.bids == levels(raw["bids"]) and snap.asks == levels(raw["asks"])
    payload, symbol = snapshot_payload(tapes["usdm_btcusdt"])
    raw = json.loads(payload)
    snap = FrameDecoder(Market.USDM).decode_snapshot(payload, symbol, TS)
    assert snap.ts_event_ms == raw["E"] and len(snap.bids) == len(raw["bids"])


@pytest.mark.parametrize(
    ("market", "payload", "reason"),
    [
        (Market.SPOT, b'{"lastUpdateId":1,"bids":[["1.0"]],"asks":[]}', "length 2"),
        (Market.SPOT, b'{"lastUpdateId":"x","bids":[],"asks":[]}', "lastUpdateId"),
        (Market.SPOT, b'{"bids":[],"asks":[]}', "lastUpdateId"),
        (Market.SPOT, b'{"lastUpdateId":1,"bids":[["1.0","2.0"]]', "truncated"),
        (Market.SPOT, b"<html>502 Bad Gateway</html>", "JSON"),
        (Market.USDM, b'{"lastUpdateId":1,"bids":[],"asks":[]}', "without E"),
    ],
)
def test_bad_snapshots_raise_malformed_frame(market, payload, reason) -> None:
    with pytest.raises(MalformedFrame) as info:
        FrameDecoder(market).decode_snapshot(payload, "BTCUSDT", TS)
    assert isinstance(info.value, ValueError)
    assert "BTCUSDT" in str(info.value)
    assert reason.lower() in str(info.value).lower()


# ---------------------------------------------------------------- bad frames: counted, never raise


def frame(stream: str, data: object) -> bytes:
    return json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode()


TRADE = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "1", "q": "1", "T": 1, "m": True}
DEPTH = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [], "a": []}
AGG = {"e": "aggTrade", "E": 1, "s": "X", "a": 1, "p": "1", "q": "1", "f": 1, "l": 5, "T": 1,
       "m": True}  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "counter"),
    [
        (b'{"result":null,"id":1}', "control"),
        (b'{"result":["btcusdt@trade"],"id":3}', "control"),
        (b'{"code":2,"msg":"Invalid request: unknown variant","id":1}', "control"),
        (b'{"error":{"code":3,"msg":"Invalid JSON"},"id":null}', "control"),
        (frame("btcusdt@kline_1m", {"e": "kline", "E": 1, "s": "BTCUSDT", "k": {}}), "unknown"),
        # USDⓈ-M partial depth says "depthUpdate" but is a top-N picture, not a diff
        (frame("btcusdt@depth5@100ms", {**DEPTH, "pu": 0}), "unknown"),
        (b'{"e":"listenKeyExpired","E":1}', "unknown"),
        (b"{}", "unknown"),
        (b"", "malformed"),
        (b"not json", "malformed"),
        (b"[1,2,3]", "malformed"),
        (frame("btcusdt@trade", None), "malformed"),
        (b'{"stream":"btcusdt@trade"}', "malformed"),
        (frame("btcusdt@trade", {**TRADE, "t": "abc"}), "malformed"),
        (frame("btcusdt@trade", {**TRADE, "p": "nan"}), "malformed"),
        (frame("btcusdt@trade", {**TRADE, "p": "-5"}), "malformed"),
        (frame("btcusdt@trade", {k: v for k, v in TRADE.items() if k != "q"}), "malformed"),
        (frame("btcusdt@depth@100ms", {**DEPTH, "b": "oops"}), "malformed"),
        (frame("btcusdt@depth@100ms", {**DEPTH, "b": [["1", "2", "3"]]}), "malformed"),
        (frame("btcusdt@aggTrade", {**AGG, "f": 9}), "malformed"),  # last id < first id
    ],
)
def test_bad_or_foreign_frames_return_none_and_are_counted(payload, counter) -> None:
    decoder = FrameDecoder(Market.SPOT)
    assert decoder.decode(payload, TS) is None
    assert decoder.counters[counter] == 1
    assert sum(decoder.counters.values()) == 1


def test_usdm_depth_without_pu_is_malformed() -> None:
    payload = frame("btcusdt@depth", {**DEPTH, "T": 1})  # no pu
    decoder = FrameDecoder(Market.USDM)
    assert decoder.decode(payload, TS) is None and decoder.counters["malformed"] == 1
    assert isinstance(FrameDecoder(Market.SPOT).decode(payload, TS), DepthDiff)


def test_truncated_real_frames_never_raise(tapes) -> None:
    decoder = FrameDecoder(Market.USDM)
    payloads = [
        f.payload for f in islice(read_tape(tapes["usdm_btcusdt"]), 200) if not f.is_snapshot
    ]
    cuts = 0
    for payload in payloads:
        for end in range(0, len(payload) - 1, max(1, len(payload) // 17)):
            assert decoder.decode(payload[:end], TS) is None
            cuts += 1
    assert decoder.counters["malformed"] == cuts


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data) -> None:
    decoder = FrameDecoder(Market.SPOT)
    decoder.decode(data, TS)
    assert sum(decoder.counters.values()) == 1


_REAL = (  # the first USDⓈ-M depth frame of the 2024 tape, cut to three levels
    b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256299,'
    b'"T":1723161256298,"s":"BTCUSDT","U":5123107832006,"u":5123107837557,"pu":5123107831937,'
    b'"b":[["58710.20","0.014"],["61510.90","0.000"]],"a":[["61800.30","1.500"]]}}'
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_REAL) - 1), st.binary(min_size=1, max_size=4))
def test_mutated_real_frame_never_raises(pos, junk) -> None:
    decoder = FrameDecoder(Market.USDM)
    decoder.decode(_REAL[:pos] + junk + _REAL[pos + 1 :], TS)
    assert sum(decoder.counters.values()) == 1


def test_bad_frame_storm_is_logged_rate_limited() -> None:
    bad = b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1}}'
    with capture_logs() as logs:
        decoder = FrameDecoder(Market.SPOT)
        for i in range(500):
            decoder.decode(bad, TS + i * 1_000_000)  # 500 frames within half a second
        decoder.decode(bad, TS + 11_000_000_000)  # 11 s later
    assert decoder.counters["malformed"] == 501
    assert [(e["event"], e["stream"], e["suppressed"]) for e in logs] == [
        ("frame_malformed", "btcusdt@trade", 0),
        ("frame_malformed", "btcusdt@trade", 499),
    ]
    assert logs[0]["log_level"] == "warning" and "reason" in logs[0]
