#!/usr/bin/env python
"""Demo (``make demo``): which view makes a good positive pair, on synthetic Chapman data, on a CPU.

``python examples/demo.py --out demo_output`` generates 800 synthetic Chapman records, prepares
them with the Chapman preparer, then for every pretraining strategy pretrains a small encoder and
trains a linear probe on it (on 12 leads, and trained and tested on leads I and II, and on lead II
alone), plus the random-initialised frozen-encoder baseline: the benchmark's ``demo`` preset
(:mod:`fairseq_goodviews.table1`), one seed. It prints one row per method and writes ``OUT/demo_results.json`` next to the benchmark's own report (``results.md``,
``results.json``, ``auroc.png``). A second run reuses the prepared data and the finished runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from fairseq_goodviews.io.atomic import write_json
from fairseq_goodviews.leads import lead_set_label
from fairseq_goodviews.table1.plan import PRESETS, BenchmarkError
from fairseq_goodviews.table1.report import DAGGER, twelve_leads
from fairseq_goodviews.table1.run import run_benchmark, setup_logging


def table_rows(table: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One demo row per method from the benchmark's summary rows (``results.json`` "table"): test
    macro AUROC of the 12-lead linear probe without and with random lead masking, the other tasks,
    and the probe trained and tested on each other lead set (``auroc <leads>``, ``auroc <leads> +RLM``)."""
    rows: Dict[str, Dict[str, Any]] = {}
    for row in table:
        if row["protocol"] != "linear_probe":
            continue
        entry = rows.setdefault(
            row["method"],
            {
                "method": row["method"],
                "name": row["name"],
                "uses_labels": row["uses_labels"],
                "status": row["status"],
                "reason": row.get("reason"),
                **dict.fromkeys(key for key, _ in COLUMNS),
            },
        )
        suffix = "_rlm" if row.get("lead_mask_prob") else ""
        if not twelve_leads(row):
            entry[f"auroc {lead_set_label(row['lead_set'])}{' +RLM' if suffix else ''}"] = row["macro_auroc"]["mean"]
            continue
        entry["auroc" + suffix] = row["macro_auroc"]["mean"]
        entry["ptbxl_auroc" + suffix] = (row.get("ptbxl_macro_auroc") or {}).get("mean")
        entry["top1" + suffix] = (row.get("identification_top1") or {}).get("mean")
    return list(rows.values())


COLUMNS = (
    ("auroc", "AUROC"),
    ("auroc_rlm", "+RLM"),
    ("ptbxl_auroc", "PTB-XL"),
    ("ptbxl_auroc_rlm", "+RLM"),
    ("top1", "ident."),
    ("top1_rlm", "+RLM"),
)


def columns(rows: Sequence[Dict[str, Any]]) -> List[tuple[str, str]]:
    """(key, title) of every column: :data:`COLUMNS`, then each other lead set's pair, in table order."""
    labels = dict.fromkeys(
        key.removeprefix("auroc ").removesuffix(" +RLM") for row in rows for key in row if key.startswith("auroc ")
    )
    return [*COLUMNS, *(c for label in labels for c in ((f"auroc {label}", label), (f"auroc {label} +RLM", "+RLM")))]


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    shown = columns(rows)
    widths = [max(7, len(title)) for _, title in shown]
    width = max([len(r["name"]) for r in rows] + [len("method")])
    header = "  ".join(f"{title:>{w}}" for (_, title), w in zip(shown, widths, strict=True))
    lines = [f"{'method':<{width}}  {header}", "-" * (width + 2 + len(header))]
    for row in rows:
        cells = [
            f"{100 * row[k]:{w}.1f}" if row.get(k) is not None else f"{'n/a' if row['status'] != 'ok' else '-':>{w}}"
            for (k, _), w in zip(shown, widths, strict=True)
        ]
        lines.append(f"{row['name']:<{width}}  {'  '.join(cells)}")
    if any(r["uses_labels"] for r in rows):
        lines.append(f"{DAGGER} pretraining read the downstream labels (rhythm): not self-supervised")
    lines += [f"n/a {row['name']}: not trained, {row['reason']}" for row in rows if row["status"] != "ok"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    parser.add_argument(
        "--records",
        type=int,
        help=f"synthetic records to generate (default: the demo preset's {PRESETS['demo'].synthetic_records})",
    )
    parser.add_argument("--jobs", type=int, help="runs at once (default: the demo preset's)")
    args = parser.parse_args(argv)
    setup_logging()
    out = Path(args.out)
    start = time.monotonic()
    try:
        outcome = run_benchmark(out, "demo", synthetic=args.records or 0, jobs=args.jobs)
    except BenchmarkError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("demo: interrupted; run it again to resume", file=sys.stderr)
        return 130
    wall = time.monotonic() - start
    rows = table_rows(json.loads((out / "results.json").read_text())["table"])
    print()
    print(
        "Linear probes on the test splits, %: Chapman rhythm classes (macro AUROC) and PTB-XL superdiagnostic "
        "(macro AUROC), without and with random lead masking (+RLM); frozen-encoder patient identification on "
        "the PTB-XL test patients (top-1); then the Chapman probe trained and tested on fewer leads (the others "
        "zero-filled)"
    )
    print(format_table(rows))
    print(f"\n{len(outcome.launched)} runs in {wall / 60:.1f} min; report: {out / 'results.md'}")
    write_json(
        out / "demo_results.json",
        {"rows": rows, "wall_time_s": wall, "runs_launched": outcome.launched, "failed": outcome.failed},
    )
    if outcome.failed:
        print(f"{len(outcome.failed)} runs failed; see {out / 'results.md'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
