"""One model folder loaded for in-process use: manifest, tokenizer and session.

Shared by the in-process ceiling and the Flask baseline, so both run exactly the service's
feature and inference code (``extract_row``, ``collate``, ``ModelSession``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from service.features.text import load_tokenizer
from service.manifest import MANIFEST_FILENAME, Manifest, Modality, load_manifest
from service.model_dir import scan
from service.repository import version_key
from service.runtime.extract import extract_row
from service.runtime.rows import FeatureRow, collate, split_rows
from service.runtime.session import ModelSession
from service.settings import Limits, Runtime


@dataclass(frozen=True)
class InProcessModel:
    manifest: Manifest
    tokenizer: Tokenizer | None
    session: ModelSession
    limits: Limits

    def features(self, uploads: Mapping[Modality, bytes | str]) -> FeatureRow:
        return extract_row(self, uploads, self.limits).row

    def infer(self, rows: list[FeatureRow]) -> list[dict[str, np.ndarray]]:
        outputs = self.session.run(collate(rows, self.manifest))
        return split_rows(outputs, len(rows))


def latest_version(repository: Path, name: str) -> Path:
    """``repository/name/<version>``: the version the service answers ``name`` with."""
    versions = [
        p for p in scan(repository) if p.parent.name == name and (p / MANIFEST_FILENAME).is_file()
    ]
    if not versions:
        raise FileNotFoundError(f"no model versions under {repository / name}")
    return max(versions, key=lambda p: version_key(p.name))


def load_model(
    model_dir: Path, *, intra_op_threads: int = 1, providers: list[str] | None = None
) -> InProcessModel:
    """``providers`` as the service's setting (default ``auto``), CUDA options at defaults."""
    manifest = load_manifest(model_dir)
    text = manifest.modalities.text
    tokenizer = load_tokenizer(model_dir / text.tokenizer_dir) if text is not None else None
    runtime = Runtime(
        providers=providers or ["auto"], intra_op_threads=intra_op_threads, inter_op_threads=1
    )
    session = ModelSession.open(model_dir / manifest.model_file, runtime)
    return InProcessModel(manifest, tokenizer, session, Limits())
