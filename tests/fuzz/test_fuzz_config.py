"""Random and mutated config files: they load, or every problem is one line naming a YAML path.

Seeds are the repository's config.yaml, deploy/config.yaml and the full effective configuration
(every section, dumped as YAML). Mutations work on the text (lines deleted, duplicated,
re-indented, values replaced by odd YAML scalars, anchors, aliases, tags, stray characters) and
on the document (keys deleted, renamed, retyped, secrets added). Through the engine's loader
(`engine.config.load_config`) a file either loads or raises `ConfigError` whose lines each start
with the file (unreadable YAML) or with a YAML path whose parent is in the document; through the
CLI (`engine.cli.main(["check-config", "-c", FILE])`, and once as the installed `tickloop`
process) it exits 0 or 2 with exactly those lines, never a traceback.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzz_support import count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from engine.cli import EXIT_CONFIG, EXIT_OK, main
from engine.config import Config, ConfigError, load_config, parse_config

SUITE = "config"
REPO = Path(__file__).resolve().parents[2]


def _seeds() -> list[str]:
    full = yaml.safe_dump(parse_config({}).model_dump(mode="json"), sort_keys=False)
    return [
        (REPO / "config.yaml").read_text(encoding="utf-8"),
        (REPO / "deploy" / "config.yaml").read_text(encoding="utf-8"),
        full,
    ]


SEEDS = _seeds()

# -- mutations --------------------------------------------------------------------------------

_SCALARS = st.sampled_from(
    ["", "null", "~", ".nan", ".inf", "-.inf", "1e400", "-1", "0", "yes", "on", "off", "0x10",
     "0o17", "2024-01-01", "12:30:00", "[unclosed", "{a: 1", '"unterminated', "'x", "*nosuch",
     "&anchor 5", "!!binary aGVsbG8=", "!!python/object:os.system ls", "!!set {a}", "!!timestamp x",
     "[1, [2, [3]]]", "{api_key: abc}", "x" * 300, "é€𝄞", "\t5", "- a", "? a", "| text", "> text",
     "%YAML 1.1", "---", "...", "@reserved", "`tick", "&r [*r]", "&r {a: *r}", "&r [1, [*r]]",
     "[" * 1200 + "]" * 1200]
)  # fmt: skip
_TEXT_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r\x85\u2028\u2029"
)


def _text_mutation(data: st.DataObject, text: str) -> str:
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        if not lines:
            lines = [""]
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        action = data.draw(
            st.sampled_from(["value", "value", "delete", "dup", "indent", "insert", "chars"])
        )
        line = lines[i]
        if action == "value":
            key, colon, _ = line.partition(":")
            lines[i] = f"{key}: {data.draw(_SCALARS)}" if colon else data.draw(_SCALARS)
        elif action == "delete":
            del lines[i]
        elif action == "dup":
            lines.insert(i, line)
        elif action == "indent":
            shift = data.draw(st.integers(-4, 4), label="shift")
            lines[i] = " " * max(0, shift) + line[max(0, -shift) :]
        elif action == "insert":
            indent = " " * data.draw(st.sampled_from([0, 2, 4, 3]))
            key = data.draw(st.sampled_from(["mode", "market", "x", "token", "symbols", "- a"]))
            lines.insert(i, f"{indent}{key}: {data.draw(_SCALARS)}")
        else:
            pos = data.draw(st.integers(0, len(line)), label="pos")
            extra = data.draw(st.text(_TEXT_CHARS, min_size=1, max_size=3), label="chars")
            lines[i] = line[:pos] + extra + line[pos + 1 :]
    return "\n".join(lines) + "\n"


_YAML_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
        st.sampled_from(["BTCUSDT", "btc-usd", "spot", "usdm", "paper", "live", "INFO", "auto"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        out.append((*prefix, key))
        out += _paths(value, (*prefix, key))
    return out


def _document_mutation(data: st.DataObject, text: str) -> str:
    doc = yaml.safe_load(text) or {}
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["retype", "retype", "delete", "rename", "secret"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "rename" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["x", "Mode", "symbols ", 7]))] = parent.pop(path[-1])
        elif action == "secret" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["api_key", "secret", "telegram_token"]))] = "s3cr3t"
        else:
            parent[path[-1]] = data.draw(_YAML_VALUES, label="value")
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


_CONFIG_TEXT = st.one_of(
    st.tuples(st.sampled_from(range(len(SEEDS))), st.sampled_from(["text", "doc"])),
    st.text(_TEXT_CHARS, max_size=200).map(lambda t: ("random", t)),
)


def _config_text(data: st.DataObject) -> str:
    choice = data.draw(_CONFIG_TEXT, label="source")
    if choice[0] == "random":
        return choice[1]
    seed = SEEDS[choice[0]]
    return _text_mutation(data, seed) if choice[1] == "text" else _document_mutation(data, seed)


# -- checks -----------------------------------------------------------------------------------

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _walk(doc: Any, path: str) -> bool:
    """True when path's parent exists in doc (the named key itself may be the missing one)."""
    segments = [
        m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _SEGMENT.finditer(path)
    ]
    node = doc
    for segment in segments[:-1]:
        if isinstance(node, dict):
            match = [k for k in node if str(k) == str(segment)]
            if not match:
                return False
            node = node[match[0]]
        elif isinstance(node, list) and isinstance(segment, int) and segment < len(node):
            node = node[segment]
        else:
            return False
    return True


