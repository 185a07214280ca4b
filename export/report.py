"""Human-readable outputs: ``report.md`` + ``confusion_digit.png`` per model, and the
combined ``docs/evaluation.md`` table (every fusion strategy x every modality subset)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.config import DIGIT_LABELS


def _metric_table(per_subset: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| modalities | accuracy | macro precision | macro recall | macro F1 | ROC-AUC |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in per_subset.items():
        lines.append(
            f"| {name} | {m['accuracy']:.4f} | {m['macro_precision']:.4f} | "
            f"{m['macro_recall']:.4f} | {m['macro_f1']:.4f} | {m['roc_auc']:.4f} |"
        )
    return lines


def write_confusion_png(results: dict[str, Any], path: Path, title: str) -> Path:
    """One digit confusion matrix per modality subset (2 x 4 grid, last cell: legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subsets = list(results["digit"])
    fig, axes = plt.subplots(2, 4, figsize=(16, 9))
    for ax, name in zip(axes.flat, subsets, strict=False):
        cm = np.asarray(results["digit"][name]["confusion"])
        ax.imshow(cm, cmap="Blues")
        acc = results["digit"][name]["accuracy"]
        ax.set_title(f"{name}\naccuracy {acc:.3f}", fontsize=10)
        ax.set_xticks(range(10), DIGIT_LABELS, fontsize=7)
        ax.set_yticks(range(10), DIGIT_LABELS, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v > cm.max() / 2 else "black",
                )
    last = axes.flat[-1]
    last.axis("off")
    last.text(
        0.0,
        0.5,
        f"{title}\n\ndigit task, test split\n{results['rows']} rows per subset",
        fontsize=11,
        va="center",
    )
    fig.tight_layout(h_pad=2.0)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


OOD_HEADING = "## Out-of-distribution check (`unsure`)"


def ood_section(ood: dict[str, Any]) -> list[str]:
    """The report's section on the ``ood`` thresholds: rule, keep rates, catch rates."""
    counts = ood["ood_inputs"]
    lines = [
        OOD_HEADING,
        "",
        f"Rule: {ood['rule']}. Centroids from {ood['train_rows']} train rows; "
        f"{ood['test_rows']} test rows; {ood['ood_rows']} out-of-distribution rows per subset "
        f"drawn from {counts['texts']} texts, {counts['images']} images and {counts['clips']} "
        f"clips ({counts['spoken_words']} of them non-digit words spoken by espeak-ng) that show "
        "no digit.",
        "",
        "| modalities | threshold | correct answers kept sure | test rows kept sure | "
        "accuracy, all | accuracy, sure | out-of-distribution caught |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in ood["per_subset"].items():
        lines.append(
            f"| {name} | {m['threshold']:.4f} | {m['keep_correct']:.4f} | {m['keep_all']:.4f} | "
            f"{m['accuracy_all']:.4f} | {m['accuracy_sure']:.4f} | {m['ood_caught']:.4f} |"
        )
    return [*lines, ""]


def replace_ood_section(text: str, ood: dict[str, Any]) -> str:
    """``report.md`` text with its OOD section replaced (or appended)."""
    head, found, rest = text.partition(OOD_HEADING)
    tail = ""
    if found:
        _, sep, after = rest.partition("\n## ")
        tail = sep.lstrip("\n") + after if sep else ""
    return head.rstrip("\n") + "\n\n" + "\n".join(ood_section(ood)) + ("\n" + tail if tail else "")


def write_report(
    path: Path,
    *,
    name: str,
    fusion: str,
    results: dict[str, Any],
    int8: dict[str, Any],
    provenance: dict[str, Any],
    ood: dict[str, Any] | None = None,
) -> Path:
    """``report.md`` next to a model: both tasks per subset, contributions, int8, parity."""
    lines = [
        f"# {name}: evaluation report",
        "",
        f"Fusion strategy: **{fusion}**. Test split: {results['rows']} rows per modality subset "
        "(writers, voices and text draws disjoint from training), scored through ONNX Runtime "
        "with absent modalities fed exactly as the service feeds them.",
        "",
        "## Task `digit`",
        "",
        *_metric_table(results["digit"]),
        "",
        "![digit confusion matrices](confusion_digit.png)",
        "",
        "## Task `consistent` (do the present modalities show the same digit?)",
        "",
        "Half of the rows have one present modality replaced by another digit. Single-modality "
        "subsets are omitted: one modality always agrees with itself.",
        "",
        *_metric_table(results["consistent"]),
        "",
        "## Mean contributions (image, audio, text)",
        "",
        "| modalities | image | audio | text |",
        "|---|---:|---:|---:|",
        *[
            f"| {k} | {v[0]:.3f} | {v[1]:.3f} | {v[2]:.3f} |"
            for k, v in results["contributions"].items()
        ],
        "",
        "## Dynamic int8 quantisation (not shipped)",
        "",
        f"- three-modality digit accuracy: fp32 {int8['fp32_accuracy']:.4f}, "
        f"int8 {int8['int8_accuracy']:.4f} "
        f"(change {int8['accuracy_change_pp']:+.2f} pp); largest change over all subsets "
        f"{int8['max_abs_change_pp']:.2f} pp",
        f"- speed, batch 32, 2 threads: fp32 {int8['fp32_ms']:.2f} ms, "
        f"int8 {int8['int8_ms']:.2f} ms "
        f"(int8 is {int8['speedup']:.2f}x the speed of fp32)",
        f"- size: fp32 {int8['fp32_bytes'] / 1e6:.2f} MB, int8 {int8['int8_bytes'] / 1e6:.2f} MB",
        "",
        "## Export checks",
        "",
        "- parity ONNX Runtime vs PyTorch, batch 1 and 8 x 7 subsets "
        f"({provenance['parity_cases']} cases): "
        f"max abs diff {provenance['parity_max_abs_diff']:.2e}",
        f"- batch invariance (row alone vs inside a mixed, padded batch): max abs diff "
        f"{provenance['batch_invariance_max_abs_diff']:.2e}",
        f"- training: {provenance['train_seconds']} s on "
        f"{provenance['train_config']['threads']} CPU thread(s), "
        f"{provenance['train_config']['steps']} steps of "
        f"{provenance['train_config']['batch_size']} rows, "
        f"seed {provenance['seed']}",
        "",
        *(ood_section(ood) if ood else []),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _ood_doc(manifests: list[Any]) -> list[str]:
    """docs/evaluation.md's table of the ``unsure`` signal, when the manifests have one."""
    measured = [m for m in manifests if "ood" in m.evaluation]
    if not measured:
        return []
    first = measured[0].evaluation["ood"]
    counts = first["ood_inputs"]
    subsets = list(first["per_subset"])
    lines = [
        "",
        "## Out-of-distribution check (`unsure`)",
        "",
        f"Rule ({first['reproduce']}): {first['rule']}. Out-of-distribution rows: "
        f"{first['ood_rows']} per subset from {counts['texts']} texts, {counts['images']} images "
        f"and {counts['clips']} clips ({counts['spoken_words']} non-digit words spoken by "
        "espeak-ng) that show no digit. Each cell: out-of-distribution rows caught / test rows "
        "kept sure (accuracy over the sure rows). One modality has its own rule because its "
        "test rows include deliberately illegible ones (14 % of texts are random letters, "
        'which the tokenizer splits like "hello world"): keeping 95 % of them sure would '
        'keep "hello world" sure too; the rows it flags are mostly ones the model gets '
        "wrong (accuracy over the sure rows against the subset's accuracy above).",
        "",
        "| model (fusion) | " + " | ".join(subsets) + " |",
        "|---|" + "---:|" * len(subsets),
    ]
    for m in measured:
        per = m.evaluation["ood"]["per_subset"]
        cells = [
            f"{per[s]['ood_caught']:.2f} / {per[s]['keep_all']:.2f} ({per[s]['accuracy_sure']:.3f})"
            for s in subsets
        ]
        lines.append(f"| {m.name} ({m.fusion}) | " + " | ".join(cells) + " |")
    probes = list(first["probes"])
    lines += [
        "",
        "What a user would try first (the label, its probability, and the verdict): the "
        "default model flags every input below that shows no digit; the others miss some, "
        '`digits-concat` worst (it reads "hello world" as a 4 with 0.998).',
        "",
        "| input | " + " | ".join(m.name for m in measured) + " |",
        "|---|" + "---|" * len(measured),
    ]
    for probe in probes:
        cells = []
        for m in measured:
            got = m.evaluation["ood"]["probes"][probe]
            verdict = "**unsure**" if got["unsure"] else "sure"
            cells.append(f"{got['digit']} ({got['probability']:.2f}) {verdict}")
        lines.append(f"| {probe} | " + " | ".join(cells) + " |")
    return lines


def write_evaluation_doc(manifests: list[Any], path: Path) -> Path:
    """``docs/evaluation.md``: digit and consistent accuracy, every strategy x every subset."""
    subsets = list(manifests[0].evaluation["digit_accuracy"])
    pairs = list(manifests[0].evaluation["consistent_accuracy"])
    head = "| model (fusion) | " + " | ".join(subsets) + " |"
    rule = "|---|" + "---:|" * len(subsets)
    lines = [
        "# Evaluation of the reference models",
        "",
        "Generated by `python -m export build-all` (or `python -m export docs`) from the "
        "models' manifests. Test split: load_digits writers (last 30% by index block), espeak-ng "
        "voices and text draws all disjoint from training; each modality is corrupted so that "
        "no single one is near perfect. Absent modalities are fed exactly as the service feeds "
        "them. Figures are through ONNX Runtime.",
        "",
        "## Digit accuracy",
        "",
        head,
        rule,
    ]
    for m in manifests:
        acc = m.evaluation["digit_accuracy"]
        lines.append(
            f"| {m.name} ({m.fusion}) | " + " | ".join(f"{acc[s]:.4f}" for s in subsets) + " |"
        )
    lines += ["", "## Digit macro F1", "", head, rule]
    for m in manifests:
        f1 = m.evaluation["digit_macro_f1"]
        lines.append(
            f"| {m.name} ({m.fusion}) | " + " | ".join(f"{f1[s]:.4f}" for s in subsets) + " |"
        )
    lines += [
        "",
        "## Consistency accuracy (do the present modalities show the same digit?)",
        "",
        "| model (fusion) | " + " | ".join(pairs) + " |",
        "|---|" + "---:|" * len(pairs),
    ]
    for m in manifests:
        acc = m.evaluation["consistent_accuracy"]
        lines.append(
            f"| {m.name} ({m.fusion}) | " + " | ".join(f"{acc[s]:.4f}" for s in pairs) + " |"
        )
    lines += _ood_doc(manifests)
    lines += [
        "",
        "## Export checks and int8",
        "",
        "| model | parity max abs diff | batch invariance | "
        "int8 accuracy change (3 modalities) | int8 speed | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in manifests:
        p, q = m.provenance, m.evaluation["int8"]
        extra = p.model_extra or {}
        lines.append(
            f"| {m.name} | {p.parity_max_abs_diff:.1e} | "
            f"{extra.get('batch_invariance_max_abs_diff', 0):.1e} | "
            f"{q['accuracy_change_pp']:+.2f} pp | {q['speedup']:.2f}x | "
            f"{extra.get('train_seconds', '')} |"
        )
    lines += [
        "",
        "Per-model reports (precision, recall, ROC-AUC, confusion matrices): "
        + ", ".join(
            f"[{m.name}](../onnx_models/{m.name}/{m.version}/report.md)" for m in manifests
        ),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
