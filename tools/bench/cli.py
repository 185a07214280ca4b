"""``python -m service bench`` (or ``python -m tools.bench``): arguments, the run, the output.

No numpy or ONNX Runtime at import time, so that ``--help`` answers at once; the run imports
them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.bench.plan import DEFAULT_MODEL, DEFAULT_REPOSITORY, QUICK, Options, Plan

TARGET_MISSED = 1  # the run completed but a target printed FAIL
RUN_FAILED = 2  # no figures: a server, hey or the model could not run


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _counts(value: str) -> tuple[int, ...]:
    counts = tuple(int(v) for v in _names(value))
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("concurrencies must be positive integers")
    return counts


# Plan field -> its flag, parser and help; the default shown is the full run's (Plan()).
_PLAN_FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "concurrencies": ("--concurrency", _counts, "hey concurrencies, comma-separated"),
    "load_seconds": ("--load-seconds", float, "seconds per load run"),
    "soak_requests": ("--soak-requests", int, "requests in the soak"),
    "ceiling_batch_size": ("--ceiling-batch-size", int, "ceiling's batch"),
}


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the JSON summary, not the table")
    parser.add_argument("--quick", action="store_true", help="a smoke test of well under a minute")
    parser.add_argument("--out", type=Path, help="also write the JSON summary to this file")
    parser.add_argument(
        "--model-dir", type=Path, default=DEFAULT_REPOSITORY, help="model repository"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name in the repository")
    parser.add_argument(
        "--workers", type=int, help="service worker processes (default: the service's default)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the gunicorn baseline")
    parser.add_argument(
        "--no-fail",
        action="store_true",
        help=f"exit 0 even when a target fails (by default such a run exits {TARGET_MISSED})",
    )
    parser.add_argument(
        "--providers",
        type=_names,
        help="ONNX Runtime providers for the service and the ceiling, comma-separated "
        "(default: the service's default, auto)",
    )
    full = Plan()
    for name, (flag, parse, text) in _PLAN_FLAGS.items():
        shown = _shown(getattr(full, name))
        metavar = flag.removeprefix("--").upper().replace("-", "_")  # as without dest=
        parser.add_argument(
            flag, dest=name, type=parse, metavar=metavar, help=f"{text} (default {shown})"
        )


def _plan(args: argparse.Namespace) -> Plan:
    """``--quick``'s plan or the full one, with the fields given on the command line."""
    given = {name: getattr(args, name) for name in _PLAN_FLAGS}
    plan = QUICK if args.quick else Plan()
    return dataclasses.replace(plan, **{k: v for k, v in given.items() if v is not None})


def exit_status(summary: dict[str, Any], *, no_fail: bool) -> int:
    """0 when every target passed or ``--no-fail`` was given, else :data:`TARGET_MISSED`.

    A FAIL line alone went unnoticed in scripts and CI; the status is what they check.
    """
    if summary["targets_passed"] or no_fail:
        return 0
    failed = [name for name, check in summary["targets"].items() if not check["passed"]]
    print(
        f"bench: target(s) not met: {', '.join(failed)}; exit status {TARGET_MISSED} "
        "(--no-fail to exit 0)",
        file=sys.stderr,
    )
    return TARGET_MISSED


def run_from_args(args: argparse.Namespace) -> int:
    from tools.bench.load import LoadGeneratorMissing
    from tools.bench.report import table
    from tools.bench.runner import run
    from tools.bench.servers import ServerFailed

    options = Options(
        plan=_plan(args),
        quick=args.quick,
        repository=args.model_dir,
        model=args.model,
        workers=args.workers,
        baseline=not args.no_baseline,
        providers=args.providers,
    )
    try:
        summary = run(options)
    except (LoadGeneratorMissing, ServerFailed, FileNotFoundError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return RUN_FAILED
    text = json.dumps(summary, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(table(summary), file=sys.stderr)
        print(text)
    else:
        print(table(summary))
    return exit_status(summary, no_fail=args.no_fail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service bench", description="Benchmark the service (docs/benchmark.md)."
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
