"""The `tickloop` command: parses arguments, loads config, and hands over to the composition root.

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or arguments (nothing was
started, no socket opened), 3 the network/exchange is unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="config file (default: ./config.yaml if present)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickloop", description="Binance live trading engine")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="watch the configured coins on Binance (paper mode by default)")
    _add_config(p)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--live", action="store_true",
                   help="confirm real-money trading (required when config mode is live)")

    p = sub.add_parser("demo", help="run the loopback simulator and the engine together, offline")
    _add_config(p)
    p.add_argument("--tape", action="append", type=Path, help="tape(s) to replay (default: synthetic)")
    p.add_argument("--speed", type=float, default=10.0, help="tape seconds per real second")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    p = sub.add_parser("sim", help="serve a tape as a loopback Binance market-data server")
    p.add_argument("--tape", action="append", type=Path, required=True)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--loop", action="store_true", help="start again at the end of the tape")
    p.add_argument("--klines", action="append", type=Path, default=[],
                   help="Binance archive kline CSV(s) <SYMBOL>-1m-YYYY-MM.csv[.gz] to serve on /klines")
    p.add_argument("--klines-market", choices=["spot", "usdm"], default="usdm")
    p.add_argument("--trading", action="store_true",
                   help="also serve signed trading endpoints and user streams (a loopback testnet)")

    p = sub.add_parser("replay", help="fold a tape offline into rows.parquet and candles.parquet")
    _add_config(p)
    p.add_argument("tape", type=Path)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("backtest", help="replay a tape through the trading engine; write result.json and report.html")
    _add_config(p)
    p.add_argument("tape", type=Path, nargs="?", default=None, help="a recorded tape (or use --klines)")
    p.add_argument("--klines", type=Path, nargs="+", default=None,
                   help="one-minute kline CSV/Parquet files instead of a tape (candle fill model: docs)")
    p.add_argument("--exchange-info", type=Path, default=None,
                   help="with --klines: a saved exchangeInfo body holding the symbol")
    p.add_argument("--journal", type=Path, default=None, help="SQLite journal (default: OUT/journal.sqlite)")
    p.add_argument("--out", type=Path, default=Path("backtest"), help="output directory")

    p = sub.add_parser("record", help="record raw frames and snapshots to a gzip tape")
    _add_config(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--duration", type=float, default=None)

    p = sub.add_parser("collect", help="write per-second rows and candles to Parquet, per symbol per day")
    _add_config(p)
    p.add_argument("--out", type=Path, default=None, help="default: <paths.data_dir>/rows")
    p.add_argument("--duration", type=float, default=None)

    p = sub.add_parser("features", help="compute a feature set over Parquet rows or candles")
    _add_config(p)
    p.add_argument("input", type=Path, help="Parquet of per-second rows or one-minute candles")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", default=None, help="feature set name (default: the set of the input's frequency)")

    p = sub.add_parser("parity", help="prove streaming features equal batch features on a tape or Parquet file")
    _add_config(p)
    p.add_argument("source", type=Path, help="a recorded tape, or Parquet rows/candles")
    p.add_argument("--set", default=None, help="only this feature set (default: every configured set)")
    p.add_argument("--rtol", type=float, default=1e-9)

    from engine.modelcmds import add_model_commands

    add_model_commands(sub, _add_config)

    p = sub.add_parser("report", help="print metrics and trades from a journal; optionally write an HTML report")
    p.add_argument("journal", type=Path, help="the SQLite journal file")
    p.add_argument("--html", type=Path, default=None, help="write the HTML report here")

    p = sub.add_parser("check-config", help="validate a config file and print the effective settings")
    _add_config(p)

    p = sub.add_parser("doctor", help="check config, keys, clock, endpoints, model bundles and paths")
    _add_config(p)
    p.add_argument("--env-file", type=Path, default=None,
                   help="file with BINANCE_API_KEY/BINANCE_API_SECRET (default: ./.env if present)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per network check")
    p.add_argument("--offline", action="store_true", help="local checks only (config, keys, paths, models)")
    return parser


def _config_path(arg: str | None) -> Path | None:
    if arg is not None:
        return Path(arg)
    default = Path("config.yaml")
    return default if default.is_file() else None


def _load(args: argparse.Namespace) -> Any:
    from engine.config import ConfigError, load_config

    try:
        return load_config(_config_path(getattr(args, "config", None)))
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sim":
        from engine.commands import run_sim_command

        return asyncio.run(run_sim_command(args.tape, speed=args.speed, port=args.port, loop=args.loop,
                                           klines=args.klines, klines_market=args.klines_market,
                                           trading=args.trading))
    if args.command == "report":
        from portfolio.report import run_report

        if not args.journal.is_file():
            print(f"tickloop report: no journal at {args.journal}", file=sys.stderr)
            return EXIT_CONFIG
        print(run_report(args.journal, args.html))
        return EXIT_OK
    if args.command == "doctor":  # reports an invalid config itself, as FAIL lines
        from engine.doctor import doctor_command

        return doctor_command(_config_path(args.config), env_file=args.env_file, timeout_s=args.timeout,
                              network=not args.offline)
    config = _load(args)
    if args.command == "check-config":
        print(config.model_dump_json(indent=2))
        return EXIT_OK
    if args.command in ("download", "import-archive", "train", "sweep", "models", "promote"):
        from engine.modelcmds import run_model_command

        return run_model_command(args, config)
    if args.command == "replay":
        from engine.replay import replay_to_parquet

        summary = replay_to_parquet(args.tape, args.out, config)
        print(summary)
        return EXIT_OK
    if args.command == "backtest":
        if args.klines:
            from engine.backtest_klines import kline_backtest_command

            if args.exchange_info is None:
                print("tickloop backtest --klines needs --exchange-info FILE", file=sys.stderr)
                return EXIT_CONFIG
            print(kline_backtest_command(args.klines, config, args.exchange_info, args.journal, args.out))
            return EXIT_OK
        if args.tape is None:
            print("tickloop backtest: give a TAPE or --klines FILE...", file=sys.stderr)
            return EXIT_CONFIG
        from engine.backtest import backtest_command

        print(backtest_command(args.tape, config, args.journal, args.out))
        return EXIT_OK
    if args.command == "features":
        from strategy.features import run_features_command

        feature_set = config.features.get(args.set) if args.set else config.features
        written = run_features_command(args.input, args.out, feature_set)
        print(written)
        return EXIT_OK
    if args.command == "parity":
        from engine.parity import run_parity

        return run_parity(args.source, config, set_label=args.set, rtol=args.rtol)
    from engine import commands

    if args.command == "run":
        refusal = commands.binance_refusal(config, confirmed_live=args.live)
        if refusal is not None:
            print(f"tickloop: {refusal}", file=sys.stderr)
            return EXIT_CONFIG
        return asyncio.run(commands.run_live(config, duration_s=args.duration))
    if args.command == "demo":
        return asyncio.run(commands.run_demo(config, tapes=args.tape, speed=args.speed, duration_s=args.duration))
    if args.command == "record":
        return asyncio.run(commands.run_live(config, duration_s=args.duration, record_to=args.out))
    if args.command == "collect":
        out = args.out or config.paths.data_dir / "rows"
        return asyncio.run(commands.run_live(config, duration_s=args.duration, collect_to=out))
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    """Run the tickloop command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:
        return int(exc.code or 0)


if __name__ == "__main__":
    sys.exit(main())
