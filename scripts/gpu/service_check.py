"""Start ``python -m service serve`` with the given providers, predict, and record what it says.

The record: ``/v1/models/{model}``'s ``execution`` and ``batching``, one ``/v1/predict`` answer
to the benchmark's uploads (image, audio, text), its status and time, and whether the service
ran on the provider asked for (``ok``).

    python -m scripts.gpu.service_check --providers CUDAExecutionProvider,CPUExecutionProvider \\
        --out service.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from service.settings import REPO_ROOT
from tools.bench.runner import _clean_env
from tools.bench.servers import ServerSpec, running
from tools.bench.uploads import make_uploads, multipart_body
from tools.ports import free_port

# No proxies: only 127.0.0.1 is ever asked.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> Any:
    with _OPENER.open(url, timeout=30) as response:
        return json.load(response)


def _post(url: str, body: bytes, content_type: str) -> tuple[int, Any, float]:
    request = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    start = time.perf_counter()
    with _OPENER.open(request, timeout=30) as response:
        answer = json.load(response)
        return response.status, answer, (time.perf_counter() - start) * 1000.0


def check(providers: str, model_dir: Path, model: str, workers: int) -> dict[str, Any]:
    port = free_port()
    command = [
        sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--model-dir", str(model_dir), "--providers", providers,
        "--default-model", model,
    ]  # fmt: skip
    spec = ServerSpec("service-check", command, _clean_env({}))
    body, content_type = multipart_body(make_uploads())
    with tempfile.TemporaryDirectory() as logs, running(spec, port, Path(logs)) as server:
        detail = _get(server.url(f"/v1/models/{model}"))
        answers = [_post(server.url("/v1/predict"), body, content_type) for _ in range(20)]
    status, answer, _ = answers[-1]
    wanted = providers.split(",")[0]
    in_use = detail["execution"]["providers_in_use"]
    return {
        "providers": providers,
        "workers": workers,
        "ready_s": round(server.ready_s, 2),
        "execution": detail["execution"],
        "batching": detail["batching"],
        "warmup_s": detail["warmup_s"],
        "predict_status": status,
        "predict_ms_last_of_20": round(answers[-1][2], 2),
        "predict": answer,
        "ok": status == 200 and bool(in_use) and in_use[0] == wanted,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "onnx_models")
    parser.add_argument("--model", default="digits-xattn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = check(args.providers, args.model_dir, args.model, args.workers)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"service on {result['execution']['providers_in_use']}: predict {result['predict_status']}"
        f" in {result['predict_ms_last_of_20']} ms; ok={result['ok']}",
        file=sys.stderr,
    )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
