"""Look for secret values, and their obvious encodings, in every byte a run left behind.

`needles(name, value)` gives the forms to look for: the raw value, URL-encoded, base64 (standard
and URL-safe, at each of the three byte alignments a value can take inside a longer encoded
text), hex; a Telegram token also by its secret half. `readable_blobs(path)` gives a file's raw
bytes plus what a reader would see after decoding: gzip decompressed, Parquet values and
metadata (its pages are compressed), SQLite tables dumped as SQL. `scan` reports every hit.
"""

from __future__ import annotations

import base64
import gzip
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

MIN_NEEDLE = 12  # shorter fragments could match by chance in binary files


@dataclass(frozen=True)
class Hit:
    where: str  # file (and the decoded view) or a named text
    secret: str  # which secret
    form: str  # which encoding matched


def _b64_cores(raw: bytes, alphabet: str) -> Iterator[tuple[str, bytes]]:
    """Base64 of raw as it appears inside any longer text: one core per alignment (0, 1, 2)."""
    encode = base64.urlsafe_b64encode if alphabet == "urlsafe" else base64.b64encode
    for shift in range(3):
        text = encode(b"\0" * shift + raw)
        # drop the quantum that mixes in the prefix, and the last (padding or partial) one
        core = text[4 if shift else 0 : -4]
        yield f"base64-{alphabet}@{shift}", core


def needles(value: str, *, telegram: bool = False) -> dict[str, bytes]:
    """Return {form: bytes to search} for one secret value."""
    raw = value.encode()
    forms: dict[str, bytes] = {"raw": raw, "url": quote(value, safe="").encode(),
                               "url-plus": quote_plus(value).encode(), "hex": raw.hex().encode()}  # fmt: skip
    for alphabet in ("standard", "urlsafe"):
        forms.update(_b64_cores(raw, alphabet))
    if "\n" in value:  # a PEM: also each line as JSON or a log would keep it
        forms["json-escaped"] = value.replace("\n", "\\n").encode()
        body = [line for line in value.splitlines() if line and not line.startswith("-----")]
        forms.update({f"pem-line-{i}": line.encode() for i, line in enumerate(body)})
    if telegram:
        half = value.partition(":")[2]
        forms["secret-half"] = half.encode()
        forms["secret-half-url"] = quote(half, safe="").encode()
        for alphabet in ("standard", "urlsafe"):
            forms.update({f"secret-half-{k}": v for k, v in _b64_cores(half.encode(), alphabet)})
    unique: dict[str, bytes] = {}
    for form, needle in forms.items():  # one form per distinct needle (url == raw when plain)
        if len(needle) >= MIN_NEEDLE and needle not in unique.values():
            unique[form] = needle
    return unique


def _sqlite_dump(path: Path) -> bytes:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(conn.iterdump()).encode("utf-8", "replace")
    finally:
        conn.close()


def _parquet_text(path: Path) -> bytes:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    metadata = table.schema.metadata or {}
    parts = [repr(table.to_pylist()), repr(metadata), repr(table.schema)]
    return "\n".join(parts).encode("utf-8", "replace")


def readable_blobs(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (view, bytes): the file's raw bytes, then its decoded forms when it has any."""
    data = path.read_bytes()
    yield "raw", data
    if data[:2] == b"\x1f\x8b":
        yield "gunzip", gzip.decompress(data)
    if data[:4] == b"PAR1":
        yield "parquet", _parquet_text(path)
    if data[:16] == b"SQLite format 3\0":
        yield "sqlite-dump", _sqlite_dump(path)


def scan_bytes(where: str, blob: bytes, secrets: Mapping[str, Mapping[str, bytes]]) -> list[Hit]:
    """Return a Hit for every secret form found in blob."""
    return [Hit(where, name, form) for name, forms in secrets.items()
            for form, needle in forms.items() if needle in blob]  # fmt: skip


def scan_files(
    files: Iterable[Path], secrets: Mapping[str, Mapping[str, bytes]], root: Path
) -> list[Hit]:
    """Scan every file in every readable view; return all hits."""
    hits: list[Hit] = []
    for path in files:
        for view, blob in readable_blobs(path):
            name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
            hits += scan_bytes(f"{name} [{view}]", blob, secrets)
    return hits


def files_under(root: Path) -> list[Path]:
    """Return every regular file under root, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file())
