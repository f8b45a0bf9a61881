"""A benchmark's run settings: what a run computes, so that a finished run is reused exactly when
the plan asks for the same run."""

from __future__ import annotations

from dataclasses import replace

from fairseq_goodviews.table1.plan import DEFAULT_CONFIG_ROOT, PRESETS, build_plan, describe_method
from fairseq_goodviews.table1.resume import changed_runs, planned_settings
from fairseq_goodviews.tasks.fingerprint import SPEED_SETTINGS


def test_speed_settings_neither_count_nor_stop_a_run_recorded_before_they_existed(tiny_dataset):
    plan = build_plan(
        replace(PRESETS["tiny"], seeds=1, task="rhythm4"),
        [describe_method(DEFAULT_CONFIG_ROOT, "simclr")],
        DEFAULT_CONFIG_ROOT,
    )
    settings = planned_settings(plan, DEFAULT_CONFIG_ROOT, lambda spec: tiny_dataset, None)
    assert all(key not in run for run in settings.values() for key in SPEED_SETTINGS)

    pretrain = next(spec for spec in plan if spec.kind == "pretrain")
    compiled = replace(pretrain, overrides=[*pretrain.overrides, "model.compile_encoder=true"])
    assert planned_settings([compiled], DEFAULT_CONFIG_ROOT, lambda spec: tiny_dataset, None) == {
        pretrain.run_id: settings[pretrain.run_id]
    }
    finished = {pretrain.run_id: {"settings": settings[pretrain.run_id]}}
    assert changed_runs(finished, settings) == {}

    longer = replace(pretrain, overrides=[*pretrain.overrides, "optimization.max_epoch=7"])
    changed = changed_runs(finished, planned_settings([longer], DEFAULT_CONFIG_ROOT, lambda spec: tiny_dataset, None))
    assert changed == {
        pretrain.run_id: [f"optimization.max_epoch: {settings[pretrain.run_id]['optimization.max_epoch']} -> 7"]
    }
