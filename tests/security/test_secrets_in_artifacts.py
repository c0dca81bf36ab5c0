"""No secret reaches any artifact of a full offline session of the real CLI.

Each RunSpec runs the engine as subprocesses with fresh random secrets in the environment
(see session_harness.py), with everything that writes switched on; then every file the session
wrote (logs, journal bytes and SQL dump, WAL, Parquet values, gzip tapes, HTML reports), every
stdout/stderr, every text sent to Telegram and every dashboard body is searched for each
secret in each obvious encoding (secret_scan.py). The search can fail: the secrets are shown to
have been used (the fake Bot API only answers 200 to the right token, the dashboard refuses
without its token, the simulator accepted requests signed with the key and secret), and the
scanner finds a secret planted in each kind of file.

To add a run configuration (e.g. mode testnet at the simulator with trading), add a RunSpec to
SPECS: every test below runs for it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from secret_scan import files_under, needles, scan_bytes, scan_files
from session_harness import (
    CHAT,
    STRANGER,
    EngineCommand,
    RunSpec,
    Session,
    run_session,
    train_tiny_bundle,
)

pytestmark = pytest.mark.flaky(reruns=1)  # real sockets and subprocesses on a loaded machine

# paper trading three ways at once: `demo` (its own simulator inside the process), and `collect`
# and `record` at the session's simulator, stopped by SIGTERM once its replay is over (graceful
# shutdown; no --duration, which a slow start-up would eat into)
PAPER = RunSpec(
    "paper",
    "paper",
    (
        EngineCommand("demo", lambda w, cfg: ["demo", "-c", str(cfg), "--tape", str(w.tape),
                                              "--speed", "60"]),
        EngineCommand("collect", lambda w, cfg: ["collect", "-c", str(cfg), "--out", "collect/rows"],
                      at_sim=True),
        EngineCommand("record", lambda w, cfg: ["record", "-c", str(cfg), "--out", "record/tape.gz"],
                      at_sim=True),
    ),
    sim_speed=60.0,
)  # fmt: skip
# the artifacts each spec must have written (globs under the session root), so an empty run fails
EXPECTED = {
    "paper": ["demo/logs/tickloop.jsonl", "demo/data/demo_journal.sqlite", "demo/data/*.report.html",
              "collect/logs/tickloop.jsonl", "collect/data/journal.sqlite", "collect/rows/**/*.parquet",
              "record/tape.gz", "record/logs/tickloop.jsonl"],
}  # fmt: skip
SPECS = [PAPER]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory, tapes: dict[str, Path]) -> Path:
    models = tmp_path_factory.mktemp("models")
    train_tiny_bundle(tapes["spot_btcusdt"], models)
    return models


@pytest.fixture(scope="module", params=SPECS, ids=[s.id for s in SPECS])
def session(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tapes: dict[str, Path],
    models_dir: Path,
) -> Session:
    spec: RunSpec = request.param
    root = tmp_path_factory.mktemp(spec.id)
    return asyncio.run(run_session(spec, root, tapes["spot_btcusdt"], models_dir))


def _outputs(session: Session) -> list[tuple[str, str]]:
    procs = [*session.processes, session.doctor, *session.reports]
    return [
        (f"{p.name} {stream}", getattr(p, stream)) for p in procs for stream in ("stdout", "stderr")
    ]


def _log_events(session: Session) -> list[dict]:
    events = []
    for path in session.root.rglob("tickloop.jsonl*"):
        for line in path.read_text(encoding="utf-8").splitlines():
            events.append(json.loads(line))
    return events


def test_the_session_ran_and_wrote_every_artifact(session: Session) -> None:
    for proc in session.processes:
        assert proc.returncode == 0, f"{proc.name}: {proc.stderr[-3000:]}"
    for proc in session.reports:
        assert proc.returncode == 0, f"{proc.name}: {proc.stderr[-2000:]}"
    assert session.reports, "no journal was written"
    for pattern in EXPECTED[session.spec.id]:
        assert list(session.root.glob(pattern)), f"nothing matches {pattern}"
    # paper trading placed orders: the journal holds intents to scan, not just a schema
    for journal in session.root.rglob("*journal.sqlite"):
        with sqlite3.connect(journal) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            intents = (
                conn.execute("SELECT COUNT(*) FROM intents").fetchone()[0]
                if "intents" in tables
                else 0
            )
        assert intents > 0, f"{journal}: no order intent journaled (tables {sorted(tables)})"


def test_the_secrets_were_used(session: Session) -> None:
    requests = session.telegram_requests
    # the fake answers 401 to any other token: a 200 means the run used TELEGRAM_TOKEN
    assert any(r.method == "getMe" and r.status == 200 for r in requests)
    assert any(r.method == "sendMessage" and r.status == 200 for r in requests)
    # and the faults that echo the token's URL path back into error texts were delivered
    assert {(r.method, r.status) for r in requests} >= {("sendMessage", 500), ("getUpdates", 502)}
    for proc in session.processes:
        assert proc.dashboard_statuses == {
            "page, no token": 401,
            "snapshot, wrong token": 403,
            "page, token": 200,
            "snapshot, bearer token": 200,
        }, proc.name
    # a simulator verified signatures made with BINANCE_API_SECRET under BINANCE_API_KEY
    doctor = set(session.doctor_key_use.accepted_signed)
    assert {"GET /api/v3/account", "GET /sapi/v1/account/apiRestrictions"} <= doctor, (
        session.doctor_key_use
    )
    if session.spec.engine_signs_requests:  # the engine's own orders, signed with the keys
        engine = session.engine_key_use.accepted_signed
        assert any(path.startswith("POST ") for path in engine), session.engine_key_use
    assert any(line.startswith("OK") and "keys accepted" in line
               for line in session.doctor.stdout.splitlines()), session.doctor.stdout  # fmt: skip


def test_no_secret_in_any_file_output_or_message(session: Session) -> None:
    forms = {name: needles(value, telegram=name == "TELEGRAM_TOKEN")
             for name, value in session.secrets.env().items()}  # fmt: skip
    files = files_under(session.root)
    hits = scan_files(files, forms, session.root)
    for where, text in _outputs(session):
        hits += scan_bytes(where, text.encode(), forms)
    for i, text in enumerate(session.telegram_texts):
        hits += scan_bytes(f"telegram request field {i}", text.encode(), forms)
    for proc in session.processes:
        for i, body in enumerate(proc.dashboard_bodies):
            hits += scan_bytes(f"{proc.name} dashboard body {i}", body.encode(), forms)
    assert hits == []


def test_token_echoing_errors_were_logged_redacted(session: Session) -> None:
    events = _log_events(session)
    echoed = [e for e in events if "/bot" in json.dumps(e, ensure_ascii=False)]
    assert echoed, "no log line carries the echoed request path: the fault texts were not logged"
    assert all("/bot***" in json.dumps(e, ensure_ascii=False) for e in echoed), echoed


def test_unknown_chat_is_refused_and_logged_in_the_real_log(session: Session) -> None:
    sent_to = [
        r.fields.get("chat_id") for r in session.telegram_requests if r.method == "sendMessage"
    ]
    assert str(STRANGER) not in sent_to
    assert any(r.method == "sendMessage" and r.status == 200 and r.fields.get("chat_id") == str(CHAT)
               and r.fields.get("text", "").startswith("mode paper") for r in session.telegram_requests), sent_to  # fmt: skip
    refused = [e for e in _log_events(session) if e.get("event") == "telegram_refused"]
    assert refused, "no telegram_refused line in any log file"
    assert {(e["chat_id"], e["command"], e["level"]) for e in refused} == {
        (STRANGER, "/balance", "warning")
    }


# -- the scanner can fail: a secret planted in each kind of artifact is found ----------------------

PLANTED = "tlkPlanted0123456789abcdefABCDEF0123456789"


def test_scanner_finds_a_planted_secret_in_every_artifact_kind(tmp_path: Path) -> None:
    import base64
    from urllib.parse import quote

    (tmp_path / "log.jsonl").write_text(json.dumps({"event": "x", "url": f"/p?k={quote(PLANTED)}"}))
    (tmp_path / "b64.txt").write_text(
        "prefix:" + base64.b64encode(b"ab" + PLANTED.encode()).decode()
    )
    with sqlite3.connect(tmp_path / "j.sqlite") as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (PLANTED,))
    pd.DataFrame({"v": [PLANTED] * 500}).to_parquet(tmp_path / "rows.parquet", compression="snappy")
    (tmp_path / "tape.gz").write_bytes(gzip.compress(PLANTED.encode() * 3))
    forms = {"K": needles(PLANTED)}
    found = {hit.where.split(" ")[0] for hit in scan_files(files_under(tmp_path), forms, tmp_path)}
    assert found == {"log.jsonl", "b64.txt", "j.sqlite", "rows.parquet", "tape.gz"}
    # compressed views: found after decoding, which is what the scan adds
    views = {hit.where for hit in scan_files(files_under(tmp_path), forms, tmp_path)}
    assert "tape.gz [gunzip]" in views and "rows.parquet [parquet]" in views
    token = "123456789:AAsecretHalfOfTheTokenXYZ0123456789"
    half_only = scan_bytes("x", b"redacted 123456789:*** but AAsecretHalfOfTheTokenXYZ0123456789",
                           {"T": needles(token, telegram=True)})  # fmt: skip
    assert [h.form for h in half_only] == ["secret-half"]
