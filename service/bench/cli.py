"""``python -m service bench``: arguments, the run, and where its output goes.

Only argparse at import time: ``service.cli`` imports :func:`add_arguments` to build its
``bench`` subcommand without loading numpy or ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_REPOSITORY = Path(__file__).resolve().parents[2] / "onnx_models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the JSON summary, not the table")
    parser.add_argument("--quick", action="store_true", help="a smoke test of well under a minute")
    parser.add_argument("--out", type=Path, help="also write the JSON summary to this file")
    parser.add_argument(
        "--model-dir", type=Path, default=DEFAULT_REPOSITORY, help="model repository"
    )
    parser.add_argument("--model", default="digits-xattn", help="model name in the repository")
    parser.add_argument(
        "--workers", type=int, help="service worker processes (default: the service's default)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the gunicorn baseline")


def run_from_args(args: argparse.Namespace) -> int:
    from service.bench.load import LoadGeneratorMissing
    from service.bench.report import table
    from service.bench.runner import QUICK, Options, Plan, run
    from service.bench.servers import ServerFailed

    options = Options(
        plan=QUICK if args.quick else Plan(),
        quick=args.quick,
        repository=args.model_dir,
        model=args.model,
        workers=args.workers,
        baseline=not args.no_baseline,
    )
    try:
        summary = run(options)
    except (LoadGeneratorMissing, ServerFailed, FileNotFoundError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(summary, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(table(summary), file=sys.stderr)
        print(text)
    else:
        print(table(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service bench", description="Benchmark the service (docs/benchmark.md)."
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
