"""The model folder's layout, ``<model_dir>/<name>/<version>/manifest.json``, and its check.

Kept free of numpy and ONNX Runtime so that ``serve`` can check ``--model-dir`` in the
supervisor process, before any worker starts (see :mod:`service.cli`).
"""

from __future__ import annotations

from pathlib import Path

from service.manifest import MANIFEST_FILENAME

LAYOUT = f"<name>/<version>/{MANIFEST_FILENAME}"


class ModelDirError(Exception):
    """The model folder cannot serve anything; the message names the path and the layout."""


def scan(model_dir: Path) -> list[Path]:
    """Every ``<name>/<version>`` folder, hidden ones skipped."""
    if not model_dir.is_dir():
        return []
    return sorted(
        version
        for name in model_dir.iterdir()
        if name.is_dir() and not name.name.startswith(".")
        for version in name.iterdir()
        if version.is_dir() and not version.name.startswith(".")
    )


def check_model_dir(model_dir: Path, *, allow_empty: bool = False) -> None:
    """Raise :class:`ModelDirError` unless ``model_dir`` holds at least one model's manifest.

    A mistyped ``--model-dir`` used to start a server that answered 404 to everything. A
    folder that exists but holds no manifest is accepted when ``allow_empty`` is set (models
    may be added to it later); a missing folder or a file never is.
    """
    shown = model_dir.resolve()
    if not model_dir.exists():
        raise ModelDirError(
            f"the model folder {shown} does not exist; expected a folder of {LAYOUT}"
        )
    if not model_dir.is_dir():
        raise ModelDirError(f"the model folder {shown} is not a folder; expected {LAYOUT}")
    if allow_empty or any((path / MANIFEST_FILENAME).is_file() for path in scan(model_dir)):
        return
    raise ModelDirError(
        f"the model folder {shown} holds no model: expected {LAYOUT} in it (for example "
        f"digits-xattn/1/{MANIFEST_FILENAME}); to start with no models anyway, pass "
        "--allow-empty or set MMSERVE_ALLOW_EMPTY_MODEL_DIR=1"
    )
