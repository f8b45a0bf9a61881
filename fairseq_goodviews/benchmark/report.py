"""The benchmark's report: results.json, results.md (Table 1 layout), auroc.png, label_efficiency.png."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from fairseq_goodviews.io.atomic import atomic_open, atomic_path

#: Table 1 of the Good Views paper: macro AUROC (%), mean and std over 5 runs.
PAPER_AUROC: Dict[str, tuple[float, float]] = {
    "supervised": (81.4, 1.3),
    "cmlc": (88.9, 1.6),
    "cmsc": (83.0, 1.1),
    "simclr": (89.6, 0.6),
    "demographics": (88.1, 1.3),
    "rhythm": (99.3, 0.0),
    "attributes": (94.2, 0.3),
}

DISPLAY_NAMES: Dict[str, str] = {
    "supervised": "Supervised baseline",
    "random_init": "Random-init frozen encoder",
    "cmlc": "Strategy 1 (CLOCS - Lead)",
    "cmsc": "Strategy 1 (CLOCS - Time)",
    "cmsmlc": "CLOCS - Lead & Time (CMSMLC)",
    "simclr": "Strategy 2 (SimCLR)",
    "demographics": "Strategy 3 (Demographics)",
    "rhythm": "Strategy 4 (Rhythms)",
    "attributes": "Strategy 5 (Attributes)",
    "patient": "Patient (PCLR)",
    "w2v_cmsc_rlm": "W2V+CMSC+RLM",
}
ROW_ORDER = list(DISPLAY_NAMES)
METRICS = ("macro_auroc", "accuracy", "macro_f1", "macro_auprc")
DAGGER = "\u2020"


def display_name(method: str, uses_labels: bool = False) -> str:
    return DISPLAY_NAMES.get(method, method) + (DAGGER if uses_labels else "")


def _order(method: str) -> tuple[int, str]:
    return (ROW_ORDER.index(method) if method in ROW_ORDER else len(ROW_ORDER), method)


def mean_std(values: Sequence[float]) -> Dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    array = np.asarray(finite, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "n": len(finite)}


def _section(method: str, protocol: str) -> tuple[int, tuple[int, str]]:
    """Table order: linear probes and the supervised baseline (Table 1), then full fine-tunes."""
    return (0 if protocol == "linear_probe" or method == "supervised" else 1, _order(method))


def summary_rows(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (method, protocol) over seeds, from the runs with all training labels."""
    groups: Dict[tuple[str, str], List[Dict[str, Any]]] = {}
    for result in results:
        if result.get("metrics") is None or result.get("label_fraction", 1.0) != 1.0:
            continue
        groups.setdefault((result["strategy"], result["protocol"]), []).append(result)
    rows = []
    for (method, protocol), runs in sorted(groups.items(), key=lambda item: _section(*item[0])):
        uses_labels = any(r["uses_labels"] for r in runs)
        row: Dict[str, Any] = {
            "method": method, "name": display_name(method, uses_labels), "protocol": protocol,
            "kind": runs[0]["kind"], "uses_labels": uses_labels, "seeds": sorted(r["seed"] for r in runs),
            "wall_time_s": mean_std([r.get("total_wall_time_s", r["wall_time_s"]) for r in runs]),
            "paper_auroc": None,
        }
        for metric in METRICS:
            row[metric] = mean_std([r["metrics"].get(metric) for r in runs])
        if method in PAPER_AUROC and (protocol == "linear_probe" or method == "supervised"):
            mean, std = PAPER_AUROC[method]
            row["paper_auroc"] = {"mean": mean / 100, "std": std / 100}
        rows.append(row)
    return rows


