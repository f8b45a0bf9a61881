"""The benchmark's report: results.json, results.md (Table 1 layout), auroc.png, label_efficiency.png
and, with several lead sets, lead_sets.png.

Rows are (method, lead masking, protocol): every Good Views strategy appears without lead masking
(the paper's protocol) and with random lead masking (RLM); a method that masks leads by definition
(W2V+CMSC+RLM) appears once. Each row carries the test macro AUROC over seeds (mean, std, a 95 %
interval: Student-t over seeds, or the run's bootstrap interval for a single seed; the plots draw
the same interval), the downstream task's other metrics (:func:`~.downstream.task_metrics`) and,
for the linear probes, paired differences against the random-init baseline of the method's own
encoder family and against SimCLR in the same column when it has the same encoder (never a
comparison that changes the architecture and the method at once): the Student-t interval of the
per-seed differences, or with one seed the paired bootstrap of its test records, labelled as
conditional on the one trained model (:mod:`fairseq_goodviews.table1.stats`). Each row names its
encoder and the schedules it ran, read from its runs' composed configs. The paper's figures appear
only beside its own task, ``rhythm4``.

Rows are also per lead set (``lead_set``: the lead names a probe or baseline was trained and tested
on): Table 1 is the 12-lead rows; a row on fewer leads carries ``drop_from_12`` (12-lead AUROC
minus its own, paired by seed), and a row with random lead masking ``vs_no_rlm`` (RLM minus no
RLM on the same lead set, paired by seed), both with the interval of the other paired differences.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from fairseq_goodviews.io.atomic import atomic_open, atomic_path
from fairseq_goodviews.leads import CANONICAL_LEADS, lead_set_label
from fairseq_goodviews.table1.downstream import CHALLENGE_METRIC, RHYTHM4, describe_task, task_metrics
from fairseq_goodviews.table1.plan import DEFAULT_ENCODER, FAMILY_PREFIX, RANDOM_INIT, BenchmarkError, random_init_stem
from fairseq_goodviews.table1.resume import schedule_text
from fairseq_goodviews.table1.stats import (
    RECORDS_ONE_SEED,
    DifferentTestRecordsError,
    Predictions,
    bootstrap_auroc,
    mean_interval,
    paired_difference,
    percentile_interval,
)

#: The encoder families as the tables name them.
ENCODER_NAMES = {"resnet1d": "ResNet-1D", "wav2vec2_ecg": "wav2vec 2.0"}
#: The baselines: their table names and the paper's Table 1 macro AUROC (%) where it has one; one
#: random-init baseline per encoder family (``random_init``, ``random_init_w2v``).
#: Pretraining methods describe themselves (``settings["methods"]``, from their strategy class).
BASELINES: Dict[str, Dict[str, Any]] = {
    "supervised": {"table_name": "Supervised baseline", "paper_auroc": (81.4, 1.3)},
    **{
        random_init_stem(encoder): {"table_name": f"Random-init frozen {ENCODER_NAMES[encoder]}", "paper_auroc": None}
        for encoder in FAMILY_PREFIX
    },
}
#: Column names of the metrics in the tables.
METRIC_NAMES = {
    "macro_auroc": "Macro AUROC",
    "accuracy": "Accuracy",
    "macro_f1": "Macro F1",
    "macro_auprc": "Macro AUPRC",
    "f_max": "F-max",
    CHALLENGE_METRIC: "Challenge score",
}
#: The methods every probe row is compared with (paired, same seed, same encoder family; SimCLR in
#: the same lead-masking column): ``vs_random_init`` is the row's own family's random init.
REFERENCES = (RANDOM_INIT, "simclr")
#: The other downstream tasks, as extra columns of each linear-probe row: (protocol, metric, column).
EXTRA_COLUMNS = (
    ("ptbxl_probe", "macro_auroc", "ptbxl_macro_auroc"),
    ("ptbxl_probe", "f_max", "ptbxl_f_max"),
    ("identification", "top1", "identification_top1"),
    ("identification", "eer", "identification_eer"),
)
TABLE_PROTOCOLS = ("linear_probe", "finetune")
#: The interval of every Table 1 cell and of every bar and point of the plots.
INTERVAL = "95 % interval: Student-t over seeds; one seed: bootstrap over test records"
DAGGER = "\u2020"
#: The plot of AUROC against lead set, written when the benchmark ran several.
LEAD_SET_PLOT = "lead_sets.png"

Methods = Optional[Mapping[str, Mapping[str, Any]]]


def _catalogue(methods: Methods) -> Dict[str, Mapping[str, Any]]:
    """Baselines then methods, in table order."""
    return {**BASELINES, **(methods or {})}


def display_name(method: str, uses_labels: bool = False, methods: Methods = None) -> str:
    return _catalogue(methods).get(method, {}).get("table_name", method) + (DAGGER if uses_labels else "")


def _order(method: str, methods: Methods = None) -> tuple[int, str]:
    order = list(_catalogue(methods))
    return (order.index(method) if method in order else len(order), method)


def masked(result: Mapping[str, Any]) -> bool:
    """Whether the run's encoder was pretrained with random lead masking."""
    return bool(result.get("lead_mask_prob") or 0.0)


def encoder_of(result: Mapping[str, Any]) -> str:
    """The encoder family of a run or row (runs from before families were recorded: the ResNet)."""
    return result.get("encoder") or DEFAULT_ENCODER


