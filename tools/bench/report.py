"""The human table printed at the end of a benchmark run."""

from __future__ import annotations

from typing import Any


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _runs_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'system':<10}{'batching':<10}{'c':>4}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'errors':>8}  connections per worker"]  # fmt: skip
    for r in runs:
        split = "/".join(str(n) for n in r.get("connections_per_worker", []))
        lines.append(
            f"{r['system']:<10}{'on' if r['batching'] else 'off':<10}{r['concurrency']:>4}"
            f"{r['rps']:>9.1f}{_ms(r['p50_ms']):>9}{_ms(r['p99_ms']):>9}{r['errors']:>8}  {split}"
        )
    return lines


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if unit == "requests" else f"{value:.2f}"


def _targets(targets: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for check in targets.values():
        verdict = "PASS" if check["passed"] else "FAIL"
        ratio = "" if check["ratio"] is None else f"  (ratio {check['ratio']:.2f})"
        unit = check["unit"]
        lines.append(
            f"  {verdict}  {check['description']}: {_number(check['value'], unit)} {unit} "
            f"{check['op']} {_number(check['bound'], unit)}{ratio}"
        )
    return lines


def table(summary: dict[str, Any]) -> str:
    machine, model = summary["machine"], summary["model"]
    ceiling = summary["ceiling"]
    best = next(r for r in ceiling["runs"] if r["layout"] == ceiling["layout"])
    lines = [
        f"mmserve benchmark{' (quick: smoke test, not a measurement)' if summary['quick'] else ''}"
        f" - {model['name']}/{model['version']}, {machine['cores']} cores "
        f"({machine['cpu_model']}), load average at start {summary['load_average_start']}",
        f"uploads: PNG {summary['uploads']['image_png_bytes']} B, WAV "
        f"{summary['uploads']['audio_wav_bytes']} B ({summary['uploads']['audio_source']}), "
        f"text {summary['uploads']['text']!r}",
        f"in-process ceiling: {summary['ceiling_rps']:.1f} rps ({best['workers']} "
        f"{best['layout']}, batch {best['batch_size']}; mean of {ceiling.get('before_rps')} "
        f"before and {ceiling.get('after_rps')} after the servers); single request "
        f"{summary['inprocess_single_ms']:.2f} ms",
        "",
        *_runs_table(summary["runs"]),
        "",
        f"service ready in {summary['ready_s']:.2f} s; RSS {summary['rss_mb']:.0f} MB after the "
        f"runs; RSS growth over the soak's second half {summary['rss_growth_pct']:.2f} %",
        f"targets ({'all passed' if summary['targets_passed'] else 'not all passed'}):",
        *_targets(summary["targets"]),
        f"took {summary['duration_s']:.0f} s; load average at end {summary['load_average_end']}",
    ]
    if summary["machine_busy"]:
        lines.append(
            "WARNING: the machine was busy when the benchmark started (load average "
            f"{summary['load_average_start'][0]} on {machine['cores']} cores): these figures "
            "measure the other work as much as the service; rerun on a quiet machine."
        )
    return "\n".join(lines)
