"""The benchmark's report: results.json, results.md (Table 1 layout), auroc.png, label_efficiency.png."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from fairseq_goodviews.io.atomic import atomic_open, atomic_path

#: The baselines: their table names and the paper's Table 1 macro AUROC (%) where it has one.
#: Pretraining methods describe themselves (``settings["methods"]``, from their strategy class).
BASELINES: Dict[str, Dict[str, Any]] = {
    "supervised": {"table_name": "Supervised baseline", "paper_auroc": (81.4, 1.3)},
    "random_init": {"table_name": "Random-init frozen encoder", "paper_auroc": None},
}
METRICS = ("macro_auroc", "accuracy", "macro_f1", "macro_auprc")
DAGGER = "\u2020"


def _catalogue(methods: Optional[Mapping[str, Mapping[str, Any]]]) -> Dict[str, Mapping[str, Any]]:
    """Baselines then methods, in table order."""
    return {**BASELINES, **(methods or {})}


def display_name(method: str, uses_labels: bool = False,
                 methods: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    return _catalogue(methods).get(method, {}).get("table_name", method) + (DAGGER if uses_labels else "")


def _order(method: str, methods: Optional[Mapping[str, Mapping[str, Any]]] = None) -> tuple[int, str]:
    order = list(_catalogue(methods))
    return (order.index(method) if method in order else len(order), method)


def mean_std(values: Sequence[float]) -> Dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    array = np.asarray(finite, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "n": len(finite)}


def summary_rows(results: Sequence[Dict[str, Any]],
                 methods: Optional[Mapping[str, Mapping[str, Any]]] = None) -> List[Dict[str, Any]]:
    """One row per (method, protocol) over seeds, from the downstream runs with all training labels.

    ``methods`` (name -> ``table_name``, ``paper_auroc``) describes the pretraining methods; a
    method that was not applicable to the data gets a row with ``status`` and ``reason`` and no
    metrics. Order: linear probes and the supervised baseline (Table 1), then full fine-tunes.
    """
    groups: Dict[tuple[str, str], List[Dict[str, Any]]] = {}
    for result in results:
        if result.get("protocol") is None or result.get("label_fraction", 1.0) != 1.0:
            continue
        if result.get("metrics") is None and result.get("status") != "not_applicable":
            continue
        groups.setdefault((result["strategy"], result["protocol"]), []).append(result)
    catalogue = _catalogue(methods)

    def section(key: tuple[str, str]) -> tuple[int, tuple[int, str]]:
        method, protocol = key
        return (0 if protocol == "linear_probe" or method == "supervised" else 1, _order(method, methods))

    rows = []
    for (method, protocol), runs in sorted(groups.items(), key=lambda item: section(item[0])):
        uses_labels = any(r["uses_labels"] for r in runs)
        scored = [r for r in runs if r.get("metrics") is not None]
        row: Dict[str, Any] = {
            "method": method, "name": display_name(method, uses_labels, methods), "protocol": protocol,
            "kind": runs[0]["kind"], "uses_labels": uses_labels, "seeds": sorted(r["seed"] for r in runs),
            "status": "ok" if scored else "not_applicable",
            "wall_time_s": mean_std([r.get("total_wall_time_s", r["wall_time_s"]) for r in scored]),
            "paper_auroc": None,
        }
        if not scored:
            row["reason"] = runs[0]["reason"]
        for metric in METRICS:
            row[metric] = mean_std([r["metrics"].get(metric) for r in scored])
        paper = catalogue.get(method, {}).get("paper_auroc")
        if paper and (protocol == "linear_probe" or method == "supervised"):
            row["paper_auroc"] = {"mean": paper[0] / 100, "std": paper[1] / 100}
        rows.append(row)
    return rows


def label_efficiency(results: Sequence[Dict[str, Any]],
                     methods: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """method -> fraction (as text) -> macro AUROC over seeds, for the linear-probe runs."""
    groups: Dict[str, Dict[float, List[float]]] = {}
    for result in results:
        if result.get("metrics") is None or result.get("protocol") != "linear_probe":
            continue
        groups.setdefault(result["strategy"], {}).setdefault(result["label_fraction"], []).append(
            result["metrics"].get("macro_auroc"))
    return {method: {f"{fraction:g}": mean_std(values) for fraction, values in sorted(by_fraction.items())}
            for method, by_fraction in sorted(groups.items(), key=lambda item: _order(item[0], methods))}


def _pct(stat: Optional[Dict[str, Any]], digits: int = 1) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = f"{100 * stat['mean']:.{digits}f}"
    if stat.get("n", 2) > 1:
        text += f" ± {100 * stat['std']:.{digits}f}"
    return text


def _schedule_text(facts: Mapping[str, Any]) -> str:
    return (f"`{facts['schedule']}` ({facts['max_epoch']} epochs, lr {facts['lr']:g}, batch {facts['batch_size']}, "
            f"crops of {facts['sample_size']} samples)")


def _settings_line(settings: Dict[str, Any]) -> str:
    schedules = settings["schedules"]
    line = (f"Data: `{settings['data']}`; seeds: {settings['seeds']}; hydra preset `{settings['hydra_preset']}`; "
            f"schedules: pretraining {_schedule_text(schedules['pretraining'])}, linear probe "
            f"{_schedule_text(schedules['linear_probe'])}, supervised/fine-tune {_schedule_text(schedules['finetune'])}")
    if settings.get("crop_per_view"):
        line += "; a strategy that cuts its crop into time segments pretrains on crops that many times longer"
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
    not_applicable = [row for row in rows if row["status"] == "not_applicable"]
    for row in rows:
        protocol = {"linear_probe": "linear probe", "finetune": "fine-tune"}.get(row["protocol"], row["protocol"])
        if row["method"] == "supervised":
            protocol = "trained from scratch"
        name = row["name"]
        if row in not_applicable:
            name += f" [{not_applicable.index(row) + 1}]"
        lines.append(f"| {name} | {protocol} | {len(row['seeds'])} | {_pct(row['macro_auroc'])} | "
                     f"{_pct(row['accuracy'])} | {_pct(row['macro_f1'])} | {_pct(row['paper_auroc'])} |")
    lines.append("")
    lines += [f"- [{i}] n/a: not trained, {row['reason']}." for i, row in enumerate(not_applicable, 1)]
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
            name = display_name(method, uses.get(method, False), settings.get("methods"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
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


def plot_label_efficiency(efficiency: Dict[str, Dict[str, Dict[str, Any]]], names: Dict[str, str], path: Path) -> None:
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
                    label=names.get(method, method))
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
    methods = settings.get("methods")
    downstream = [r for r in results if r.get("protocol") is not None]
    rows = summary_rows(downstream, methods)
    efficiency = label_efficiency(downstream, methods)
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "benchmark": settings,
        "runs": results,
        "table": rows,
        "label_efficiency": efficiency,
        "paper_auroc": {method: {"mean": info["paper_auroc"][0] / 100, "std": info["paper_auroc"][1] / 100}
                        for method, info in _catalogue(methods).items() if info.get("paper_auroc")},
        "failed": outcome.failed,
    }
    with atomic_open(out / "results.json") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, allow_nan=False)
    with atomic_open(out / "results.md") as handle:
        handle.write(markdown(rows, efficiency, settings, outcome.failed))
    plot_auroc(rows, out / "auroc.png")
    names = {method: display_name(method, any(r["uses_labels"] for r in rows if r["method"] == method), methods)
             for method in efficiency}
    plot_label_efficiency(efficiency, names, out / "label_efficiency.png")
    return payload
