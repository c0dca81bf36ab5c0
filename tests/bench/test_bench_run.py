"""`bench/run` end to end: the cheapest real bench, and a folder of stand-in scripts for crashes.

Reports go to a temporary --results-dir, so a test run never overwrites bench/results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run"
ROW_KEYS = {"benchmark", "figure", "value", "unit", "baseline", "baseline_value", "ratio", "goal",
            "met", "source", "missing", "note"}  # fmt: skip


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run bench/run with no test-run files (bench/results/fuzz.json of this checkout ignored)."""
    args = (*args, "--test-results-dir", str(cwd / "no-test-results"))
    env = os.environ.copy()
    env.pop("TICKLOOP_BENCH_RESULTS", None)
    return subprocess.run([sys.executable, str(RUN), *args], check=False, capture_output=True, text=True,
                          timeout=240, cwd=cwd, env=env)  # fmt: skip


def test_quick_journal_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = run("--quick", "--only", "journal", "--results-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(doc) == {"summary", "rows", "crashed"}
    assert doc["crashed"] == {}
    summary = doc["summary"]
    assert set(summary) == {"all_met", "unmet", "no_verdict", "crashed", "missing_keys", "quick"}
    assert summary["quick"] is True and summary["crashed"] == [] and summary["no_verdict"] == []
    assert summary["all_met"] == (summary["unmet"] == [])
    rows = {row["benchmark"]: row for row in doc["rows"]}
    assert sorted(rows) == ["journal.fill", "journal.intent"]  # --only: no other bench, no fuzz row
    for row in rows.values():
        assert set(row) == ROW_KEYS
        assert row["missing"] == [] and row["source"] == "this run"
        assert row["unit"] == "µs" and row["value"] > 0 and row["baseline_value"] > 0
        assert row["ratio"] == row["baseline_value"] / row["value"]
        assert isinstance(row["met"], bool) and row["goal"].startswith("<= ")
        assert isinstance(row["baseline"], str) and row["baseline"]
    # the bench wrote where it was told, and its output was kept
    assert json.loads((out / "journal.json").read_text())["rows"][0]["name"] == "intent"
    assert "record_intent" in (out / "journal.log").read_text(encoding="utf-8")
    table = proc.stdout.splitlines()
    assert table[0].split()[:2] == ["benchmark", "figure"]
    assert any(line.startswith("journal.intent ") for line in table)


STANDARD = {"figure": "stand-in", "value": 2.0, "unit": "µs", "baseline": "slow way",
            "baseline_value": 8.0, "ratio": 4.0, "goal": "<= 5 µs", "met": True}  # fmt: skip
SCRIPTS = {
    "ok.py": "import json, os, pathlib\n"
             "out = pathlib.Path(os.environ['TICKLOOP_BENCH_RESULTS'])\n"
             f"out.joinpath('ok.json').write_text(json.dumps({STANDARD!r}))\n",
    "crash.py": "import sys\nprint('starting')\nsys.exit('boom: the bench failed')\n",
    "silent.py": "print('measured, but wrote no JSON')\n",
    "_helper.py": "raise SystemExit(9)  # a helper module: never run\n",
    "notabench.py": "X = 1  # no __main__ block: never run\n",
}  # fmt: skip


def test_a_crash_or_a_missing_json_fails_the_run_but_the_report_is_written(tmp_path: Path) -> None:
    benches = tmp_path / "benches"
    benches.mkdir()
    for name, text in SCRIPTS.items():
        guard = (
            "" if name.startswith(("_", "notabench")) else 'if __name__ == "__main__":\n    pass\n'
        )
        (benches / name).write_text(text + guard, encoding="utf-8")
    out = tmp_path / "results"
    proc = run("--bench-dir", str(benches), "--results-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [row["benchmark"] for row in doc["rows"]] == ["ok"]
    assert doc["rows"][0]["ratio"] == 4.0 and doc["rows"][0]["met"] is True
    assert sorted(doc["crashed"]) == ["crash", "silent"]
    assert (
        "exit 1" in doc["crashed"]["crash"] and "boom: the bench failed" in doc["crashed"]["crash"]
    )
    assert "wrote no silent.json" in doc["crashed"]["silent"]
    assert doc["summary"]["all_met"] is False and doc["summary"]["crashed"] == ["crash", "silent"]
    assert not (out / "_helper.log").exists() and not (out / "notabench.log").exists()
    assert any(line.startswith("crash ") and "CRASHED" in line for line in proc.stdout.splitlines())


def test_unmet_goal_still_exits_0_and_unknown_names_exit_2(tmp_path: Path) -> None:
    benches = tmp_path / "benches"
    benches.mkdir()
    unmet = STANDARD | {"value": 9.0, "met": False}
    (benches / "slow.py").write_text(
        "import json, os, pathlib\n"
        "if __name__ == '__main__':\n"
        "    out = pathlib.Path(os.environ['TICKLOOP_BENCH_RESULTS'])\n"
        f"    out.joinpath('slow.json').write_text(json.dumps({unmet!r}))\n",
        encoding="utf-8",
    )
    out = tmp_path / "results"
    proc = run("--bench-dir", str(benches), "--results-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["all_met"] is False and summary["unmet"] == ["slow"]
    bad = run(
        "--bench-dir", str(benches), "--results-dir", str(out), "--only", "nosuch", cwd=tmp_path
    )
    assert bad.returncode == 2 and "unknown bench nosuch" in bad.stderr


def test_test_run_files_become_marked_rows(tmp_path: Path) -> None:
    benches, tests = tmp_path / "benches", tmp_path / "no-test-results"
    benches.mkdir()
    tests.mkdir()
    fuzz = {"profile": "ci", "seconds": 2.0, "suites": {"book": {"examples": 40}}}
    soak = STANDARD | {"figure": "invariant violations", "value": 1.0, "unit": "violations",
                       "goal": "0 violations", "met": False}  # fmt: skip
    (tests / "fuzz.json").write_text(json.dumps(fuzz))
    (tests / "soak.json").write_text(json.dumps(soak))
    out = tmp_path / "results"
    proc = run("--bench-dir", str(benches), "--results-dir", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "report.json").read_text())
    rows = {row["benchmark"]: row for row in doc["rows"]}
    assert rows["fuzz.book"]["value"] == 40 and rows["fuzz.book"]["source"] == "from last test run"
    assert rows["soak"]["met"] is False and doc["summary"]["unmet"] == ["soak"]
    assert any(line.startswith("fuzz.book *") for line in proc.stdout.splitlines())
