"""The benchmark's downstream tasks: which labels its probes and baselines learn, and how they are scored.

A task is a label set of :mod:`fairseq_goodviews.labels.label_set` under a benchmark name:

- ``rhythm4``: Chapman's four merged rhythm classes of the ``label`` column (single-label; the
  paper's Table 1 task);
- ``cinc2021``: the 26 scored PhysioNet/CinC 2021 classes of the SNOMED CT codes of the ``dx``
  column (multi-label, also scored with the CinC 2021 challenge score);
- ``ptbxl_<set>``: a PTB-XL statement task of the ``scp_codes`` column (multi-label), with PTB-XL's
  ``scp_statements.csv`` beside the data or in the folder it was prepared from.

Which task a prepared folder supports, and which it gets without ``--task``, is
:func:`fairseq_goodviews.table1.data.choose_task`.
"""

from __future__ import annotations

from typing import Dict, List

from fairseq_goodviews.labels.label_set import CINC2021_LABEL_SET, PTBXL_PREFIX, RHYTHM_LABEL_SET
from fairseq_goodviews.labels.ptbxl import PTBXL_TASKS

RHYTHM4 = "rhythm4"
PTBXL_DEFAULT = f"{PTBXL_PREFIX}superdiagnostic"
#: Every task, in the order a folder without a known preparer is matched against them.
TASKS: tuple[str, ...] = (CINC2021_LABEL_SET, *(f"{PTBXL_PREFIX}{task}" for task in PTBXL_TASKS), RHYTHM4)
#: The task of the data each preparer writes (``prepare_report.json``'s ``source``).
PREPARER_TASKS: Dict[str, str] = {
    "chapman": RHYTHM4,
    "physionet2021": CINC2021_LABEL_SET,
    "wfdb_dir": CINC2021_LABEL_SET,
    "ptbxl": PTBXL_DEFAULT,
}
#: The metrics of the report, the headline (macro AUROC) first: those the task's evaluation gives.
SINGLE_LABEL_METRICS = ("macro_auroc", "accuracy", "macro_f1", "macro_auprc")
MULTI_LABEL_METRICS = ("macro_auroc", "macro_auprc", "f_max")
CHALLENGE_METRIC = "challenge_score"


def label_set_name(task: str) -> str:
    """The label set a task trains on (``rhythm4`` is the ``rhythm`` set with its four classes)."""
    return RHYTHM_LABEL_SET if task == RHYTHM4 else task


def is_multi_label(task: str) -> bool:
    return task != RHYTHM4


def task_overrides(task: str) -> List[str]:
    """The classification task's overrides of ``task`` (``rhythm4`` is the configs' own)."""
    return ["task.label_type=multi", f"task.label_set={task}"] if is_multi_label(task) else []


def task_metrics(task: str) -> tuple[str, ...]:
    """The metrics a downstream run of ``task`` is reported with, macro AUROC first."""
    if not is_multi_label(task):
        return SINGLE_LABEL_METRICS
    return MULTI_LABEL_METRICS + ((CHALLENGE_METRIC,) if task == CINC2021_LABEL_SET else ())


def describe_task(task: str) -> str:
    """One phrase for the report: the task, its labels and its metrics."""
    if task == RHYTHM4:
        what = "Chapman's four merged rhythm classes (`label` column), single-label"
    elif task == CINC2021_LABEL_SET:
        what = "the 26 scored PhysioNet/CinC 2021 classes (SNOMED CT codes of the `dx` column), multi-label"
    else:
        what = f"the PTB-XL `{task.removeprefix(PTBXL_PREFIX)}` statements (`scp_codes` column), multi-label"
    scored = (
        "macro AUROC and the CinC 2021 challenge score" if CHALLENGE_METRIC in task_metrics(task) else "macro AUROC"
    )
    return f"`{task}`: {what}; headline metric {scored}"
