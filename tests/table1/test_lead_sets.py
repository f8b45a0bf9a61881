"""Lead-set probes in the benchmark: which runs a lead set adds, with which overrides, that an
output folder of 12-lead runs is reused as it is when lead sets are added, and (slow) that a
lead-set probe is trained and scored on its leads alone."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fairseq_goodviews.cli.benchmark import main
from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint
from fairseq_goodviews.io.checkpoints import read_checkpoint
from fairseq_goodviews.leads import CANONICAL_LEADS, parse_leads
from fairseq_goodviews.table1 import PRESETS, BenchmarkError, run_benchmark
from fairseq_goodviews.table1.execute import Context, base_result, run_plan
from fairseq_goodviews.table1.plan import (
    DEFAULT_CONFIG_ROOT,
    IDENTIFICATION,
    MULTI_LABEL,
    PRETRAIN,
    build_plan,
    describe_method,
    lead_sets,
)
from fairseq_goodviews.table1.report import LEAD_SET_PLOT
from fairseq_goodviews.table1.resume import planned_settings


def _plan(ptbxl: bool = False, **changes):
    preset = replace(PRESETS["tiny"], task="rhythm4", seeds=1, **changes)
    return build_plan(preset, [describe_method(DEFAULT_CONFIG_ROOT, "simclr")], DEFAULT_CONFIG_ROOT, ptbxl=ptbxl)


def test_a_lead_set_adds_one_probe_per_encoder_and_baseline_and_keeps_the_12_lead_runs():
    before = {spec.run_id: spec for spec in _plan()}
    after = {spec.run_id: spec for spec in _plan(lead_sets=("12", "2", "I+II", "ii"))}
    # the 12-lead runs keep their ids and overrides; "2" and "I+II" are one set, "ii" is lead II
    assert {k: v.overrides for k, v in after.items() if k in before} == {k: v.overrides for k, v in before.items()}
    added = set(after) - set(before)
    assert added == {
        f"{stem}-leads_{leads}"
        for stem in ("simclr-s1-probe", "simclr+rlm-s1-probe", "random_init-s1", "supervised-s1")
        for leads in ("I+II", "II")
    }
    for run_id in added:
        spec = after[run_id]
        assert spec.kind != PRETRAIN and spec.label_fraction == 1.0
        assert spec.depends_on == before[run_id.split("-leads_")[0]].depends_on  # the same pretraining
        composed = compose(DEFAULT_CONFIG_ROOT, spec.stage, spec.config_name, spec.overrides)
        assert list(composed.task.leads) == list(spec.leads) == run_id.split("-leads_")[1].split("+")
    assert after["supervised-s1-leads_II"].config_name == "finetune"


def test_the_other_tasks_get_lead_sets_only_where_the_preset_asks():
    plain = _plan(ptbxl=True, lead_sets=("12", "1"))
    other = [s.run_id for s in plain if s.kind in (MULTI_LABEL, IDENTIFICATION)]
    assert other and not any("-leads_" in run_id for run_id in other)
    every = {s.run_id: s for s in _plan(ptbxl=True, lead_sets=("12", "1"), lead_sets_other_tasks=True)}
    assert {
        "simclr-s1-ptbxl-probe-leads_II",
        "simclr-s1-identify-leads_II",
        "random_init-s1-ptbxl-probe-leads_II",
    } <= set(every)
    assert "task.leads=[II]" in every["simclr-s1-ptbxl-probe-leads_II"].overrides
    assert every["simclr-s1-identify-leads_II"].leads == ("II",)
    assert PRESETS["paper"].lead_sets_other_tasks and not PRESETS["cpu-small"].lead_sets_other_tasks


def test_presets_name_their_lead_sets_and_12_leads_always_come_first():
    assert [len(s or "x" * 12) for s in lead_sets(PRESETS["paper"])] == [12, 6, 4, 3, 2, 1]
    assert [len(s or "x" * 12) for s in lead_sets(PRESETS["cpu-small"])] == [12, 6, 3, 2, 1]
    assert lead_sets(PRESETS["demo"]) == [None, ("I", "II"), ("II",)]
    assert lead_sets(replace(PRESETS["tiny"], lead_sets=("V2+I", "12"))) == [None, ("I", "V2")]


def test_an_unknown_lead_is_one_line_before_anything_is_made(tmp_path, capsys):
    with pytest.raises(BenchmarkError, match=r"^--lead-sets: lead set 'I\+V7': unknown lead name 'V7'"):
        _plan(lead_sets=("12", "I+V7"))
    assert main(["--synthetic", "50", "--preset", "tiny", "--lead-sets", "12,I+V7", "--out", str(tmp_path)]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("goodviews-benchmark: error: --lead-sets: lead set 'I+V7'")
    assert not (tmp_path / "data").exists()


def test_an_out_of_12_lead_runs_is_reused_and_only_the_lead_set_runs_are_added(tmp_path, tiny_dataset):
    ctx = Context(data={1: tiny_dataset}, out=tmp_path, config_root=DEFAULT_CONFIG_ROOT)
    # the runs of an earlier benchmark without lead sets, finished as execute_run records them
    earlier = _plan()
    settings = planned_settings(earlier, DEFAULT_CONFIG_ROOT, ctx.data_for, None)
    for spec in earlier:
        ctx.run_dir(spec.run_id).mkdir(parents=True)
        result = base_result(spec, settings[spec.run_id], status="ok", metrics=None)
        (ctx.run_dir(spec.run_id) / "result.json").write_text(json.dumps(result))
    now = _plan(lead_sets=("12", "2"))
    outcome = run_plan(now, ctx, execute=False)
    assert set(outcome.results) == {spec.run_id for spec in earlier}  # reused: same ids, same settings
    assert set(outcome.failed) == {spec.run_id for spec in now} - {spec.run_id for spec in earlier}
    assert set(outcome.failed) == {
        "simclr-s1-probe-leads_I+II",
        "simclr+rlm-s1-probe-leads_I+II",
        "random_init-s1-leads_I+II",
        "supervised-s1-leads_I+II",
    }
    assert set(outcome.failed.values()) == {"not run yet"}


@pytest.mark.slow
def test_a_lead_set_probe_is_trained_and_scored_on_its_leads_alone(tmp_path, tiny_dataset):
    out = tmp_path / "out"
    outcome = run_benchmark(
        out,
        "tiny",
        data=tiny_dataset,
        seeds=1,
        strategies=["simclr"],
        lead_masking=["none"],
        label_fractions=[1.0],
        split_seeds=False,
        task="rhythm4",
        lead_sets=["12", "1"],
    )
    assert outcome.failed == {}
    assert {run_id for run_id in outcome.results if run_id.endswith("-leads_II")} == {
        "simclr-s1-probe-leads_II",
        "random_init-s1-leads_II",
        "supervised-s1-leads_II",
    }
    probe = outcome.results["simclr-s1-probe-leads_II"]
    assert probe["lead_set"] == ["II"] and "task.leads=[II]" in probe["overrides"]
    assert outcome.results["simclr-s1-probe"]["lead_set"] == list(CANONICAL_LEADS)
    assert list(read_checkpoint(probe["checkpoint"])["cfg"]["task"]["leads"]) == ["II"]
    # scored on lead II alone: the recorded AUROC is the checkpoint's on II, not on all 12 leads
    on_ii = evaluate_checkpoint(probe["checkpoint"], split="test", leads=parse_leads("II"))["macro_auroc"]
    on_all = evaluate_checkpoint(probe["checkpoint"], split="test")["macro_auroc"]
    assert probe["metrics"]["macro_auroc"] == pytest.approx(on_ii) and on_ii != pytest.approx(on_all)
    payload = json.loads((out / "results.json").read_text())
    row = next(r for r in payload["table"] if r["method"] == "simclr" and r["lead_set"] == ["II"])
    assert row["drop_from_12"]["interval"] == "records_one_seed" and row["drop_from_12"]["ci95"] is not None
    assert (out / LEAD_SET_PLOT).is_file() and "## Lead sets" in (out / "results.md").read_text()
