"""Read recorded market-data tapes into a single ordered stream of raw frames.

Three layouts are understood (see ../shared/data/PROVENANCE.md):

* tickloop / hftbacktest tapes: gzip lines ``<ts_recv> <json>``, where json is a combined-stream
  envelope ``{"stream": ..., "data": ...}`` or a REST depth snapshot ``{"lastUpdateId", ...}``.
  ``ts_recv`` is nanoseconds (newer files) or microseconds (2023 files); the unit is inferred
  from the magnitude. Snapshots written by tickloop carry an extra ``"symbol"`` key; older
  single-symbol tapes do not, so their symbol is taken from the tape's stream names.
* cryptofeed captures (a folder or one file): ``<unix_float>: <json>`` websocket lines,
  ``https://.../depth?symbol=X&limit=N -> <unix_float>: <json>`` snapshot lines, connection
  headers and ``configuration:`` lines (skipped). A folder's ``*.ws.*`` and ``*.http.*`` files are
  merged by receive time.

Frames keep their raw JSON bytes: replay feeds them to the very parser the live feed uses.
"""

from __future__ import annotations

import gzip
import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.model import Market

_SNAPSHOT_URL = re.compile(rb"^https?://\S+/depth\?symbol=([A-Z0-9_]+)\S* -> ([0-9.]+): ")
_NS_THRESHOLD = 10**17  # ns epochs are ~1.7e18, µs epochs ~1.7e15


@dataclass(frozen=True, slots=True)
class TapeFrame:
    """One recorded frame: a websocket envelope, or a REST depth snapshot of `symbol`."""

    ts_recv_ns: int
    payload: bytes
    snapshot_symbol: str | None = None  # set for REST snapshots, None for websocket frames

    @property
    def is_snapshot(self) -> bool:
        return self.snapshot_symbol is not None


class TapeFormatError(ValueError):
    """The file is not a market-data tape this reader understands."""


def _open_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as raw:
        magic = raw.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def _stream_symbol(payload: bytes) -> str | None:
    start = payload.find(b'"stream":"')
    if start < 0:
        return None
    start += 10
    end = payload.find(b"@", start)
    if end < 0:
        return None
    return payload[start:end].decode().upper()


def _read_native(path: Path) -> Iterator[TapeFrame]:
    """`<ts_recv> <json>` lines; snapshots without a symbol take the tape's only symbol."""
    pending: list[tuple[int, bytes]] = []  # snapshots seen before any stream names a symbol
    tape_symbol: str | None = None
    for lineno, line in enumerate(_open_lines(path), 1):
        head, sep, payload = line.partition(b" ")
        if not sep or not head.isdigit():
            raise TapeFormatError(f"{path}:{lineno}: expected '<ts_recv> <json>'")
        ts = int(head)
        ts_ns = ts if ts >= _NS_THRESHOLD else ts * 1000
        if payload.startswith(b'{"stream"'):
            if tape_symbol is None:
                tape_symbol = _stream_symbol(payload)
                for pts, ppayload in pending:
                    yield TapeFrame(pts, ppayload, tape_symbol or "")
                pending.clear()
            yield TapeFrame(ts_ns, payload)
        elif b'"lastUpdateId"' in payload[:40] or b'"symbol"' in payload[:40]:
            symbol = _embedded_symbol(payload) or tape_symbol
            if symbol is None:
                pending.append((ts_ns, payload))
            else:
                yield TapeFrame(ts_ns, payload, symbol)
        else:
            yield TapeFrame(ts_ns, payload)  # unknown shape: the parser counts it as malformed
    for pts, ppayload in pending:
        yield TapeFrame(pts, ppayload, tape_symbol or "")


def _embedded_symbol(payload: bytes) -> str | None:
    m = re.match(rb'\{"symbol":"([A-Z0-9_]+)"', payload)
    return m.group(1).decode() if m else None


def _read_cryptofeed_file(path: Path) -> Iterator[TapeFrame]:
    for line in _open_lines(path):
        if line.startswith((b"wss://", b"ws://", b"configuration:")):
            continue
        m = _SNAPSHOT_URL.match(line)
        if m:
            if b"/depth?" not in line[: m.end()]:
                continue
            ts_ns = int(float(m.group(2)) * 1e9)
            yield TapeFrame(ts_ns, line[m.end() :], m.group(1).decode())
            continue
        if line.startswith(b"http"):
            continue  # exchangeInfo and other REST bodies
        head, sep, payload = line.partition(b": ")
        if not sep:
            continue
        try:
            ts_ns = int(float(head) * 1e9)
        except ValueError:
            continue
        yield TapeFrame(ts_ns, payload)


def _merge(iterables: Iterable[Iterator[TapeFrame]]) -> Iterator[TapeFrame]:
    return heapq.merge(*iterables, key=lambda f: f.ts_recv_ns)


def _looks_cryptofeed(path: Path) -> bool:
    for line in _open_lines(path):
        return not line[:1].isdigit() or b": {" in line[:40]
    return False


def read_tape(path: str | Path) -> Iterator[TapeFrame]:
    """Yield every frame of a tape file or a cryptofeed capture folder, in receive order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name != "LICENSE")
        if not files:
            raise TapeFormatError(f"{p}: no tape files in folder")
        return _merge(_read_cryptofeed_file(f) for f in files)
    if not p.exists():
        raise TapeFormatError(f"{p}: no such file")
    if _looks_cryptofeed(p):
        return _read_cryptofeed_file(p)
    return _read_native(p)


def tape_symbols(path: str | Path) -> list[str]:
    """Return the symbols named by a tape's stream frames and snapshots, in first-seen order."""
    seen: dict[str, None] = {}
    for frame in read_tape(path):
        sym = frame.snapshot_symbol or _stream_symbol(frame.payload)
        if sym:
            seen.setdefault(sym, None)
    return list(seen)


def infer_market(path: str | Path) -> Market:
    """Return USDM when the tape's depth diffs carry `pu` (futures), else SPOT."""
    for frame in read_tape(path):
        if b'"depthUpdate"' in frame.payload:
            return Market.USDM if b'"pu":' in frame.payload else Market.SPOT
    return Market.SPOT
