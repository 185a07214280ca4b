"""Output parameters that flag rows whose numbers must not be read as answers.

A V2 output is the graph's tensor, one row per input row, so it keeps every row's numbers
(never NaN: clients cast, compare and serialise them). Where ``/v1`` leaves a task out or
marks an answer unsure, the V2 output says which rows instead, as comma-separated row
indices in its ``parameters`` (V2 parameters are scalars):

- ``not_applicable_rows`` on a task's output: rows with fewer modalities than the task's
  ``min_modalities`` (the bundled models' ``consistent_probs`` for one-modality rows);
- ``unsure_rows`` on the output of the task the manifest's ``ood`` check scores: rows whose
  inputs look out of distribution, as ``/v1``'s ``ood.unsure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from service.manifest import Manifest, Modality
from service.ood import OodCheck

Parameters = dict[str, str]


def row_flags(
    manifest: Manifest,
    check: OodCheck | None,
    carried: Sequence[list[Modality]],
    results: Sequence[Mapping[str, np.ndarray]],
) -> dict[str, Parameters]:
    """Output name -> its parameters, for the outputs that have rows to flag."""
    flags: dict[str, Parameters] = {}
    for task in manifest.tasks:
        rows = [i for i, present in enumerate(carried) if len(present) < task.min_modalities]
        if rows:
            flags.setdefault(task.output, {})["not_applicable_rows"] = _join(rows)
    if check is not None:
        unsure = [
            i
            for i, (present, outputs) in enumerate(zip(carried, results, strict=True))
            if (assessed := check.assess(present, outputs)) is not None and assessed.unsure
        ]
        if unsure:
            flags.setdefault(check.task_output, {})["unsure_rows"] = _join(unsure)
    return flags


def _join(rows: list[int]) -> str:
    return ",".join(str(i) for i in rows)
