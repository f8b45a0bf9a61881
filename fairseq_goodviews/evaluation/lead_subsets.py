"""Score one classifier checkpoint on the standard lead subsets (lead-agnostic evaluation, Oh et al.).

    python -m fairseq_goodviews.evaluation.lead_subsets CHECKPOINT --data DIR [--split test] [--json OUT]

``CHECKPOINT`` is a linear-probe or fine-tuned ``ecg_classification`` checkpoint. It is scored,
through :func:`evaluate_checkpoint`, with the lead sets of the PhysioNet/CinC Challenge 2021
(12; 6 = I, II, III, aVR, aVL, aVF; 4 = I, II, III, V2; 3 = I, II, V2; 2 = I, II) and the
single lead II that Oh et al. add: the leads outside a set are zero-filled in their canonical
slots, so the model input stays 12 x T. Prints a table of the task's own metrics per set
(single-label: macro AUROC, macro AUPRC, accuracy, macro F1; multi-label: macro AUROC, macro
AUPRC, F-max, and the challenge score for the CinC 2021 label set, thresholds chosen on the
valid split with the same leads); ``--json OUT`` also writes every metric of every set as JSON
(``-`` for standard output):
``{"checkpoint": ..., "split": ..., "subsets": [{"name": ..., "leads": [...], "metrics": {...}}, ...]}``.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint
from fairseq_goodviews.leads import CANONICAL_LEADS, LEAD_SETS, lead_names, parse_leads

#: Subset name -> canonical slots of its leads (None = all 12), in the order the table shows them:
#: the named lead sets of :data:`~fairseq_goodviews.leads.LEAD_SETS`.
LEAD_SUBSETS: dict[str, list[int] | None] = {
    "12 leads": None,
    "6 limb leads": parse_leads(LEAD_SETS["6"]),
    **{
        f"{name} lead{'s' if len(LEAD_SETS[name]) > 1 else ''} ({', '.join(LEAD_SETS[name])})": parse_leads(
            LEAD_SETS[name]
        )
        for name in ("4", "3", "2", "1")
    },
}
TABLE_METRICS: Sequence[str] = ("macro_auroc", "macro_auprc", "accuracy", "macro_f1")
MULTI_LABEL_TABLE_METRICS: Sequence[str] = ("macro_auroc", "macro_auprc", "f_max", "challenge_score")


def table_columns(results: Mapping[str, Mapping]) -> Sequence[str]:
    """The table's metric columns: those of the task (multi-label metrics carry ``f_max``)."""
    first = next(iter(results.values()))["metrics"]
    columns = MULTI_LABEL_TABLE_METRICS if "f_max" in first else TABLE_METRICS
    return [c for c in columns if c in first]


def evaluate_lead_subsets(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    subsets: Mapping[str, Sequence[int] | None] = LEAD_SUBSETS,
    batch_size: int = 64,
    device: str | None = None,
) -> dict[str, dict]:
    """``{subset name: {"leads": [...], "metrics": {...}}}`` for every subset, in order."""
    results = {}
    for name, leads in subsets.items():
        metrics = evaluate_checkpoint(checkpoint, data, split, leads, batch_size, device=device)
        results[name] = {"leads": list(CANONICAL_LEADS) if leads is None else lead_names(leads), "metrics": metrics}
    return results


def format_table(results: Mapping[str, Mapping], columns: Sequence[str] | None = None) -> str:
    columns = table_columns(results) if columns is None else columns
    width = max(len(name) for name in results)
    lines = [f"{'leads':<{width}}  " + "  ".join(f"{c:>11s}" for c in columns)]
    for name, entry in results.items():
        values = [entry["metrics"].get(c, math.nan) for c in columns]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>11.4f}" for v in values))
    return "\n".join(lines)