def _unrenderable(key: object) -> bool:
    """A key a dotted path cannot show as is (the loader quotes it: market['a.b'])."""
    text = str(key)
    return not (text and text.isprintable()) or any(c in text for c in ".[]") or ": " in text


def _check_problems(problems: list[str], file: Path, text: str) -> None:
    assert problems, "a ConfigError names at least one problem"
    try:
        doc = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 (PyYAML raises ValueError & co. for bad tags, not only YAMLError)
        doc = None
    for line in problems:
        assert isinstance(line, str) and "\n" not in line, line
        where, sep, message = line.partition(": ")
        assert sep and message.strip(), line
        if where == str(file) or where == "(top level)":
            continue
        if isinstance(doc, dict) and not any(_unrenderable(k) for k in _keys(doc)):
            assert _walk(doc, where), (line, text[:300])


def _keys(node: Any, seen: set[int] | None = None) -> list[Any]:
    """Every mapping key in a document (aliases, even recursive ones, visited once)."""
    seen = set() if seen is None else seen
    if not isinstance(node, (dict, list)) or id(node) in seen:
        return []
    seen.add(id(node))
    values = node.values() if isinstance(node, dict) else node
    own = list(node) if isinstance(node, dict) else []
    return [*own, *(k for v in values for k in _keys(v, seen))]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config")


@fuzz_settings(ci_examples=150, deep_examples=5000)
@given(data=st.data())
def test_a_config_file_loads_or_names_each_problem_by_yaml_path(
    workdir: Path, data: st.DataObject
) -> None:
    count(SUITE)
    text = _config_text(data)
    file = workdir / "config.yaml"
    file.write_text(text, encoding="utf-8")
    try:
        config = load_config(file)
    except ConfigError as exc:
        _check_problems(exc.problems, file, text)
    else:
        assert isinstance(config, Config)


@fuzz_settings(ci_examples=40, deep_examples=1000)
@given(data=st.data())
def test_check_config_exits_0_or_2_with_the_loader_lines(
    workdir: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    count(SUITE)
    text = _config_text(data)
    file = workdir / "cli.yaml"
    file.write_text(text, encoding="utf-8")
    capsys.readouterr()
    code = main(["check-config", "-c", str(file)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    try:
        load_config(file)
    except ConfigError as exc:
        assert code == EXIT_CONFIG
        assert err.split("\n") == [*exc.problems, ""]  # one line each (split on "\n" only)
    else:
        assert code == EXIT_OK and err == ""


_CLI_CASES = {
    "recursive alias": "market: &m {type: spot, symbols: *m}\n",
}


@pytest.mark.parametrize("text", list(_CLI_CASES.values()), ids=list(_CLI_CASES))
def test_the_tickloop_process_exits_2_without_a_traceback(tmp_path: Path, text: str) -> None:
    count(SUITE)
    file = tmp_path / "config.yaml"
    file.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "check-config", "-c", str(file)],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip(), "the problem is printed"


_FOUND = {
    "alias in its own anchor": "a: &x [*x]\n",
    "alias in its own mapping": "market: &m {type: spot, symbols: *m}\n",
    "recursive mode": "mode: &x [*x]\n",
    "nested too deeply": "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "timestamp tag": "mode: !!timestamp x\n",
    "int tag": "fold: {grace_ms: !!int abc}\n",
    "bool tag": "telegram: {enabled: !!bool x}\n",
    "int tag underscore": "fold: {grace_ms: !!int _}\n",
    "float tag": "dashboard: {push_interval_s: !!float .}\n",
    "generator kind a list": "features: {sets: [{name: a, frequency: minute, generators: [{kind: []}]}]}\n",
    "label kind a list": "labels: {generators: [{kind: [1]}]}\n",
    "key with a newline": 'market: {"a\\nb": 1}\n',
    "mapping key of the wrong type": "streams: {stall_timeout_s: {7: 15}}\n",
}


@pytest.mark.parametrize("text", list(_FOUND.values()), ids=list(_FOUND))
def test_inputs_that_raised_through_the_loader_are_config_errors(workdir: Path, text: str) -> None:
    """Regressions of issue #8: each raised RecursionError/AttributeError/... before the fix."""
    count(SUITE)
    file = workdir / "found.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(file)
    _check_problems(refused.value.problems, file, text)
