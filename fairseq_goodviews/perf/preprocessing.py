"""Preprocessing throughput: records/second of every preparer beside the cost of parsing alone.

For each preparer (chapman, physionet2021, ptbxl, wfdb_dir, mimic_iv_ecg) the benchmark writes
synthetic fixture data of that layout into a temporary folder, times reading every record into
arrays alone (Chapman: the CSV parser the preparer uses; WFDB: ``wfdb.rdrecord`` in physical
units, the library's reader, which parses the header and reads the signal files), then a full
preparation with 1 and with 2 worker processes (fresh output each time), and for the WFDB
preparers also 1 worker without the automatic wave attributes, whose difference to 1 worker with
them is the attributes' own cost per record; ``--repeats`` rounds of all of them, interleaved,
and the median of each. The figures are reported side by side as ratios (preparation time /
parsing time; 2-worker speed-up) with the attributes' milliseconds per record, and as CPU
milliseconds per record (this process and its worker processes): on a machine other jobs load,
the wall-clock ratios move with the load, the CPU figures much less.

    goodviews-perf preprocessing --out DIR [--records 60] [--repeats 3]
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import wfdb

from fairseq_goodviews.preprocessing import chapman, mimic_iv_ecg, physionet2021, ptbxl, wfdb_dir
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.wave_attributes import load_backend
from fairseq_goodviews.synthetic.chapman import SIGNAL_DIR, generate_chapman
from fairseq_goodviews.synthetic.mimic_iv_ecg import generate_mimic_iv_ecg
from fairseq_goodviews.synthetic.wfdb_layouts import (
    write_physionet2021_tree,
    write_ptbxl_tree,
    write_wfdb_dir_tree,
)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes (user and system; getrusage's
    microseconds, not the clock ticks of ``os.times``)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(function: Callable[[], Any]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of ``function()``, workers' CPU included."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    with contextlib.redirect_stdout(io.StringIO()):
        function()
    return time.perf_counter() - start, _cpu_seconds() - cpu


def _parse_wfdb(headers: Sequence[Path]) -> None:

    for header in headers:
        wfdb.rdrecord(str(header.with_suffix("")))


def _fixtures(root: Path, records: int, seed: int) -> Dict[str, Dict[str, Any]]:
    """Synthetic data of each layout; per preparer: source folder, parse-only function, preparer."""

    table = generate_chapman(root / "chapman", records, seed=seed, workers=2)
    csvs = [root / "chapman" / SIGNAL_DIR / f"{name}.csv" for name in table["FileName"]]
    subsets = ("georgia", "cpsc_2018", "ptb-xl")
    physionet = write_physionet2021_tree(
        root / "physionet2021", n_per_subset=max(1, records // len(subsets)), subsets=subsets, seed=seed
    )
    ptbxl_csv = write_ptbxl_tree(root / "ptbxl", n_records=records, seed=seed)
    ptbxl_headers = sorted((root / "ptbxl").rglob("*.hea"))
    generic = write_wfdb_dir_tree(root / "wfdb_dir", n_records=records, seed=seed)
    # Two studies per subject on average: as many records as the other layouts.
    mimic = generate_mimic_iv_ecg(root / "mimic_iv_ecg", max(1, records // 2), seed=seed)
    mimic_headers = [root / "mimic_iv_ecg" / f"{path}.hea" for path in mimic["path"]]
    return {
        "chapman": {
            "src": root / "chapman",
            "n": len(csvs),
            "parse": lambda: [chapman.read_chapman_csv(p) for p in csvs],
            "prepare": lambda out, options, attributes: chapman.prepare_chapman(root / "chapman", out, options=options),
        },
        "physionet2021": {
            "src": root / "physionet2021",
            "n": len(physionet),
            "parse": lambda: _parse_wfdb(physionet),
            "prepare": lambda out, options, attributes: physionet2021.prepare_physionet2021(
                root / "physionet2021", out, options=options, converter=wfdb_dir.WfdbConverter(attributes=attributes)
            ),
        },
        "ptbxl": {
            "src": ptbxl_csv.parent,
            "n": len(ptbxl_headers),
            "parse": lambda: _parse_wfdb(ptbxl_headers),
            "prepare": lambda out, options, attributes: ptbxl.prepare_ptbxl(
                root / "ptbxl", out, options=options, converter=wfdb_dir.WfdbConverter(attributes=attributes)
            ),
        },
        "wfdb_dir": {
            "src": root / "wfdb_dir",
            "n": len(generic),
            "parse": lambda: _parse_wfdb(generic),
            "prepare": lambda out, options, attributes: wfdb_dir.prepare_wfdb_dir(
                root / "wfdb_dir", out, options=options, converter=wfdb_dir.WfdbConverter(attributes=attributes)
            ),
        },
        "mimic_iv_ecg": {
            "src": root / "mimic_iv_ecg",
            "n": len(mimic_headers),
            "parse": lambda: _parse_wfdb(mimic_headers),
            "prepare": lambda out, options, attributes: mimic_iv_ecg.prepare_mimic_iv_ecg(
                root / "mimic_iv_ecg",
                out,
                options=options,
                converter=mimic_iv_ecg.MimicConverter(attributes=attributes),
            ),
        },
    }


def run(*, records: int, seed: int, repeats: int, work_dir: Optional[str | Path] = None) -> Dict[str, Any]:
    """Run every measurement ``repeats`` times, interleaved; returns the JSON-ready result (medians)."""

    load_backend()  # imported once here, so no timing below includes it
    results: Dict[str, Any] = {
        "records_requested": records,
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "preparers": {},
    }
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        root = Path(tmp)
        fixtures = _fixtures(root / "data", records, seed)
        for name, fixture in fixtures.items():
            n = fixture["n"]
            fixture["parse"]()  # warm the page cache so every run reads from memory
            variants = [("1 worker", 1, True), ("2 workers", 2, True)]
            if name != "chapman":
                variants.append(("1 worker, no attributes", 1, False))
            times: Dict[str, List[tuple[float, float]]] = {"parse": [], **{label: [] for label, _, _ in variants}}
            for round_ in range(repeats):  # interleaved, so a change of the machine's load hits every variant
                times["parse"].append(_timed(fixture["parse"]))
                for label, workers, attributes in variants:
                    out = root / "out" / f"{name}-{workers}-{attributes}-{round_}"
                    options = PrepareOptions(workers=workers, progress=False)
                    times[label].append(
                        _timed(
                            lambda fixture=fixture, out=out, options=options, attributes=attributes: fixture["prepare"](
                                out, options, attributes
                            )
                        )
                    )
            parse = statistics.median(wall for wall, _ in times["parse"])
            runs = {label: statistics.median(wall for wall, _ in times[label]) for label, _, _ in variants}
            cpu = {label: statistics.median(c for _, c in measured) for label, measured in times.items()}
            results["preparers"][name] = {
                "records": n,
                "parse_only_records_per_s": n / parse,
                **{f"{label} records_per_s": n / seconds for label, seconds in runs.items()},
                **{f"{label} / parse time": seconds / parse for label, seconds in runs.items()},
                "2-worker speed-up": runs["1 worker"] / runs["2 workers"],
                **{f"{label} cpu_ms_per_record": 1000 * seconds / n for label, seconds in cpu.items()},
            }
            if "1 worker, no attributes" in runs:
                attributes_ms = 1000 * (runs["1 worker"] - runs["1 worker, no attributes"]) / n
                results["preparers"][name]["attributes ms_per_record"] = attributes_ms
    return results


def format_result(results: Dict[str, Any]) -> str:
    """Per preparer: records/s of parsing alone and of each preparation, with time ratios, the
    2-worker speed-up and the wave attributes' own cost (ms per record, 1 worker)."""
    lines = [f"preprocessing benchmark ({results['cpus']} CPUs; records/s, and time relative to parsing alone)"]
    header = (
        f"{'preparer':<14}{'n':>5}{'parse':>9}{'1 worker':>10}{'ratio':>7}{'2 workers':>11}{'ratio':>7}"
        f"{'speed-up':>10}{'no attr':>9}{'ratio':>7}{'attr ms':>9}"
    )
    lines.append(header)
    for name, row in results["preparers"].items():
        no_attr = row.get("1 worker, no attributes records_per_s")
        no_attr_text = (
            f"{no_attr:>9.1f}{row['1 worker, no attributes / parse time']:>7.2f}{row['attributes ms_per_record']:>9.1f}"
            if no_attr is not None
            else f"{'-':>9}{'-':>7}{'-':>9}"
        )
        lines.append(
            f"{name:<14}{row['records']:>5}{row['parse_only_records_per_s']:>9.1f}"
            f"{row['1 worker records_per_s']:>10.1f}{row['1 worker / parse time']:>7.2f}"
            f"{row['2 workers records_per_s']:>11.1f}{row['2 workers / parse time']:>7.2f}"
            f"{row['2-worker speed-up']:>10.2f}{no_attr_text}"
        )
    lines.append("CPU ms per record (this process and its workers; load-independent, unlike the times above)")
    lines.append(f"{'preparer':<14}{'parse':>9}{'1 worker':>10}{'ratio':>7}{'no attr':>9}{'ratio':>7}")
    for name, row in results["preparers"].items():
        parse = row["parse cpu_ms_per_record"]
        one = row["1 worker cpu_ms_per_record"]
        no_attr = row.get("1 worker, no attributes cpu_ms_per_record")
        no_attr_text = f"{no_attr:>9.1f}{no_attr / parse:>7.2f}" if no_attr is not None else f"{'-':>9}{'-':>7}"
        lines.append(f"{name:<14}{parse:>9.2f}{one:>10.1f}{one / parse:>7.2f}{no_attr_text}")
    return "\n".join(lines)
