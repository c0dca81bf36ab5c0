"""The research commands: download, import-archive, train, models, promote, sweep.

Thin: argument values in, calls into exchange.history and strategy.models, one summary out.
Training data are one-minute candles: downloaded/imported klines (`<data>/<market>/<SYMBOL>/<interval>/`)
or a Parquet file of candles collected by `tickloop collect`.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from engine.config import Config
from engine.model import Market

INTERVAL_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
               "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "1d": 86_400_000}


def _date_ms(text: str) -> int:
    """Parse YYYY-MM-DD[THH:MM] (UTC) or epoch milliseconds."""
    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def add_model_commands(sub: argparse._SubParsersAction, add_config) -> None:  # type: ignore[type-arg, no-untyped-def]
    p = sub.add_parser("download", help="download historical klines through ccxt into Parquet (resumable)")
    add_config(p)
    p.add_argument("symbols", nargs="+")
    p.add_argument("--interval", default="1m")
    p.add_argument("--start", required=True, help="YYYY-MM-DD (UTC) or epoch ms")
    p.add_argument("--end", required=True, help="YYYY-MM-DD (UTC) or epoch ms")
    p.add_argument("--market", choices=["spot", "usdm"], default=None, help="default: market.type")
    p.add_argument("--out", type=Path, default=None, help="default: <paths.data_dir>/klines")
    p.add_argument("--base-url", default=None, help="REST base URL (default: the configured endpoint)")

    p = sub.add_parser("import-archive", help="import Binance bulk-archive kline CSVs into the kline store")
    add_config(p)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--symbol", required=True)
    p.add_argument("--interval", default="1m")
    p.add_argument("--market", choices=["spot", "usdm"], default=None)
    p.add_argument("--out", type=Path, default=None)

    for name, help_text in (("train", "train a LightGBM model (and a logistic baseline) for one coin and label"),
                            ("sweep", "search features, labels and hyper-parameters with Optuna")):
        p = sub.add_parser(name, help=help_text)
        add_config(p)
        p.add_argument("--symbol", required=True)
        p.add_argument("--label", required=True, help="a label name from the labels: section")
        p.add_argument("--set", default="minute", help="feature set name or frequency (default: minute)")
        p.add_argument("--data", type=Path, default=None, help="kline store (default: <paths.data_dir>/klines)")
        p.add_argument("--candles", type=Path, default=None, help="a Parquet file of candles instead")
        p.add_argument("--interval", default="1m")
        p.add_argument("--market", choices=["spot", "usdm"], default=None)
        p.add_argument("--tracking-uri", default=None)
        if name == "train":
            p.add_argument("--walk-forward", action="store_true", help="also re-train every N days on unseen data")
        else:
            p.add_argument("--trials", type=int, default=None)
            p.add_argument("--storage", default=None, help="Optuna storage URL (PostgreSQL: several machines)")
            p.add_argument("--study", default=None, help="study name shared by the machines")

    p = sub.add_parser("models", help="list training runs sorted by a metric")
    add_config(p)
    p.add_argument("--metric", default="val_profit_pct")
    p.add_argument("--symbol", default=None)
    p.add_argument("--label", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--tracking-uri", default=None)

    p = sub.add_parser("promote", help="install a run's bundle as a coin's live model")
    add_config(p)
    p.add_argument("run")
    p.add_argument("--set", default="minute", help="the configured feature set the bundle must match")
    p.add_argument("--tracking-uri", default=None)


def _market(args: argparse.Namespace, config: Config) -> Market:
    return Market(args.market) if args.market else config.market.type


def _candles(args: argparse.Namespace, config: Config) -> pd.DataFrame:
    from exchange.history import read_stored_klines
    from strategy.models.merge import klines_to_candles

    if args.candles is not None:
        return pd.read_parquet(args.candles)
    store = args.data or config.paths.data_dir / "klines"
    klines = read_stored_klines(store, _market(args, config), args.symbol.upper(), args.interval)
    if klines.empty:
        raise SystemExit(f"tickloop {args.command}: no {args.interval} klines of {args.symbol} in {store} "
                         "(run `tickloop download` or `tickloop import-archive` first)")
    return klines_to_candles(klines, INTERVAL_MS[args.interval])


def run_model_command(args: argparse.Namespace, config: Config) -> int:
    """Run one research command; return the exit code."""
    from strategy.features import compile_feature_set

    if args.command == "download":
        from exchange.history import run_download

        market = _market(args, config)
        base = args.base_url or config.endpoints.for_market(market).rest
        results = run_download([s.upper() for s in args.symbols], market, args.interval, _date_ms(args.start),
                               _date_ms(args.end), args.out or config.paths.data_dir / "klines", base_url=base)
        for result in results:
            print(result)
        return 0
    if args.command == "import-archive":
        from exchange.history import import_archive

        n = import_archive(args.files, _market(args, config), args.symbol, args.interval,
                           args.out or config.paths.data_dir / "klines")
        print(f"imported {n} {args.interval} bars of {args.symbol.upper()}")
        return 0
    if args.command in ("train", "sweep"):
        feature_set = config.features.get(args.set)
        label = config.labels.get(args.label)
        candles = _candles(args, config)
        if args.command == "train":
            from strategy.models.commands import run_train

            report = run_train(candles, symbol=args.symbol.upper(), feature_set=feature_set, label=label,
                               models=config.models, walk_forward_eval=args.walk_forward,
                               tracking_uri=args.tracking_uri, progress=True)
            print(f"run {report.run_id}: {report.symbol} {report.label}")
            for key, value in sorted(report.metrics.items()):
                print(f"  {key}: {value:.6g}")
            return 0
        from strategy.models.sweep import run_sweep

        sweep = run_sweep(candles, symbol=args.symbol.upper(), feature_set=feature_set, label=label,
                          models=config.models, trials=args.trials, storage=args.storage,
                          study_name=args.study, tracking_uri=args.tracking_uri)
        print(sweep)
        return 0
    if args.command == "models":
        from strategy.models.commands import format_runs, list_models

        runs = list_models(config.models, args.metric, symbol=args.symbol, label=args.label, limit=args.limit,
                           tracking_uri=args.tracking_uri)
        print(format_runs(runs, args.metric))
        return 0
    if args.command == "promote":
        from strategy.models.commands import promote

        plan = compile_feature_set(config.features.get(args.set))
        path = promote(args.run, config.models, plan=plan, tracking_uri=args.tracking_uri)
        print(f"promoted run {args.run} -> {path}")
        return 0
    raise AssertionError(args.command)