def lead_set_of(result: Mapping[str, Any]) -> tuple[str, ...]:
    """The leads a run or row was trained and tested on (runs from before lead sets: all 12)."""
    return tuple(result.get("lead_set") or CANONICAL_LEADS)


def twelve_leads(result: Mapping[str, Any]) -> bool:
    return lead_set_of(result) == CANONICAL_LEADS


def lead_set_order(leads: Sequence[str]) -> tuple[int, List[int]]:
    """Sort key of lead sets: the most leads first, then by canonical slots."""
    return (-len(leads), [CANONICAL_LEADS.index(lead) for lead in leads])


def row_method(result: Mapping[str, Any]) -> str:
    """A run's method in the tables: its strategy, or its family's random init (``random_init_w2v``)."""
    return random_init_stem(encoder_of(result)) if result["strategy"] == RANDOM_INIT else result["strategy"]


def is_random_init(method: str) -> bool:
    return method in {random_init_stem(encoder) for encoder in FAMILY_PREFIX}


def variant(result: Mapping[str, Any]) -> str:
    """``simclr`` or ``simclr+rlm``: a method in one lead-masking column."""
    return row_method(result) + ("+rlm" if masked(result) else "")


def mean_std(values: Sequence[float]) -> Dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) of the finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    array = np.asarray(finite, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0, "n": len(finite)}


def _read_predictions(result: Mapping[str, Any]) -> Optional[Predictions]:
    path = result.get("predictions")
    return Predictions.read(path) if path and Path(path).is_file() else None


def _interval(scored: Sequence[Mapping[str, Any]]) -> Optional[List[float]]:
    """95 % interval of the mean test AUROC: over seeds, or the single run's bootstrap interval
    (None without runs, or for one run without its predictions)."""
    if len(scored) > 1:
        return mean_interval([r["metrics"].get("macro_auroc") for r in scored])
    pred = _read_predictions(scored[0]) if scored else None
    return percentile_interval(bootstrap_auroc(pred)) if pred is not None else None


