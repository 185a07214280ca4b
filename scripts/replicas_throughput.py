"""Throughput of 1 against 2 replicas behind nginx (docs/deployment.md, Throughput).

    python scripts/replicas_throughput.py [--rounds 5] [--seconds 4] [--concurrency 8]

Starts both topologies side by side with tools.replicas, then runs `hey` against each
in alternating rounds (so that the neighbours' load falls on both alike) and prints, per round
and as medians: requests/s, p50, p99, the CPU cores the replicas used (from /proc) and
requests/s per replica core. Needs nginx and hey (scripts/setup.sh dev installs both).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.service import media  # noqa: E402
from tools.replicas import Cluster  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    replicas: int
    rps: float
    p50_ms: float
    p99_ms: float
    cores: float

    def __str__(self) -> str:
        return (
            f"{self.replicas} replica(s): {self.rps:.0f} req/s, p50 {self.p50_ms:.0f} ms, "
            f"p99 {self.p99_ms:.0f} ms, {self.cores:.2f} cores, "
            f"{self.rps / self.cores:.0f} req/s per replica core"
        )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def request_body() -> tuple[bytes, str]:
    wav = media.encode_audio(media.tone(), 16000, "WAV", "PCM_16")
    files = {"image": ("d.png", media.png()), "audio": ("t.wav", wav), "text": (None, b"seven")}
    request = httpx.Request("POST", "http://127.0.0.1/v1/predict", files=files)
    return request.read(), request.headers["content-type"]


def hey(url: str, seconds: float, concurrency: int, body: Path, content_type: str) -> str:
    command = ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST"]
    command += ["-D", str(body), "-T", content_type, f"{url}/v1/predict"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def measure(cluster: Cluster, args: argparse.Namespace, body: Path, content_type: str) -> Round:
    pids = [server.process.pid for server in cluster.servers]
    before = sum(map(cpu_seconds, pids))
    out = hey(cluster.url, args.seconds, args.concurrency, body, content_type)
    cores = (sum(map(cpu_seconds, pids)) - before) / args.seconds
    failed = re.findall(r"\[(?!200\])(\d+)\]\s+(\d+) responses", out)
    if failed or "Error distribution" in out:
        raise SystemExit(f"requests failed:\n{out}")

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        assert found is not None, out
        return float(found.group(1))

    return Round(
        len(pids),
        number(r"Requests/sec:\s+([\d.]+)"),
        number(r"50%+ in ([\d.]+)") * 1000,
        number(r"99%+ in ([\d.]+)") * 1000,
        cores,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    data, content_type = request_body()
    env = {"MMSERVE_LOG_LEVEL": "warning"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        Cluster(1, env=env) as one,
        Cluster(2, env=env) as two,
    ):
        body = Path(tmp) / "body.bin"
        body.write_bytes(data)
        clusters = {1: one, 2: two}
        for cluster in clusters.values():  # each replica's first request, then a warm-up run
            for server in cluster.servers:
                httpx.post(
                    f"{server.url}/v1/predict",
                    content=data,
                    headers={"content-type": content_type},
                    timeout=30,
                )
            hey(cluster.url, 2, args.concurrency, body, content_type)
        rounds: list[Round] = []
        for index in range(args.rounds):
            for replicas in (1, 2) if index % 2 == 0 else (2, 1):
                rounds.append(measure(clusters[replicas], args, body, content_type))
                print(f"round {index}: {rounds[-1]}", flush=True)
    for replicas in (1, 2):
        mine = [r for r in rounds if r.replicas == replicas]
        median = Round(
            replicas,
            statistics.median(r.rps for r in mine),
            statistics.median(r.p50_ms for r in mine),
            statistics.median(r.p99_ms for r in mine),
            statistics.median(r.cores for r in mine),
        )
        print(f"median: {median}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
