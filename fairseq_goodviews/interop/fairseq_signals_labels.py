"""The labels of an imported fairseq-signals folder: the class names file (``--label-names``),
the one label form and class list of the folder's records, and the overrides that probe it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fairseq_goodviews.preprocessing.items import PrepareError

_BAD_NAME = re.compile(r"[\s,]")


def read_label_names(path: str | Path) -> list[str]:
    """Class names, one per line in label order (blank lines ignored); :class:`PrepareError`
    naming the file and line for a name that cannot be a class name of ours."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise PrepareError(f"{path}: label names file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError(f"{path}: cannot read the label names ({type(exc).__name__}: {exc})") from None
    names = [(f"{path}:{number}", line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if not names:
        raise PrepareError(f"{path}: no class names in the file")
    return check_class_names(names)


def check_class_names(names: Sequence[tuple[str, str]]) -> list[str]:
    """The names of ``(where, name)`` pairs in order; :class:`PrepareError` naming the place of a
    name that cannot be a class name of ours (a space or comma) or that is listed twice."""
    checked: list[str] = []
    for where, name in names:
        if _BAD_NAME.search(name):
            raise PrepareError(
                f"{where}: class name {name!r} has a space or comma (the labels column is "
                "space-separated and task.classes comma-separated)"
            )
        if name in checked:
            raise PrepareError(f"{where}: class name {name!r} is listed twice")
        checked.append(name)
    return checked


@dataclass
class Labels:
    """The label form of a folder's records and its class names in label order."""

    kind: str  # "index", "multi_hot", "name" or "none"
    classes: list[str]


def decide_labels(results: Sequence[dict], files: Sequence[str], names: list[str] | None) -> Labels:
    """One label form and class list for the folder; :class:`PrepareError` when the files disagree."""
    first: dict[str, str] = {}
    sizes: dict[int, str] = {}
    largest = -1
    file_classes = set()
    named: set[str] = set()
    for result, file in zip(results, files, strict=True):
        label = result.get("label")
        if "row" not in result or label is None:
            continue
        kind = next(iter(label))
        first.setdefault(kind, file)
        if kind == "multi_hot":
            sizes.setdefault(label["size"], file)
            file_classes.add(result["classes"])
        elif kind == "index":
            largest = max(largest, label["index"])
        elif label["name"]:
            named.add(label["name"])
    if len(first) > 1:
        described = {"index": "a class index", "multi_hot": "a multi-hot vector", "name": "a class name"}
        (a, file_a), (b, file_b) = sorted(first.items())[:2]
        raise PrepareError(
            f"{file_a} holds {described[a]} as 'label' and {file_b} {described[b]}: a folder must use one form"
        )
    kind = next(iter(first), "none")
    if kind == "index" and names is not None and len(names) == 1 and largest <= 1:
        return Labels("binary", names)  # 0/1: a single class absent or present
    if kind == "multi_hot":
        if len(sizes) > 1:
            (k1, f1), (k2, f2) = sorted(sizes.items())[:2]
            raise PrepareError(f"the label vectors have {k1} positions in {f1} and {k2} in {f2}")
        size = next(iter(sizes))
        if names is not None and len(names) != size:
            raise PrepareError(
                f"--label-names lists {len(names)} classes, the label vectors of {first['multi_hot']} {size}"
            )
        if names is None and len(file_classes) == 1 and None not in file_classes:
            listed = next(iter(file_classes)).split(",")
            names = listed if len(listed) == size else None
        return Labels("multi_hot", names or [f"class_{i}" for i in range(size)])
    if kind == "index":
        return Labels("index", names or [f"class_{i}" for i in range(largest + 1)])
    return Labels(kind, names or sorted(named))


def probe_overrides(table: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """The hydra overrides that probe the converted folder: a multi-label task when a record has
    several classes, else the ``label`` column; empty without labels."""
    if not classes or not table["labels"].astype(bool).any():
        return []
    # Quoted: hydra reads an unquoted comma-separated value as a sweep.
    overrides = [f"task.classes='{','.join(classes)}'"]
    if table["labels"].str.split().str.len().max() > 1:
        overrides = ["task.label_type=multi", "task.label_set=labels", *overrides]
    return overrides
