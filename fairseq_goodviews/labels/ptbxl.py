"""The multi-label PTB-XL statement tasks of the PTB-XL benchmark (Strodthoff et al. 2021)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fairseq_goodviews.labels.base import LabelSetError

#: PTB-XL statement tasks, built from the dataset's ``scp_statements.csv``: every statement
#: (all), diagnostic statements, their ``diagnostic_subclass`` (subdiagnostic) or
#: ``diagnostic_class`` (superdiagnostic), form and rhythm statements. Every statement of a
#: record counts whatever its likelihood.
PTBXL_TASKS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
SCP_STATEMENTS = "scp_statements.csv"


def read_scp_statements(path: str | Path) -> pd.DataFrame:
    """PTB-XL's statement table indexed by SCP code; :class:`LabelSetError` naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise LabelSetError(f"{path}: PTB-XL statement table not found")
    try:
        table = pd.read_csv(path, index_col=0)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise LabelSetError(f"{path}: unreadable statement table ({exc})") from exc
    missing = [
        c for c in ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass") if c not in table.columns
    ]
    if missing:
        raise LabelSetError(f"{path}: missing column(s) {', '.join(missing)} (is this PTB-XL's {SCP_STATEMENTS}?)")
    table.index = table.index.astype(str).str.strip()
    return table


def ptbxl_task_map(statements: pd.DataFrame, task: str) -> dict[str, str]:
    """SCP code -> label of ``task`` (one of :data:`PTBXL_TASKS`) for the codes that task uses."""
    if task not in PTBXL_TASKS:
        raise LabelSetError(f"unknown PTB-XL task {task!r}; known: {', '.join(PTBXL_TASKS)}")
    if task == "all":
        return {code: code for code in statements.index}
    if task in ("form", "rhythm"):
        return {code: code for code in statements.index[statements[task] == 1]}
    diagnostic = statements[statements["diagnostic"] == 1]
    if task == "diagnostic":
        return {code: code for code in diagnostic.index}
    column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
    return {code: str(label) for code, label in diagnostic[column].items() if isinstance(label, str)}
