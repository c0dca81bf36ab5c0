"""Recording: raw-frame tapes (`tickloop record`) and Parquet rows/candles (`tickloop collect`).

Tapes use the layout of ../shared/data/binance-tapes: gzip lines `<ts_recv_ns> <json>`, the json
being the frame exactly as received, or a REST depth snapshot body. Snapshots get a leading
`"symbol"` key so multi-symbol tapes stay unambiguous (engine.tape reads both forms).

Collected rows and candles go to `<dir>/<SYMBOL>/<YYYY-MM-DD>.rows.parquet` and
`.candles.parquet` (UTC days of exchange time). The open day's files are rewritten every
`rewrite_every_rows` rows and on close, so a crash loses at most that many rows.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from engine.marketdata import SymbolMarketData


class TapeWriter:
    """Append raw frames and snapshots to a gzip tape."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = gzip.open(path, "wb", compresslevel=5)
        self.frames = 0
        self.snapshots = 0

    def write_frame(self, ts_recv_ns: int, payload: bytes) -> None:
        self._fh.write(b"%d %s\n" % (ts_recv_ns, payload.replace(b"\n", b"")))
        self.frames += 1

    def write_snapshot(self, ts_recv_ns: int, symbol: str, payload: bytes) -> None:
        body = payload.strip().replace(b"\n", b"")
        if body.startswith(b"{") and not body.startswith(b'{"symbol"'):
            body = b'{"symbol":"%s",%s' % (symbol.encode(), body[1:])
        self._fh.write(b"%d %s\n" % (ts_recv_ns, body))
        self.snapshots += 1

    def close(self) -> None:
        self._fh.close()


def _day_of(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d")


class _DayBuffer:
    def __init__(self) -> None:
        self.chunks: list[pd.DataFrame] = []
        self.unwritten = 0


class ParquetCollector:
    """Collect closed rows and candles per symbol per UTC day into Parquet files."""

    def __init__(self, out_dir: Path, *, rewrite_every_rows: int = 600) -> None:
        self.out_dir = out_dir
        self.rewrite_every_rows = rewrite_every_rows
        self._buffers: dict[tuple[str, str, str], _DayBuffer] = {}
        self._candles_seen: dict[str, int] = {}
        self.files_written = 0

    def __call__(self, state: SymbolMarketData, n_rows: int) -> None:
        self._add(state.symbol, "rows", state.rows, n_rows)
        new = state.candles.total_appended - self._candles_seen.get(state.symbol, 0)
        if new:
            self._candles_seen[state.symbol] = state.candles.total_appended
            self._add(state.symbol, "candles", state.candles, new)

    def _add(self, symbol: str, kind: str, ring, n: int) -> None:  # type: ignore[no-untyped-def]
        frame = pd.DataFrame({name: np.array(ring.window(name, n)) for name in ring.columns})
        for day, part in frame.groupby(frame["ts"].map(_day_of), sort=True):
            key = (symbol, str(day), kind)
            for old_key in [k for k in self._buffers if k[0] == symbol and k[2] == kind and k[1] < str(day)]:
                self._write(old_key)
                del self._buffers[old_key]  # the day is over: free its memory
            buf = self._buffers.get(key)
            if buf is None:
                buf = self._buffers[key] = _DayBuffer()
                buf.chunks.extend(self._earlier_rows_of_day(key, int(part["ts"].iloc[0])))
            buf.chunks.append(part)
            buf.unwritten += len(part)
            if buf.unwritten >= self.rewrite_every_rows:
                self._write(key)

    def _target(self, key: tuple[str, str, str]) -> Path:
        symbol, day, kind = key
        return self.out_dir / symbol / f"{day}.{kind}.parquet"

    def _earlier_rows_of_day(self, key: tuple[str, str, str], first_ts_ms: int) -> list[pd.DataFrame]:
        """Keep what an earlier run of the same day wrote, so a restart appends instead of overwriting."""
        target = self._target(key)
        if not target.is_file():
            return []
        earlier = pd.read_parquet(target)
        return [earlier[earlier["ts"] < first_ts_ms]]

    def _write(self, key: tuple[str, str, str]) -> None:
        buf = self._buffers[key]
        if not buf.chunks:
            return
        target = self._target(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.concat(buf.chunks, ignore_index=True)
        buf.chunks = [frame]
        tmp = target.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(target)  # atomic: readers never see a half-written file
        buf.unwritten = 0
        self.files_written += 1

    def close(self) -> None:
        for key in list(self._buffers):
            self._write(key)