def label_efficiency(results: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """method -> fraction (as text) -> macro AUROC over seeds, for the linear-probe runs."""
    groups: Dict[str, Dict[float, List[float]]] = {}
    for result in results:
        if result.get("metrics") is None or result.get("protocol") != "linear_probe":
            continue
        groups.setdefault(result["strategy"], {}).setdefault(result["label_fraction"], []).append(
            result["metrics"].get("macro_auroc"))
    return {method: {f"{fraction:g}": mean_std(values) for fraction, values in sorted(by_fraction.items())}
            for method, by_fraction in sorted(groups.items(), key=lambda item: _order(item[0]))}


def _pct(stat: Optional[Dict[str, Any]], digits: int = 1) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = f"{100 * stat['mean']:.{digits}f}"
    if stat.get("n", 2) > 1:
        text += f" ± {100 * stat['std']:.{digits}f}"
    return text


def _settings_line(settings: Dict[str, Any]) -> str:
    special = "".join(f" ({display_name(name)}: {epochs})"
                      for name, epochs in settings.get("strategy_epochs", {}).items() if name in settings["strategies"])
    line = (f"Data: `{settings['data']}`; seeds: {settings['seeds']}; pretraining {settings['pretrain_epochs']} "
            f"epochs{special}, linear probe {settings['probe_epochs']} epochs, supervised/fine-tune "
            f"{settings['finetune_epochs']} epochs, batch {settings['batch_size']}, hydra preset "
            f"`{settings['hydra_preset']}`")
    if settings.get("sample_size"):
        line += f", inputs of {settings['sample_size']} samples (and each ResNet pretraining view)"
    invocations = settings.get("invocations", [])
    wall = sum(i["wall_time_s"] for i in invocations)
    return line + (f". Wall time {wall / 60:.1f} min ({len(invocations)} invocation(s), "
                   f"{settings['jobs']} runs at a time).")


def markdown(rows: Sequence[Dict[str, Any]], efficiency: Dict[str, Dict[str, Dict[str, Any]]],
             settings: Dict[str, Any], failed: Dict[str, str]) -> str:
    lines = [
        f"# Good Views benchmark ({settings['name']} preset)",
        "",
        _settings_line(settings),
        "Test-split metrics (%) of the best checkpoint by valid macro AUROC, mean ± std over seeds.",
        "",
        "## Table 1",
        "",
        "| Method | Protocol | Seeds | Macro AUROC | Accuracy | Macro F1 | Paper AUROC |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        protocol = {"linear_probe": "linear probe", "finetune": "fine-tune"}.get(row["protocol"], row["protocol"])
        if row["method"] == "supervised":
            protocol = "trained from scratch"
        lines.append(f"| {row['name']} | {protocol} | {len(row['seeds'])} | {_pct(row['macro_auroc'])} | "
                     f"{_pct(row['accuracy'])} | {_pct(row['macro_f1'])} | {_pct(row['paper_auroc'])} |")
    lines.append("")
    if any(row["uses_labels"] for row in rows):
        lines.append(f"- {DAGGER} Its pretraining read the downstream labels (positives share the rhythm label): "
                     "not self-supervised, an upper reference (the paper's Strategy 4).")
    lines += [
        "- Random-init frozen encoder: the same encoder, never trained, with a linear probe (not in the paper).",
        "- Paper AUROC: Good Views Table 1 (ResNet-18, 50 epochs, real Chapman data).",
    ]
    fractions = sorted({float(f) for by_fraction in efficiency.values() for f in by_fraction})
    if len(fractions) > 1:
        lines += ["", "## Label efficiency (linear probe macro AUROC)", "",
                  "| Method | " + " | ".join(f"{100 * f:g}% labels" for f in fractions) + " |",
                  "| --- |" + " --- |" * len(fractions)]
        uses = {row["method"]: row["uses_labels"] for row in rows}
        for method, by_fraction in efficiency.items():
            cells = [_pct(by_fraction.get(f"{f:g}")) for f in fractions]
            lines.append(f"| {display_name(method, uses.get(method, False))} | " + " | ".join(cells) + " |")
    if failed:
        lines += ["", "## Runs that did not finish", ""]
        lines += [f"- `{run_id}`: {why.splitlines()[0]}" for run_id, why in sorted(failed.items())]
    return "\n".join(lines) + "\n"


def plot_auroc(rows: Sequence[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["macro_auroc"]["mean"] is not None]
    labels = [f"{r['name']}" + (" [fine-tune]" if r["protocol"] == "finetune" and r["method"] != "supervised" else "")
              for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ax.barh(y, [100 * r["macro_auroc"]["mean"] for r in rows], xerr=[100 * r["macro_auroc"]["std"] for r in rows],
            color=["#d62728" if r["uses_labels"] else "#1f77b4" for r in rows], alpha=0.8, capsize=3, label="ours")
    paper = [(i, r["paper_auroc"]) for i, r in enumerate(rows) if r["paper_auroc"]]
    if paper:
        ax.errorbar([100 * p["mean"] for _, p in paper], [i for i, _ in paper], xerr=[100 * p["std"] for _, p in paper],
                    fmt="kD", markersize=5, capsize=3, label="paper (Table 1)")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("test macro AUROC (%)")
    low = min([100 * r["macro_auroc"]["mean"] for r in rows] + [100 * p["mean"] for _, p in paper] + [50.0])
    ax.set_xlim(max(0.0, low - 5), 100)
    ax.legend(loc="lower right", fontsize=8)
    if any(r["uses_labels"] for r in rows):
        ax.set_title(f"red, {DAGGER}: pretraining read the downstream labels", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def plot_label_efficiency(efficiency: Dict[str, Dict[str, Dict[str, Any]]], uses: Dict[str, bool], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    fractions = sorted({float(f) for by_fraction in efficiency.values() for f in by_fraction})
    for method, by_fraction in efficiency.items():
        points = sorted((float(f), s) for f, s in by_fraction.items() if s["mean"] is not None)
        if not points:
            continue
        ax.errorbar([100 * f for f, _ in points], [100 * s["mean"] for _, s in points],
                    yerr=[100 * s["std"] for _, s in points], marker="o", capsize=3,
                    linestyle="--" if method == "random_init" else "-",
                    label=display_name(method, uses.get(method, False)))
    ax.set_xscale("log")
    ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}%" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("training labels used by the linear probe (%)")
    ax.set_ylabel("test macro AUROC (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_report(out: Path, plan, outcome, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Write the four report files from every finished run of ``plan``; returns results.json's payload."""
    results = [outcome.results[spec.run_id] for spec in plan if spec.run_id in outcome.results]
    downstream = [r for r in results if r.get("metrics") is not None]
    rows = summary_rows(downstream)
    efficiency = label_efficiency(downstream)
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "benchmark": settings,
        "runs": results,
        "table": rows,
        "label_efficiency": efficiency,
        "paper_auroc": {method: {"mean": m / 100, "std": s / 100} for method, (m, s) in PAPER_AUROC.items()},
        "failed": outcome.failed,
    }
    with atomic_open(out / "results.json") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, allow_nan=False)
    with atomic_open(out / "results.md") as handle:
        handle.write(markdown(rows, efficiency, settings, outcome.failed))
    plot_auroc(rows, out / "auroc.png")
    plot_label_efficiency(efficiency, {row["method"]: row["uses_labels"] for row in rows}, out / "label_efficiency.png")
    return payload
