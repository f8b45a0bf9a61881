"""The report of finished runs, without training: no warnings on degenerate test sets, the task in
every file, and plots whose intervals and titles say what the table says and what ran."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from fairseq_goodviews.evaluation.evaluate import write_predictions
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.table1.execute import Outcome
from fairseq_goodviews.table1.plan import PROBE, RANDOM_INIT, BenchmarkError
from fairseq_goodviews.table1.report import (
    LEAD_SET_PLOT,
    auroc_figure,
    label_efficiency,
    label_efficiency_figure,
    lead_set_figure,
    summary_rows,
    write_report,
)
from fairseq_goodviews.table1.stats import (
    Predictions,
    bootstrap_auroc,
    macro_auroc,
    mean_interval,
    percentile_interval,
)

CLASSES = ["AFIB", "GSVT", "SB", "SR"]
#: (method, lead_mask_prob) of the lead-set results below.
REFERENCE_VARIANTS = (("simclr", 0.0), ("simclr", 0.5), ("random_init", 0.0))
FACTS = {"schedule": "tiny", "max_epoch": 1, "lr": 0.01, "batch_size": 16, "sample_size": 500}


def _settings(tmp_path: Path, task: str = "rhythm4", seeds: int = 1) -> dict:
    return {
        "name": "tiny",
        "task": task,
        "task_chosen_by": "--task",
        "data": str(tmp_path / "prepared"),
        "seeds": seeds,
        "split_seeds": True,
        "hydra_preset": "cpu_small",
        "jobs": 1,
        "schedules": {"pretraining": FACTS, "linear_probe": FACTS, "finetune": FACTS},
        "methods": {"simclr": {"table_name": "Strategy 2 (SimCLR)", "paper_auroc": [89.6, 0.6]}},
    }


def _run(tmp_path: Path, strategy: str, seed: int, targets: np.ndarray, signal: float, **fields) -> dict:
    """A finished linear probe with its test predictions on records r0..r{n-1} (``targets``: class
    indices [n]); the probabilities lean towards the target by ``signal``."""
    rng = np.random.default_rng(seed)
    probs = rng.random((len(targets), len(CLASSES))) + signal * np.eye(len(CLASSES))[targets]
    probs /= probs.sum(axis=1, keepdims=True)
    fraction = fields.get("label_fraction", 1.0)
    lead_mask_prob = fields.get("lead_mask_prob", 0.0)
    path = tmp_path / f"{strategy}-{lead_mask_prob}-s{seed}-f{fraction}.csv"
    write_predictions(path, [f"r{i}" for i in range(len(targets))], probs, targets, CLASSES)
    pred = Predictions.read(path)
    return {
        "run_id": f"{strategy}-{lead_mask_prob}-s{seed}-f{fraction}",
        "strategy": strategy,
        "protocol": "linear_probe",
        "kind": RANDOM_INIT if strategy == "random_init" else PROBE,
        "seed": seed,
        "label_fraction": fraction,
        "lead_mask_prob": lead_mask_prob,
        "uses_labels": False,
        "status": "ok",
        "wall_time_s": 1.0,
        "predictions": str(path),
        "metrics": {"macro_auroc": macro_auroc(pred.probs, pred.targets), "accuracy": 0.5, "macro_f1": 0.4},
    }


def _report(tmp_path: Path, results: list[dict], settings: dict) -> dict:
    plan = [SimpleNamespace(run_id=r["run_id"]) for r in results]
    outcome = Outcome(results={r["run_id"]: r for r in results}, failed={})
    return write_report(tmp_path, plan, outcome, settings)


def test_a_report_on_degenerate_test_sets_warns_nothing(tmp_path):
    # One AFIB record among SRs: a resample that misses it has no class with both kinds of record,
    # so its macro AUROC (and the paired difference of that replicate) is undefined.
    lone = np.array([0] + [3] * 11)
    results = [
        _run(tmp_path, "simclr", 1, lone, 1.0),
        _run(tmp_path, "random_init", 1, lone, 0.0),
        _run(tmp_path, "simclr", 1, lone, 1.0, label_fraction=0.1),
        {
            **_run(tmp_path, "simclr", 1, np.full(12, 3), 1.0, lead_mask_prob=0.5),  # one class: no AUROC
            "metrics": {"macro_auroc": None, "accuracy": 1.0, "macro_f1": 1.0},  # as json_safe writes NaN
        },
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        payload = _report(tmp_path, results, _settings(tmp_path))
    rows = {(r["method"], r["lead_mask_prob"]): r for r in payload["table"]}
    replicates = bootstrap_auroc(Predictions.read(results[0]["predictions"]))
    assert np.isnan(replicates).any() and np.isfinite(replicates).any()
    assert rows[("simclr", 0.0)]["ci95"] == percentile_interval(replicates)
    assert rows[("simclr", 0.5)]["macro_auroc"]["mean"] is None
    compared = rows[("simclr", 0.0)]["vs_random_init"]
    assert compared["ci95"] is not None and compared["difference"] == pytest.approx(
        results[0]["metrics"]["macro_auroc"] - results[1]["metrics"]["macro_auroc"]
    )
    assert json.loads((tmp_path / "results.json").read_text())["benchmark"]["task"] == "rhythm4"


def _bar_extents(ax) -> list[tuple[float, float]]:
    """(low, high) of every horizontal error bar drawn on ``ax``."""
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    (segments,) = bars.lines[2]
    return [(float(s[0][0]), float(s[1][0])) for s in segments.get_segments()]


def test_one_seed_bars_show_the_tables_bootstrap_interval_and_only_rhythm4_has_the_papers_panel(tmp_path):
    targets = np.arange(40) % 4
    results = [_run(tmp_path, "simclr", 1, targets, 0.5)]
    rows = summary_rows(results, "rhythm4", _settings(tmp_path)["methods"])
    low, high = rows[0]["ci95"]
    assert low < rows[0]["macro_auroc"]["mean"] < high
    fig = auroc_figure(rows, _settings(tmp_path))
    assert _bar_extents(fig.axes[0]) == [pytest.approx((100 * low, 100 * high))]
    assert len(fig.axes) == 2 and "Paper's Table 1" in fig.axes[1].get_title()
    assert "task rhythm4" in fig.axes[0].get_title()

    other = summary_rows(results, "cinc2021", _settings(tmp_path)["methods"])
    assert other[0]["paper_auroc"] is None
    assert len(auroc_figure(other, _settings(tmp_path, "cinc2021")).axes) == 1


def test_several_seeds_bars_show_the_tables_t_interval(tmp_path):
    targets = np.arange(40) % 4
    results = [_run(tmp_path, "simclr", seed, targets, 0.2 * seed) for seed in (1, 2, 3)]
    (row,) = summary_rows(results, "rhythm4")
    low, high = row["ci95"]
    assert high - low > 0
    (extent,) = _bar_extents(auroc_figure([row], _settings(tmp_path, seeds=3)).axes[0])
    assert extent == pytest.approx((100 * low, 100 * high))


def test_label_efficiency_title_names_only_the_variants_that_ran(tmp_path):
    targets = np.arange(40) % 4
    plain = [_run(tmp_path, "simclr", 1, targets, 0.5, label_fraction=fraction) for fraction in (0.1, 1.0)] + [
        _run(tmp_path, "random_init", 1, targets, 0.1, label_fraction=fraction) for fraction in (0.1, 1.0)
    ]
    efficiency = label_efficiency(plain)
    point = efficiency["simclr"]["1"]
    assert point["ci95"] == percentile_interval(bootstrap_auroc(Predictions.read(plain[1]["predictions"])))
    title = label_efficiency_figure(efficiency, {}, _settings(tmp_path)).axes[0].get_title()
    assert "random lead masking" not in title and "dashed: random-init encoder" in title

    masked = [_run(tmp_path, "simclr", 1, targets, 0.5, label_fraction=f, lead_mask_prob=0.5) for f in (0.1, 1.0)]
    title = label_efficiency_figure(label_efficiency(plain + masked), {}, _settings(tmp_path)).axes[0].get_title()
    assert "dotted: with random lead masking" in title and "task rhythm4" in title


def test_label_efficiency_pairs_each_fraction_with_the_references_given_the_same_labels(tmp_path):
    targets = np.arange(40) % 4
    seeds, fractions = (1, 2, 3), (0.1, 1.0)
    results = []
    for seed in seeds:
        for fraction in fractions:
            results += [
                _run(tmp_path, "simclr", seed, targets, 0.3 * seed, label_fraction=fraction),
                _run(tmp_path, "simclr", seed, targets, 0.2 * seed, label_fraction=fraction, lead_mask_prob=0.5),
                _run(tmp_path, "random_init", seed, targets, 0.1 * seed + fraction, label_fraction=fraction),
            ]
    efficiency = label_efficiency(results)

    def score(strategy: str, mask: float, seed: int, fraction: float) -> float:
        (run,) = [
            r
            for r in results
            if (r["strategy"], r["lead_mask_prob"], r["seed"], r["label_fraction"]) == (strategy, mask, seed, fraction)
        ]
        return run["metrics"]["macro_auroc"]

    for fraction in fractions:
        point = efficiency["simclr+rlm"][f"{fraction:g}"]
        expected = [score("simclr", 0.5, s, fraction) - score("simclr", 0.0, s, fraction) for s in seeds]
        assert point["vs_no_rlm"]["difference"] == pytest.approx(np.mean(expected))
        assert point["vs_no_rlm"]["ci95"] == pytest.approx(mean_interval(expected))
        expected = [score("simclr", 0.0, s, fraction) - score("random_init", 0.0, s, fraction) for s in seeds]
        assert efficiency["simclr"][f"{fraction:g}"]["vs_random_init"]["difference"] == pytest.approx(np.mean(expected))
        assert "vs_simclr" not in efficiency["simclr"][f"{fraction:g}"]
        assert set(efficiency["random_init"][f"{fraction:g}"]) & {"vs_simclr", "vs_random_init", "vs_no_rlm"} == set()

    _report(tmp_path, results, _settings(tmp_path, seeds=3))
    text = (tmp_path / "results.md").read_text()
    assert "Paired differences at each fraction" in text
    (line,) = [row for row in text.splitlines() if row.startswith("| Strategy 2 (SimCLR) | RLM | no RLM |")]
    assert line.count("[") == len(fractions)


def test_a_multi_label_task_is_named_and_reported_with_its_metrics(tmp_path):
    targets = np.arange(40) % 4
    run = _run(tmp_path, "simclr", 1, targets, 0.5)
    run["metrics"] = {"macro_auroc": 0.8, "macro_auprc": 0.5, "f_max": 0.6, "challenge_score": 0.42}
    _report(tmp_path, [run], _settings(tmp_path, "cinc2021"))
    text = (tmp_path / "results.md").read_text()
    assert "Downstream task `cinc2021`: the 26 scored PhysioNet/CinC 2021 classes" in text
    assert "## Table 1: test macro AUROC (%), task `cinc2021`" in text
    assert "| Paper |" not in text and "no paper column" in text
    assert "| Macro AUPRC | F-max | Challenge score |" in text and "| 50.0 | 60.0 | 0.420 |" in text
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["paper_auroc"] == {} and payload["table"][0]["challenge_score"]["mean"] == 0.42


def test_each_method_is_compared_with_its_own_familys_random_init_and_never_across_families(tmp_path):
    targets = np.arange(40) % 4
    w2v = {"encoder": "wav2vec2_ecg"}
    results = [{**_run(tmp_path, "simclr", seed, targets, 1.0), "encoder": "resnet1d"} for seed in (1, 2)] + [
        {**_run(tmp_path, "random_init", seed, targets, 0.2), "encoder": "resnet1d"} for seed in (1, 2)
    ]
    (tmp_path / "w2v").mkdir()
    for seed in (1, 2):
        w2v_run = _run(tmp_path / "w2v", "w2v_cmsc_rlm", seed, targets, 0.6, lead_mask_prob=0.5)
        init = _run(tmp_path / "w2v", "random_init", seed, targets, 0.4)
        results += [{**w2v_run, **w2v}, {**init, **w2v, "run_id": f"random_init_w2v-s{seed}"}]
    rows = {r["method"]: r for r in summary_rows(results, "rhythm4")}
    assert set(rows) == {"simclr", "random_init", "random_init_w2v", "w2v_cmsc_rlm"}
    assert rows["random_init_w2v"]["encoder"] == rows["w2v_cmsc_rlm"]["encoder"] == "wav2vec2_ecg"
    assert rows["random_init"]["encoder"] == rows["simclr"]["encoder"] == "resnet1d"
    by_seed = {r["run_id"]: r for r in results}
    expected = np.mean(
        [
            by_seed[f"w2v_cmsc_rlm-0.5-s{s}-f1.0"]["metrics"]["macro_auroc"]
            - by_seed[f"random_init_w2v-s{s}"]["metrics"]["macro_auroc"]
            for s in (1, 2)
        ]
    )
    compared = rows["w2v_cmsc_rlm"]["vs_random_init"]
    assert compared["difference"] == pytest.approx(expected)
    assert (compared["interval"], compared["n_seeds"]) == ("t_over_seeds", 2)
    assert "vs_simclr" not in rows["w2v_cmsc_rlm"]  # another architecture: not one comparison
    assert rows["simclr"]["vs_random_init"]["difference"] == pytest.approx(
        np.mean(
            [
                by_seed[f"simclr-0.0-s{s}-f1.0"]["metrics"]["macro_auroc"]
                - by_seed[f"random_init-0.0-s{s}-f1.0"]["metrics"]["macro_auroc"]
                for s in (1, 2)
            ]
        )
    )
    text = _report(tmp_path, results, _settings(tmp_path, seeds=2))
    markdown = (tmp_path / "results.md").read_text()
    assert "| Random-init frozen wav2vec 2.0 | wav2vec 2.0 | linear probe | 2 |" in markdown
    assert "## Schedules" in markdown and text["table"][0]["encoder"]


def test_a_paired_comparison_on_different_test_records_stops_naming_both_runs(tmp_path):
    results = [
        _run(tmp_path, "simclr", 1, np.arange(40) % 4, 1.0),
        _run(tmp_path, "random_init", 1, np.arange(36) % 4, 0.2),
    ]
    with pytest.raises(BenchmarkError) as error:
        summary_rows(results, "rhythm4")
    message = str(error.value)
    assert "simclr-0.0-s1-f1.0" in message and "random_init-0.0-s1-f1.0" in message
    assert message.endswith("36 in common") and "\n" not in message


def _lead_set_runs(tmp_path: Path, seeds=(1, 2)) -> list[dict]:
    """SimCLR without and with RLM and the random init, each on 12 leads and on I+II (weaker)."""
    targets = np.arange(40) % 4
    results = []
    for leads, weaker in ((None, 0.0), (["I", "II"], 0.3)):
        folder = tmp_path / ("12" if leads is None else "I+II")
        folder.mkdir(exist_ok=True)
        for seed in seeds:
            for strategy, mask, signal in (("simclr", 0.0, 1.0), ("simclr", 0.5, 1.2), ("random_init", 0.0, 0.4)):
                run = _run(folder, strategy, seed, targets, signal * (1 - weaker) + 0.1 * seed, lead_mask_prob=mask)
                suffix = "" if leads is None else "-leads_I+II"
                results.append({**run, "run_id": run["run_id"] + suffix, **({"lead_set": leads} if leads else {})})
    return results


def test_lead_set_rows_carry_their_drop_from_12_and_the_rlm_difference(tmp_path):
    results = _lead_set_runs(tmp_path)
    rows = summary_rows(results, "rhythm4", _settings(tmp_path)["methods"])
    by_key = {(r["method"], r["lead_mask_prob"], tuple(r["lead_set"])): r for r in rows}
    twelve = tuple(CANONICAL_LEADS)
    assert set(by_key) == {(m, p, leads) for m, p in REFERENCE_VARIANTS for leads in (twelve, ("I", "II"))}
    auroc = {
        (r["strategy"], r["lead_mask_prob"], "lead_set" in r, r["seed"]): r["metrics"]["macro_auroc"] for r in results
    }
    pair = by_key[("simclr", 0.0, ("I", "II"))]
    per_seed = [auroc[("simclr", 0.0, False, s)] - auroc[("simclr", 0.0, True, s)] for s in (1, 2)]
    assert pair["drop_from_12"]["per_seed"] == pytest.approx(per_seed) and pair["drop_from_12"]["difference"] > 0
    assert (pair["drop_from_12"]["interval"], pair["drop_from_12"]["ci95"]) == ("t_over_seeds", mean_interval(per_seed))
    rlm = by_key[("simclr", 0.5, ("I", "II"))]["vs_no_rlm"]
    assert rlm["per_seed"] == pytest.approx(
        [auroc[("simclr", 0.5, True, s)] - auroc[("simclr", 0.0, True, s)] for s in (1, 2)]
    )
    assert "vs_no_rlm" in by_key[("simclr", 0.5, twelve)] and "vs_no_rlm" not in pair
    assert "drop_from_12" not in by_key[("simclr", 0.0, twelve)]
    # the lead set's probe is compared with the random init on the same lead set
    init = [auroc[("random_init", 0.0, True, s)] for s in (1, 2)]
    assert pair["vs_random_init"]["per_seed"] == pytest.approx(
        [auroc[("simclr", 0.0, True, s)] - i for s, i in zip((1, 2), init, strict=True)]
    )
    assert pair["paper_auroc"] is None and by_key[("simclr", 0.0, twelve)]["paper_auroc"] is not None


def test_one_seed_lead_set_differences_are_conditional_on_its_records(tmp_path):
    rows = summary_rows(_lead_set_runs(tmp_path, seeds=(1,)), "rhythm4")
    pair = next(r for r in rows if r["lead_set"] == ["I", "II"] and r["lead_mask_prob"] == 0.5)
    assert pair["drop_from_12"]["interval"] == pair["vs_no_rlm"]["interval"] == "records_one_seed"
    assert pair["vs_no_rlm"]["n_seeds"] == 1 and pair["vs_no_rlm"]["ci95"] is not None


def test_the_report_of_several_lead_sets_has_their_tables_and_plot_and_table_1_stays_12_leads(tmp_path):
    results = _lead_set_runs(tmp_path)
    payload = _report(tmp_path, results, _settings(tmp_path, seeds=2))
    assert {tuple(row["lead_set"]) for row in payload["table"]} == {tuple(CANONICAL_LEADS), ("I", "II")}
    text = (tmp_path / "results.md").read_text()
    table1 = text.split("## Table 1")[1].split("##")[0]
    assert table1.count("| Strategy 2 (SimCLR) |") == 1
    lead_sets = text.split("## Lead sets")[1]
    assert "| Method | Lead masking | 12 leads | I+II |" in lead_sets
    assert "Random lead masking minus none, per lead set" in lead_sets
    rlm = next(r for r in payload["table"] if r["lead_set"] == ["I", "II"] and r["lead_mask_prob"] == 0.5)
    low, high = rlm["vs_no_rlm"]["ci95"]
    assert f"{100 * rlm['vs_no_rlm']['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]" in lead_sets
    against_random = lead_sets.split("minus its own family's random-init encoder")[1]
    compared = rlm["vs_random_init"]
    low, high = compared["ci95"]
    (line,) = [row for row in against_random.splitlines() if row.startswith("| Strategy 2 (SimCLR) | RLM |")]
    assert line.endswith(
        f"{100 * compared['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        + (" *" if compared["excludes_zero"] else "")
        + " |"
    )
    assert (tmp_path / LEAD_SET_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    only_twelve = tmp_path / "twelve"
    only_twelve.mkdir()
    _report(only_twelve, [r for r in results if "lead_set" not in r], _settings(tmp_path, seeds=2))
    assert not (only_twelve / LEAD_SET_PLOT).exists() and "## Lead sets" not in (only_twelve / "results.md").read_text()


def test_the_lead_set_plot_has_a_panel_per_strategy_with_both_columns_and_the_tables_intervals(tmp_path):
    rows = summary_rows(_lead_set_runs(tmp_path), "rhythm4", _settings(tmp_path)["methods"])
    fig = lead_set_figure(rows, _settings(tmp_path, seeds=2))
    (panel,) = [ax for ax in fig.axes if ax.get_visible()]
    assert panel.get_title() == "Strategy 2 (SimCLR)"
    assert [t.get_text() for t in panel.get_xticklabels()] == ["12 leads", "I+II\n(2 leads)"]
    lines = {c.get_label(): c for c in panel.containers if isinstance(c, ErrorbarContainer)}
    assert set(lines) == {"random init", "no lead masking", "random lead masking"}
    masked = [r for r in rows if r["method"] == "simclr" and r["lead_mask_prob"] == 0.5]
    (segments,) = lines["random lead masking"].lines[2]
    extents = [(float(s[0][1]), float(s[1][1])) for s in segments.get_segments()]
    assert extents == [pytest.approx((100 * r["ci95"][0], 100 * r["ci95"][1])) for r in masked]