def _paired(runs: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """Paired difference of ``runs`` minus ``reference`` over their common seeds; runs of one seed
    that scored different test records stop the report in one line naming them."""
    by_seed = {r["seed"]: r for r in reference}
    pairs = {}
    for run in runs:
        other = by_seed.get(run["seed"])
        mine, theirs = _read_predictions(run), _read_predictions(other) if other else None
        if mine is not None and theirs is not None:
            try:
                mine.aligned_with(theirs)
            except DifferentTestRecordsError as exc:
                raise BenchmarkError(f"runs {run['run_id']} and {other['run_id']}: {exc}") from None
            pairs[run["seed"]] = (mine, theirs)
    return paired_difference(pairs) if pairs else None


def summary_rows(results: Sequence[Dict[str, Any]], task: str, methods: Methods = None) -> List[Dict[str, Any]]:
    """One row per (method, lead masking, protocol, lead set) over seeds, from the downstream runs
    with all training labels, with the metrics of the downstream ``task``.

    ``methods`` (name -> ``table_name``, ``paper_auroc``) describes the pretraining methods; a
    method that was not applicable to the data gets a row with ``status`` and ``reason`` and no
    metrics. The paper's AUROC is filled in for ``rhythm4`` on 12 leads only (what it measured).
    Order: linear probes and the supervised baseline (Table 1), then full fine-tunes; within a
    method, 12 leads first. ``results`` may hold the pretraining runs too: their schedules fill
    the rows' ``pretrain_schedule``.
    """
    by_id = {r["run_id"]: r for r in results if "run_id" in r}
    Key = tuple[str, bool, str, tuple[str, ...]]
    groups: Dict[Key, List[Dict[str, Any]]] = {}
    extra: Dict[Key, List[Dict[str, Any]]] = {}
    for result in results:
        key = (row_method(result), masked(result), result.get("protocol"), lead_set_of(result))
        if result.get("protocol") not in TABLE_PROTOCOLS or result.get("label_fraction", 1.0) != 1.0:
            if result.get("metrics") is not None and result.get("protocol") in {c[0] for c in EXTRA_COLUMNS}:
                extra.setdefault(key, []).append(result)
            continue
        if result.get("metrics") is None and result.get("status") != "not_applicable":
            continue
        groups.setdefault(key, []).append(result)
    catalogue = _catalogue(methods)

    def section(key: Key) -> tuple:
        method, rlm, protocol, leads = key
        first = 0 if protocol == "linear_probe" or method == "supervised" else 1
        return (first, _order(method, methods), lead_set_order(leads), rlm)

    def scored_runs(method: str, rlm: bool, protocol: str, leads: tuple[str, ...]) -> List[Dict[str, Any]]:
        return [r for r in groups.get((method, rlm, protocol, leads), []) if r.get("metrics") is not None]

    rows = []
    for (method, rlm, protocol, leads), runs in sorted(groups.items(), key=lambda item: section(item[0])):
        uses_labels = any(r["uses_labels"] for r in runs)
        scored = [r for r in runs if r.get("metrics") is not None]
        pretrain = by_id.get(((runs[0].get("pretrain") or {}).get("run_id")) or "", {})
        row: Dict[str, Any] = {
            "method": method,
            "strategy": runs[0]["strategy"],
            "encoder": encoder_of(runs[0]),
            "schedule": runs[0].get("schedule"),
            "pretrain_schedule": pretrain.get("schedule"),
            "name": display_name(method, uses_labels, methods),
            "protocol": protocol,
            "kind": runs[0]["kind"],
            "uses_labels": uses_labels,
            "lead_mask_prob": runs[0].get("lead_mask_prob"),
            "lead_set": list(leads),
            "seeds": sorted(r["seed"] for r in runs),
            "status": "ok" if scored else "not_applicable",
            "wall_time_s": mean_std([r.get("total_wall_time_s", r["wall_time_s"]) for r in scored]),
            "paper_auroc": None,
        }
        if not scored:
            row["reason"] = runs[0]["reason"]
        for metric in task_metrics(task):
            row[metric] = mean_std([r["metrics"].get(metric) for r in scored])
        row["ci95"] = _interval(scored)
        paper = catalogue.get(method, {}).get("paper_auroc") if task == RHYTHM4 else None
        if paper and not rlm and leads == CANONICAL_LEADS and (protocol == "linear_probe" or method == "supervised"):
            row["paper_auroc"] = {"mean": paper[0] / 100, "std": paper[1] / 100}
        if protocol == "linear_probe":
            for other, metric, column in EXTRA_COLUMNS:
                runs_of_task = extra.get((method, rlm, other, leads), [])
                if runs_of_task:
                    row[column] = mean_std([r["metrics"].get(metric) for r in runs_of_task])
        if protocol == "linear_probe" and scored:
            own_random_init = random_init_stem(row["encoder"])
            if method != own_random_init:
                row["vs_random_init"] = _paired(scored, scored_runs(own_random_init, False, protocol, leads))
            simclr = scored_runs("simclr", rlm, protocol, leads)
            if method != "simclr" and simclr and all(encoder_of(r) == row["encoder"] for r in simclr):
                row["vs_simclr"] = _paired(scored, simclr)
        twelve = scored_runs(method, rlm, protocol, CANONICAL_LEADS)
        if scored and leads != CANONICAL_LEADS and twelve:
            row["drop_from_12"] = _paired(twelve, scored)
        unmasked = scored_runs(method, False, protocol, leads)
        if scored and rlm and unmasked:
            row["vs_no_rlm"] = _paired(scored, unmasked)
        rows.append(row)
    return rows


def label_efficiency(
    results: Sequence[Dict[str, Any]], methods: Methods = None
) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """variant (``simclr``, ``simclr+rlm``) -> fraction (as text) -> macro AUROC over seeds (mean,
    std, n, and ``ci95``, the interval Table 1 gives), for the 12-lead linear-probe runs.

    At each fraction, the same paired differences as Table 1's, on probes given the same labels:
    ``vs_random_init`` (the family's random init; not for a random init), ``vs_simclr`` (SimCLR in
    the same column, same encoder) and, for an RLM variant, ``vs_no_rlm``.
    """
    groups: Dict[str, Dict[float, List[Dict[str, Any]]]] = {}
    for result in results:
        if result.get("metrics") is None or result.get("protocol") != "linear_probe" or not twelve_leads(result):
            continue
        groups.setdefault(variant(result), {}).setdefault(result["label_fraction"], []).append(result)

    def point(name: str, fraction: float, runs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        entry = {**mean_std([r["metrics"].get("macro_auroc") for r in runs]), "ci95": _interval(runs)}
        method, rlm = name.split("+")[0], name.endswith("+rlm")
        references = {
            "vs_random_init": None if is_random_init(method) else random_init_stem(encoder_of(runs[0])),
            "vs_simclr": None if method == "simclr" or is_random_init(method) else "simclr" + ("+rlm" if rlm else ""),
            "vs_no_rlm": method if rlm else None,
        }
        for key, reference in references.items():
            other = groups.get(reference, {}).get(fraction, []) if reference else []
            if key == "vs_simclr" and any(encoder_of(r) != encoder_of(runs[0]) for r in other):
                continue
            if other:
                entry[key] = _paired(runs, other)
        return entry

    return {
        name: {f"{fraction:g}": point(name, fraction, runs) for fraction, runs in sorted(by_fraction.items())}
        for name, by_fraction in sorted(
            groups.items(), key=lambda item: (_order(item[0].split("+")[0], methods), item[0])
        )
    }


def _pct(stat: Optional[Dict[str, Any]], digits: int = 1) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    text = f"{100 * stat['mean']:.{digits}f}"
    if stat.get("n", 2) > 1:
        text += f" ± {100 * stat['std']:.{digits}f}"
    return text


def _cell(row: Optional[Mapping[str, Any]]) -> str:
    if row is None:
        return "—"
    if row["status"] != "ok":
        return "n/a"
    text = _pct(row["macro_auroc"])
    if row.get("ci95"):
        low, high = row["ci95"]
        text += f" [{100 * low:.1f}, {100 * high:.1f}]"
    return text


def _difference(compared: Optional[Mapping[str, Any]]) -> str:
    if not compared or compared.get("ci95") is None or compared.get("difference") is None:
        return "—"
    low, high = compared["ci95"]
    mark = " *" if compared["excludes_zero"] else ""
    one_seed = " (1 seed)" if compared.get("interval") == RECORDS_ONE_SEED else ""
    return f"{100 * compared['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{mark}{one_seed}"


def _schedule_text(facts: Mapping[str, Any]) -> str:
    return (
        f"`{facts['schedule']}` ({facts['max_epoch']} epochs, lr {facts['lr']:g}, batch {facts['batch_size']}, "
        f"crops of {facts['sample_size']} samples)"
    )


def _settings_line(settings: Dict[str, Any]) -> str:
    schedules = settings["schedules"]
    line = (
        f"Data: `{settings['data']}`; seeds: {settings['seeds']}"
        f"{' (each its own patient-wise split)' if settings.get('split_seeds') else ' (one split)'}; "
        f"hydra preset `{settings['hydra_preset']}`; schedules: pretraining "
        f"{_schedule_text(schedules['pretraining'])}, linear probe {_schedule_text(schedules['linear_probe'])}, "
        f"supervised/fine-tune {_schedule_text(schedules['finetune'])}"
    )
    if settings.get("crop_per_view"):
        line += "; a strategy that cuts its crop into time segments pretrains on crops that many times longer"
    invocations = settings.get("invocations", [])
    wall = sum(i["wall_time_s"] for i in invocations)
    return line + (
        f". Wall time {wall / 60:.1f} min ({len(invocations)} invocation(s), {settings['jobs']} runs at a time)."
    )


def _protocol(row: Mapping[str, Any]) -> str:
    if row["method"] == "supervised":
        return "trained from scratch"
    return {"linear_probe": "linear probe", "finetune": "fine-tune"}.get(row["protocol"], row["protocol"])


def _masking(row: Mapping[str, Any]) -> str:
    """The lead-masking column of a row, as the tables name it."""
    return "RLM" if masked(row) else "none"


def markdown(
    rows: Sequence[Dict[str, Any]],
    efficiency: Dict[str, Dict[str, Dict[str, Any]]],
    settings: Dict[str, Any],
    failed: Dict[str, str],
) -> str:
    """``results.md``: Table 1 (the 12-lead rows), the paired differences, the other downstream
    tasks and test metrics, the label efficiency, the lead sets and the runs that did not finish."""
    table = [row for row in rows if twelve_leads(row)]
    lines = [
        f"# Good Views benchmark ({settings['name']} preset)",
        "",
        f"Downstream task {describe_task(settings['task'])} ({settings['task_chosen_by']}).",
        "",
        _settings_line(settings),
        "",
        *_table1_lines(table, settings["task"]),
        *_schedule_lines(table),
        *_paired_lines(table),
        *_other_task_lines(rows, settings),
        *_other_metric_lines(table, settings["task"]),
        *_label_efficiency_lines(table, efficiency),
        *_lead_set_lines(rows),
    ]
    if failed:
        lines += ["", "## Runs that did not finish", ""]
        lines += [f"- `{run_id}`: {why.splitlines()[0]}" for run_id, why in sorted(failed.items())]
    return "\n".join(lines) + "\n"


def _table1_lines(rows: Sequence[Dict[str, Any]], task: str) -> List[str]:
    """Table 1 on ``task`` (one line per method and protocol, the two lead-masking columns side by
    side, and the paper's figure on its own task) and its notes."""
    paper = task == RHYTHM4
    lines = [
        f"## Table 1: test macro AUROC (%), task `{task}`",
        "",
        f"Mean ± std over seeds [{INTERVAL}].",
        "",
        "| Method | Encoder | Protocol | Seeds | No lead masking (paper's protocol) | With random lead masking |"
        + (" Paper |" if paper else ""),
        "| --- | --- | --- | --- | --- | --- |" + (" --- |" if paper else ""),
    ]
    by_key = {(row["method"], masked(row), row["protocol"]): row for row in rows}
    not_applicable: List[Mapping[str, Any]] = []
    for method, _, protocol in dict.fromkeys((m, False, p) for m, _, p in by_key):
        plain, rlm = by_key.get((method, False, protocol)), by_key.get((method, True, protocol))
        first = plain or rlm
        name = first["name"]
        if first["status"] != "ok":
            not_applicable.append(first)
            name += f" [{len(not_applicable)}]"
        if method in BASELINES and rlm is None:
            rlm_cell = "—"
        else:
            rlm_cell = _cell(rlm)
        encoder = ENCODER_NAMES.get(first["encoder"], first["encoder"])
        line = f"| {name} | {encoder} | {_protocol(first)} | {len(first['seeds'])} | {_cell(plain)} | {rlm_cell} |"
        if paper:
            line += f" {_pct(first['paper_auroc']) if first['paper_auroc'] else '—'} |"
        lines.append(line)
    lines.append("")
    lines += [f"- [{i}] n/a: not trained, {row['reason']}." for i, row in enumerate(not_applicable, 1)]
    if any(row["uses_labels"] for row in rows):
        lines.append(
            f"- {DAGGER} Its pretraining read the rhythm labels (positives share the rhythm label): not "
            + (
                "self-supervised, an upper reference (the paper's Strategy 4)."
                if paper
                else f"self-supervised; the rhythm labels are not the `{task}` labels the probes learn."
            )
        )
    lines.append(
        "- Random-init frozen: each encoder family's encoder, never trained, with the same standardised linear probe "
        "and schedule as that family's pretrained encoders (not in the paper); every method is compared with its "
        "own family's."
    )
    if paper:
        lines.append(
            "- Paper: Good Views Table 1 (ResNet-18, 50 epochs, real Chapman data, no lead masking): a reference "
            "measured on other data, not a result of this run."
        )
    else:
        lines.append(f"- The paper's Table 1 measured Chapman's `{RHYTHM4}` task, not `{task}`: no paper column.")
    return lines


def _schedule_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """The schedule every row ran, from its runs' composed configs (records per update are
    records per worker x workers x update_freq)."""
    lines = [
        "",
        "## Schedules (from each row's composed configs)",
        "",
        "| Method | Encoder | Lead masking | Protocol | Pretraining | Downstream |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row["status"] != "ok":
            continue
        lines.append(
            f"| {row['name']} | {ENCODER_NAMES.get(row['encoder'], row['encoder'])} | {_masking(row)} | "
            f"{_protocol(row)} | {schedule_text(row.get('pretrain_schedule'))} | {schedule_text(row.get('schedule'))} |"
        )
    return lines


def _paired_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Paired-bootstrap differences of every linear probe against the random-init encoder and SimCLR."""
    lines = [
        "",
        "## Paired differences (linear probe, test macro AUROC points)",
        "",
        "Mean of the per-seed differences [95 % interval: Student-t over the seeds' differences, which holds "
        "the training randomness, the split and the test records; (1 seed): the paired bootstrap of that seed's "
        "test records, conditional on the one pair of trained models]; * marks an interval that excludes 0. Each "
        "method is compared with its own encoder family's random init, and with SimCLR (same lead-masking column) "
        "only when it has SimCLR's encoder.",
        "",
        "| Method | Lead masking | vs random-init encoder | vs SimCLR |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        if row["protocol"] != "linear_probe" or row["status"] != "ok" or is_random_init(row["method"]):
            continue
        lines.append(
            f"| {row['name']} | {_masking(row)} | {_difference(row.get('vs_random_init'))} "
            f"| {_difference(row.get('vs_simclr'))} |"
        )
    return lines


def _other_task_lines(rows: Sequence[Dict[str, Any]], settings: Mapping[str, Any]) -> List[str]:
    """The multi-label probe and identification columns (:data:`EXTRA_COLUMNS`), if any row has them
    (with a lead-set column when they ran on several)."""
    with_tasks = [
        row
        for row in rows
        if row["protocol"] == "linear_probe" and any(column in row for _, _, column in EXTRA_COLUMNS)
    ]
    if not with_tasks:
        return []
    several = len({lead_set_of(row) for row in with_tasks}) > 1
    label_set = settings.get("ptbxl_label_set") or "PTB-XL"
    lines = [
        "",
        f"## The field's other downstream tasks (`{settings.get('ptbxl_data')}`, test split)",
        "",
        f"Linear probe on `{label_set}` (multi-label, standardised features): macro AUROC and sample-wise "
        "F-max (%); patient identification with the frozen encoder (first ECG of each test patient "
        "the gallery, the others probes; cosine on embeddings standardised with train statistics): "
        "top-1 accuracy and EER (%). Mean ± std over seeds.",
        "",
        f"| Method | Lead masking |{' Leads |' if several else ''} Macro AUROC | F-max | Identification top-1 | EER |",
        f"| --- | --- |{' --- |' if several else ''} --- | --- | --- | --- |",
    ]
    for row in with_tasks:
        cells = [_pct(row.get(column)) if column in row else "—" for _, _, column in EXTRA_COLUMNS]
        leads = f" {lead_set_label(row['lead_set'])} |" if several else ""
        lines.append(f"| {row['name']} | {_masking(row)} |{leads} " + " | ".join(cells) + " |")
    return lines


def _metric_cell(metric: str, stat: Optional[Dict[str, Any]]) -> str:
    """A metric over seeds: in %, but the challenge score on its own scale (at most 1)."""
    if metric != CHALLENGE_METRIC or not stat or stat.get("mean") is None:
        return _pct(stat)
    return f"{stat['mean']:.3f}" + (f" ± {stat['std']:.3f}" if stat.get("n", 2) > 1 else "")


def _other_metric_lines(rows: Sequence[Dict[str, Any]], task: str) -> List[str]:
    """The task's other metrics (:func:`~.downstream.task_metrics` after macro AUROC) of every scored row."""
    metrics = task_metrics(task)[1:]
    lines = [
        "",
        "## Other test metrics (%" + ("; the challenge score as is" if CHALLENGE_METRIC in metrics else "") + ")",
        "",
        "| Method | Lead masking | Protocol | " + " | ".join(METRIC_NAMES[m] for m in metrics) + " |",
        "| --- | --- | --- |" + " --- |" * len(metrics),
    ]
    for row in rows:
        if row["status"] == "ok":
            cells = [_metric_cell(metric, row[metric]) for metric in metrics]
            lines.append(f"| {row['name']} | {_masking(row)} | {_protocol(row)} | " + " | ".join(cells) + " |")
    return lines


def _label_efficiency_lines(
    rows: Sequence[Dict[str, Any]], efficiency: Dict[str, Dict[str, Dict[str, Any]]]
) -> List[str]:
    """The linear probes' macro AUROC per fraction of training labels, when there are several,
    then the paired differences at each fraction."""
    fractions = sorted({float(f) for by_fraction in efficiency.values() for f in by_fraction})
    if len(fractions) <= 1:
        return []
    header = "| Method | Lead masking | " + " | ".join(f"{100 * f:g}% labels" for f in fractions) + " |"
    rule = "| --- | --- |" + " --- |" * len(fractions)
    lines = [
        "",
        "## Label efficiency (linear probe macro AUROC, %)",
        "",
        "Mean ± std over seeds [95 % interval, as Table 1's].",
        "",
        header,
        rule,
    ]
    differences = [header.replace("| Method | Lead masking |", "| Method | Lead masking | against |"), rule + " --- |"]
    names = {row["method"]: row["name"] for row in rows}
    against = {"vs_random_init": "own random init", "vs_simclr": "SimCLR", "vs_no_rlm": "no RLM"}
    for name, by_fraction in efficiency.items():
        method = name.split("+")[0]
        label = f"{names.get(method, method)} | {'RLM' if name.endswith('+rlm') else 'none'}"
        points = [by_fraction.get(f"{f:g}") for f in fractions]
        cells = []
        for point in points:
            text = _pct(point)
            if point and point.get("ci95"):
                text += f" [{100 * point['ci95'][0]:.1f}, {100 * point['ci95'][1]:.1f}]"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for key, reference in against.items():
            if any(point and point.get(key) for point in points):
                compared = [_difference(point.get(key) if point else None) for point in points]
                differences.append(f"| {label} | {reference} | " + " | ".join(compared) + " |")
    if len(differences) > 2:
        lines += [
            "",
            "Paired differences at each fraction (points; seed-aware interval, * excludes 0):",
            "",
            *differences,
        ]
    return lines


def _scored_probe_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rows with a test macro AUROC of Table 1's protocols: linear probes and the supervised baseline."""
    return [
        r
        for r in rows
        if r["status"] == "ok"
        and r["macro_auroc"]["mean"] is not None
        and (r["protocol"] == "linear_probe" or r["method"] == "supervised")
    ]


def _lead_tick(leads: Sequence[str]) -> str:
    """A lead set on the plot's axis: its name, with its lead count where the name lacks one."""
    label = lead_set_label(leads)
    return label if label.endswith("leads") else f"{label}\n({len(leads)} lead{'s' if len(leads) > 1 else ''})"


def _lead_sets(rows: Sequence[Mapping[str, Any]]) -> List[tuple[str, ...]]:
    """The lead sets of ``rows``, the most leads first."""
    return sorted({lead_set_of(row) for row in rows}, key=lead_set_order)


def _lead_set_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """Per method and lead masking, the AUROC on each lead set and its paired drop from 12 leads;
    per method and lead set, RLM minus no RLM; per method, masking and lead set, the difference
    from its family's random init on those leads (only with several lead sets)."""
    shown = _scored_probe_rows(rows)
    sets = _lead_sets(shown)
    if len(sets) <= 1:
        return []
    by_key = {(r["method"], masked(r), lead_set_of(r)): r for r in shown}
    variants = list(dict.fromkeys((r["method"], masked(r)) for r in shown))  # in the rows' (table) order
    names = {r["method"]: r["name"] for r in shown}
    header = " | ".join(lead_set_label(leads) for leads in sets)
    fewer = sets[1:] if sets[0] == CANONICAL_LEADS else sets
    lines = [
        "",
        "## Lead sets: probes trained and tested on fewer leads (test macro AUROC, %)",
        "",
        "Every encoder's linear probe (and the supervised baseline, trained from scratch) trained and tested on "
        "each lead set, the other leads zero-filled in both (the zero-fill of random lead masking), all "
        f"training labels. Mean ± std over seeds [{INTERVAL}].",
        "",
        f"| Method | Lead masking | {header} |",
        "| --- | --- |" + " --- |" * len(sets),
    ]
    for method, rlm in variants:
        cells = [_cell(by_key.get((method, rlm, leads))) for leads in sets]
        lines.append(f"| {names[method]} | {'RLM' if rlm else 'none'} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Drop from 12 leads (points, 12-lead AUROC minus the lead set's; paired by seed, the interval of the paired "
        "differences above):",
        "",
        "| Method | Lead masking | " + " | ".join(lead_set_label(leads) for leads in fewer) + " |",
        "| --- | --- |" + " --- |" * len(fewer),
    ]
    for method, rlm in variants:
        cells = [_difference((by_key.get((method, rlm, leads)) or {}).get("drop_from_12")) for leads in fewer]
        lines.append(f"| {names[method]} | {'RLM' if rlm else 'none'} | " + " | ".join(cells) + " |")
    masked_methods = [method for method, rlm in variants if rlm and (method, False) in variants]
    if masked_methods:
        lines += [
            "",
            "Random lead masking minus none, per lead set (points, paired by seed; * excludes 0):",
            "",
            f"| Method | {header} |",
            "| --- |" + " --- |" * len(sets),
        ]
        for method in masked_methods:
            cells = [_difference((by_key.get((method, True, leads)) or {}).get("vs_no_rlm")) for leads in sets]
            lines.append(f"| {names[method]} | " + " | ".join(cells) + " |")
    against_random = [
        v for v in variants if any((by_key.get((*v, leads)) or {}).get("vs_random_init") for leads in sets)
    ]
    if against_random:
        lines += [
            "",
            "Each encoder minus its own family's random-init encoder on the same lead set (points, paired by seed; "
            "* excludes 0): below 0, pretraining made the encoder worse than none for those leads.",
            "",
            f"| Method | Lead masking | {header} |",
            "| --- | --- |" + " --- |" * len(sets),
        ]
        for method, rlm in against_random:
            cells = [_difference((by_key.get((method, rlm, leads)) or {}).get("vs_random_init")) for leads in sets]
            lines.append(f"| {names[method]} | {'RLM' if rlm else 'none'} | " + " | ".join(cells) + " |")
    return lines


def _pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only Agg backend, imported when the first plot is drawn (not at
    the top: matplotlib costs start-up time and, under fairseq's logging set-up, logs at import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _error_bar(mean: float, ci95: Optional[Sequence[float]]) -> tuple[float, float]:
    """(below, above) ``mean`` to the ends of its interval ``ci95``, in % (none without one; a
    bootstrap interval need not contain the full set's value: that side is drawn empty)."""
    if ci95 is None:
        return 0.0, 0.0
    return max(0.0, 100 * (mean - ci95[0])), max(0.0, 100 * (ci95[1] - mean))


def _errors(points: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """matplotlib's asymmetric error bars [2, n] of ``points`` (each with ``mean`` and ``ci95``)."""
    return np.array([_error_bar(p["mean"], p["ci95"]) for p in points]).reshape(-1, 2).T


def _data_name(settings: Mapping[str, Any]) -> str:
    return Path(str(settings["data"])).name


def auroc_figure(rows: Sequence[Dict[str, Any]], settings: Mapping[str, Any]):
    """This benchmark's linear probes (both lead-masking columns; each bar the mean test macro
    AUROC with Table 1's 95 % interval) and, in a panel apart, the paper's on its own task."""
    plt = _pyplot()

    table = [r for r in _scored_probe_rows(rows) if twelve_leads(r)]
    methods = list(dict.fromkeys(r["method"] for r in table))
    names = {r["method"]: r["name"] for r in table}
    reported = [(methods.index(r["method"]), r["paper_auroc"]) for r in table if r["paper_auroc"]]
    height = 0.5 * len(methods) + 2
    if reported:
        fig, (ours, paper) = plt.subplots(
            1, 2, figsize=(11, height), sharey=True, gridspec_kw={"width_ratios": [3, 1.2]}
        )
    else:
        fig, ours = plt.subplots(figsize=(8, height))
    for offset, rlm, color, label in (
        (-0.2, False, "#1f77b4", "no lead masking"),
        (0.2, True, "#ff7f0e", "random lead masking"),
    ):
        points = [(i, r) for i, m in enumerate(methods) for r in table if r["method"] == m and masked(r) == rlm]
        if points:
            ours.barh(
                [i + offset for i, _ in points],
                [100 * r["macro_auroc"]["mean"] for _, r in points],
                height=0.38,
                xerr=_errors([{"mean": r["macro_auroc"]["mean"], "ci95": r["ci95"]} for _, r in points]),
                color=color,
                capsize=2,
                label=label,
            )
    ours.set_yticks(np.arange(len(methods)), [names[m] for m in methods])
    ours.invert_yaxis()
    ours.set_xlabel(f"test macro AUROC (%): mean [{INTERVAL}]", fontsize=8)
    ours.set_title(
        f"This benchmark ({settings['name']} preset): {_data_name(settings)}, task {settings['task']}", fontsize=9
    )
    low = min([100 * min(r["macro_auroc"]["mean"], *(r["ci95"] or [])) for r in table] + [50.0])
    ours.set_xlim(max(0.0, low - 5), 100)
    if ours.get_legend_handles_labels()[0]:
        ours.legend(loc="lower right", fontsize=8)
    if reported:
        paper.errorbar(
            [100 * p["mean"] for _, p in reported],
            [i for i, _ in reported],
            xerr=[100 * p["std"] for _, p in reported],
            fmt="kD",
            markersize=5,
            capsize=3,
        )
        paper.set_xlim(75, 100)
        paper.set_xlabel("macro AUROC (%), mean ± std, 5 runs")
        paper.set_title("Paper's Table 1 (real Chapman,\nResNet-18, 50 epochs): not this data", fontsize=9)
    fig.tight_layout()
    return fig


def label_efficiency_figure(
    efficiency: Dict[str, Dict[str, Dict[str, Any]]], names: Dict[str, str], settings: Mapping[str, Any]
):
    """The linear probes' mean test macro AUROC per fraction of training labels, each point with
    Table 1's 95 % interval; the title explains only the line styles of variants that ran."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    fractions = sorted({float(f) for by_fraction in efficiency.values() for f in by_fraction})
    drawn = []
    for name, by_fraction in efficiency.items():
        points = sorted((float(f), s) for f, s in by_fraction.items() if s["mean"] is not None)
        if not points:
            continue
        drawn.append(name)
        ax.errorbar(
            [100 * f for f, _ in points],
            [100 * s["mean"] for _, s in points],
            yerr=_errors([s for _, s in points]),
            marker="o",
            capsize=3,
            linestyle=":" if name.endswith("+rlm") else "--" if is_random_init(name) else "-",
            label=names.get(name, name),
        )
    ax.set_xscale("log")
    ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}%" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("training labels used by the linear probe (%, stratified subset)")
    ax.set_ylabel(f"test macro AUROC (%): mean\n[{INTERVAL}]", fontsize=8)
    styles = [
        *(["dotted: with random lead masking"] if any(n.endswith("+rlm") for n in drawn) else []),
        *(["dashed: random-init encoders"] if any(is_random_init(n) for n in drawn) else []),
    ]
    ax.set_title(
        "; ".join(
            [
                f"Label efficiency on {_data_name(settings)}, task {settings['task']} ({settings['name']} preset)",
                *styles,
            ]
        ),
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def lead_set_figure(rows: Sequence[Dict[str, Any]], settings: Mapping[str, Any]):
    """Mean test macro AUROC against the lead set (the most leads left), one panel per pretraining
    method: its probes without and with random lead masking, each point with Table 1's 95 %
    interval, and in grey its family's random init and the supervised baseline on the same sets."""
    plt = _pyplot()

    shown = _scored_probe_rows(rows)
    sets = _lead_sets(shown)
    methods = [m for m in dict.fromkeys(r["method"] for r in shown) if m not in BASELINES]
    columns = min(3, max(1, len(methods)))
    panels = max(1, -(-len(methods) // columns))
    fig, axes = plt.subplots(panels, columns, figsize=(4.2 * columns, 3.4 * panels + 0.8), sharey=True, squeeze=False)
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)

    def line(ax, points: Sequence[Mapping[str, Any]], offset: float = 0.0, **style: Any) -> None:
        """One line of ``points`` (rows), shifted by ``offset`` so that overlapping bars stay apart."""
        points = sorted(points, key=lambda r: sets.index(lead_set_of(r)))
        if points:
            ax.errorbar(
                [sets.index(lead_set_of(r)) + offset for r in points],
                [100 * r["macro_auroc"]["mean"] for r in points],
                yerr=_errors([{"mean": r["macro_auroc"]["mean"], "ci95": r["ci95"]} for r in points]),
                capsize=3,
                **style,
            )

    for ax, method in zip(axes.flat, methods, strict=False):
        mine = [r for r in shown if r["method"] == method]
        own_init = random_init_stem(encoder_of(mine[0]))
        line(ax, [r for r in shown if r["method"] == own_init], color="0.6", linestyle="--", label="random init")
        line(ax, [r for r in shown if r["method"] == "supervised"], color="0.3", linestyle=":", label="supervised")
        line(ax, [r for r in mine if not masked(r)], -0.05, color="#1f77b4", marker="o", label="no lead masking")
        line(ax, [r for r in mine if masked(r)], 0.05, color="#ff7f0e", marker="s", label="random lead masking")
        ax.set_title(mine[0]["name"], fontsize=9)
        ax.set_xticks(range(len(sets)), [_lead_tick(leads) for leads in sets], fontsize=7)
        ax.grid(True, alpha=0.3)
    # an interval of few seeds can reach past the scale: the axis stops at 0 and 100
    low = min([100 * min(r["macro_auroc"]["mean"], *(r["ci95"] or [])) for r in shown] + [50.0])
    for ax in axes[:, 0]:
        ax.set_ylabel("test macro AUROC (%)", fontsize=8)
        ax.set_ylim(max(0.0, low - 5), 100)
    for ax in axes[-1, :]:
        ax.set_xlabel("leads of the probe's training and test", fontsize=8)
    if methods:
        axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"Probes trained and tested on each lead set (the others zero-filled): {_data_name(settings)}, task "
        f"{settings['task']} ({settings['name']} preset)\nmean [{INTERVAL}]",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path`` (atomically) and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _pyplot().close(fig)


def write_report(out: Path, plan, outcome, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Write the report files from every finished run of ``plan`` (:data:`LEAD_SET_PLOT` only with
    several lead sets); returns results.json's payload."""
    results = [outcome.results[spec.run_id] for spec in plan if spec.run_id in outcome.results]
    methods = settings.get("methods")
    downstream = [r for r in results if r.get("protocol") is not None]
    rows = summary_rows(results, settings["task"], methods)
    efficiency = label_efficiency(downstream, methods)
    payload = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "benchmark": settings,
        "runs": results,
        "table": rows,
        "label_efficiency": efficiency,
        "paper_auroc": {
            method: {"mean": info["paper_auroc"][0] / 100, "std": info["paper_auroc"][1] / 100}
            for method, info in _catalogue(methods).items()
            if info.get("paper_auroc") and settings["task"] == RHYTHM4
        },
        "failed": outcome.failed,
    }
    with atomic_open(out / "results.json") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, allow_nan=False)
    with atomic_open(out / "results.md") as handle:
        handle.write(markdown(rows, efficiency, settings, outcome.failed))
    save_figure(auroc_figure(rows, settings), out / "auroc.png")
    names = {}
    for name in efficiency:
        method = name.split("+")[0]
        uses = any(r["uses_labels"] for r in rows if r["method"] == method)
        names[name] = display_name(method, uses, methods) + (" + RLM" if name.endswith("+rlm") else "")
    save_figure(label_efficiency_figure(efficiency, names, settings), out / "label_efficiency.png")
    if len({lead_set_of(row) for row in rows}) > 1:
        save_figure(lead_set_figure(rows, settings), out / LEAD_SET_PLOT)
    return payload
