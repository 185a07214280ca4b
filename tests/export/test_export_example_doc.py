"""docs/export.md's export example is export/examples/my_model.py, and it works as shown.

The guide quotes the file verbatim; the test runs it the way the guide says
(``python -m export.examples.my_model DIR``) and serves what it wrote through the real app.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.settings import REPO_ROOT, Settings

EXAMPLE = REPO_ROOT / "export" / "examples" / "my_model.py"
GUIDE = REPO_ROOT / "docs" / "export.md"
MARKER = "<!-- export/examples/my_model.py -->"


def test_guide_quotes_the_example_file_verbatim() -> None:
    guide = GUIDE.read_text()
    assert guide.count(MARKER) == 1
    after = guide.split(MARKER, 1)[1]
    block = re.match(r"\s*```python\n(.*?)\n\s*```", after, re.DOTALL)
    assert block is not None, f"a ```python block must follow {MARKER}"
    assert textwrap.dedent(block.group(1)) + "\n" == EXAMPLE.read_text(), (
        "docs/export.md's example differs from export/examples/my_model.py: paste the file in"
    )
    assert "python -m export.examples.my_model onnx_models/my-model/1" in guide


@pytest.mark.slow
def test_example_exports_a_model_the_service_serves(tmp_path: Path) -> None:
    out = tmp_path / "models" / "my-model" / "1"
    run = subprocess.run(
        [sys.executable, "-m", "export.examples.my_model", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"wrote {out}" in run.stdout
    settings = Settings.model_validate(
        {
            "model_dir": tmp_path / "models",
            "workers": 1,
            "runtime": {"providers": ["CPUExecutionProvider"]},
            "allowed_hosts": ["testserver"],  # TestClient's Host
        }
    )
    png = io.BytesIO()
    Image.new("L", (40, 40), 200).save(png, format="PNG")
    with TestClient(create_app(settings)) as client:
        answer = client.post(
            "/v1/models/my-model/predict",
            data={"text": "a photo of seven"},
            files={"image": ("seven.png", png.getvalue(), "image/png")},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["modalities"] == ["image", "text"]
        assert body["tasks"]["match"]["label"] in {"no", "yes"}
        assert set(body["contributions"]) == {"image", "text"}
        image_only = client.post("/v1/models/my-model/predict", files={"image": png.getvalue()})
        assert image_only.status_code == 200, image_only.text
        assert image_only.json()["tasks"]["match"]["label"] == "yes"  # one modality agrees
