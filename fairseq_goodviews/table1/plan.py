"""The plan of a Table 1 benchmark: which runs, with which configs and overrides, in which order.

Everything the plan knows about a pretraining method it reads from two places: the method's
hydra config (composed as ``fairseq-hydra-train`` composes it) and the registered strategy class
that config names. Sizes and schedules are hydra config groups (``config/*/preset`` and
``config/*/schedule``): a benchmark preset names them and never restates their numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from omegaconf import OmegaConf

from fairseq_goodviews.config import CONFIG_ROOT
from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.leads import CANONICAL_LEADS, UnknownLeadError, parse_lead_set
from fairseq_goodviews.strategies import STRATEGY_REGISTRY, build_strategy, strategy_config
from fairseq_goodviews.table1.downstream import task_overrides

#: The hydra configs of the package; ``--config-root`` points elsewhere.
DEFAULT_CONFIG_ROOT = CONFIG_ROOT

#: Hydra presets and schedules of an encoder family other than the ResNet carry its prefix
#: (``config/pretraining/preset/w2v_cpu_small.yaml``); keyed by the registered model name.
FAMILY_PREFIX: Dict[str, str] = {"resnet1d": "", "wav2vec2_ecg": "w2v_"}
#: The encoder family of the baselines that name none (the supervised baseline, the first random init).
DEFAULT_ENCODER = "resnet1d"

# Kinds of run (the ``kind`` field of every result).
PRETRAIN = "pretrain"
PROBE = "pretrain+probe"
FINETUNE = "finetune"
SUPERVISED = "supervised"
RANDOM_INIT = "random_init"
LABEL_FRACTION = "label_fraction"
MULTI_LABEL = "multi_label_probe"
IDENTIFICATION = "identification"

#: Which prepared folder a run reads: the benchmark's data (per seed) or the multi-visit PTB-XL set.
MAIN_DATA = "main"
PTBXL_DATA = "ptbxl"

#: The paper's strategies first (Table 1 order), then the other pretraining methods of the project.
ALL_STRATEGIES: tuple[str, ...] = (
    "cmlc",
    "cmsc",
    "cmsmlc",
    "simclr",
    "demographics",
    "rhythm",
    "attributes",
    "patient",
    "w2v_cmsc_rlm",
)


class BenchmarkError(GoodviewsError, RuntimeError):
    """A benchmark that cannot start or a run that failed; the message says what and where."""


@dataclass(frozen=True)
class Preset:
    """What sizes a benchmark: hydra presets and schedules (by name), strategies, seeds, fractions."""

    name: str
    #: Hydra preset of both stages (``cpu_small``: the small encoders), prefixed per encoder family.
    hydra_preset: str
    #: Schedules (``config/pretraining/schedule``, ``config/finetuning/schedule``).
    pretrain_schedule: str
    probe_schedule: str
    finetune_schedule: str
    strategies: tuple[str, ...]
    seeds: int
    label_fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    #: The pretraining schedule's crop is one view long: a strategy that cuts its crop into time
    #: segments (CMSC) gets a crop that many times longer, so every view is as long as the
    #: downstream input. Off: every strategy gets the schedule's crop (the paper's 10 s records).
    crop_per_view: bool = False
    #: The downstream task of the probes and baselines (:data:`~.downstream.TASKS`); None: the
    #: one the data supports, chosen when the benchmark starts (:func:`~.data.choose_task`).
    task: Optional[str] = None
    #: Lead-masking columns of the table (``config/pretraining/lead_masking``): ``none`` is the
    #: paper's protocol, ``rlm`` random lead masking. A method whose config masks leads by
    #: definition (W2V+CMSC+RLM) runs once, in its own column.
    lead_masking: tuple[str, ...] = ("none", "rlm")
    #: Re-split the data patient-wise with each seed, so the spread over seeds includes the split.
    split_seeds: bool = True
    #: The field's other downstream tasks, on a PTB-XL-layout folder with several ECGs per patient
    #: (``--ptbxl-data``, or generated with ``--synthetic``): a linear probe on this PTB-XL label
    #: set (multi-label), and frozen-encoder patient identification (top-1) on its test patients.
    ptbxl_label_set: Optional[str] = "ptbxl_superdiagnostic"
    identification: bool = True
    #: Patients of the synthetic multi-visit PTB-XL set ``--synthetic`` generates.
    synthetic_ptbxl_patients: int = 300
    supervised: bool = True
    random_init: bool = True
    finetune: bool = False
    #: Records ``--synthetic`` generates when it is given no number (or 0).
    synthetic_records: int = 1500
    jobs: int = 1
    #: Lead sets of the probes and baselines (:func:`~fairseq_goodviews.leads.parse_lead_set`: a
    #: named set such as ``2`` or leads joined by ``+``): every encoder gets a linear probe trained
    #: and tested on each (the other leads zero-filled), the supervised baseline is trained on each;
    #: all training labels only. The 12-lead set is always there (Table 1 itself).
    lead_sets: tuple[str, ...] = ("12",)
    #: The PTB-XL probe and identification on every lead set as well (else on 12 leads only).
    lead_sets_other_tasks: bool = False


PRESETS: Dict[str, Preset] = {
    # Good Views A.5 (config/*/schedule/*paper.yaml): the full-size encoders on 10 s records, for GPUs.
    "paper": Preset(
        name="paper",
        hydra_preset="paper",
        pretrain_schedule="paper",
        probe_schedule="probe_paper",
        finetune_schedule="finetune_paper",
        strategies=ALL_STRATEGIES,
        seeds=5,
        synthetic_records=10646,
        lead_sets=("12", "6", "4", "3", "2", "1"),
        lead_sets_other_tasks=True,
    ),
    # Every strategy, 5 seeds, on ~1,500 synthetic records on 2 CPU cores, two runs at a time.
    "cpu-small": Preset(
        name="cpu-small",
        hydra_preset="cpu_small",
        pretrain_schedule="bench_cpu_small",
        probe_schedule="probe_bench_cpu_small",
        finetune_schedule="finetune_bench_cpu_small",
        strategies=ALL_STRATEGIES,
        seeds=5,
        crop_per_view=True,
        jobs=2,
        lead_sets=("12", "6", "3", "2", "1"),
    ),
    # The test suite: two strategies (one label-using), two seeds, one epoch, tiny records.
    "tiny": Preset(
        name="tiny",
        hydra_preset="cpu_small",
        pretrain_schedule="tiny",
        probe_schedule="probe_tiny",
        finetune_schedule="finetune_tiny",
        strategies=("simclr", "rhythm"),
        seeds=2,
        label_fractions=(0.1, 1.0),
        crop_per_view=True,
        synthetic_records=200,
        jobs=2,
    ),
}


# examples/demo.py: the cpu-small benchmark with every strategy once, all training labels, no
# supervised baseline, smaller Chapman and PTB-XL sets (to keep within 10 minutes on 2 cores) and
# the three cheapest lead sets.
PRESETS["demo"] = replace(
    PRESETS["cpu-small"],
    name="demo",
    seeds=1,
    label_fractions=(1.0,),
    supervised=False,
    synthetic_records=800,
    synthetic_ptbxl_patients=150,
    lead_sets=("12", "2", "1"),
)


@dataclass(frozen=True)
class Method:
    """A pretraining method as its config and strategy class describe it."""

    #: The config name (``config/pretraining/<name>.yaml``): the method's id in results.
    name: str
    #: Row label of the tables (``task.method_name``, else the strategy's).
    table_name: str
    strategy: str
    #: The registered model it pretrains (``model._name``), which picks the family's presets.
    model: str
    uses_labels: bool
    cross_record: bool
    paper_auroc: Optional[tuple[float, float]]
    needs_repeat_patients: bool
    #: Views' worth of time in a crop (CMSC: 2).
    crop_segments: int
    lead_mask_prob: float
    #: Why the method cannot learn on the benchmark's data (no anchor can have a positive), if so.
    not_applicable: Optional[str] = None

    @property
    def prefix(self) -> str:
        if self.model not in FAMILY_PREFIX:
            raise BenchmarkError(
                f"pretraining config {self.name!r}: model {self.model!r} has no benchmark presets "
                f"(known: {', '.join(FAMILY_PREFIX)})"
            )
        return FAMILY_PREFIX[self.model]


def schedules(config_root: Path, preset: Preset) -> Dict[str, Dict[str, Any]]:
    """The ResNet schedules of ``preset`` as composed (epochs, lr, batch, crop), for the report."""

    def facts(stage: str, name: str, schedule: str) -> Dict[str, Any]:
        cfg = compose(config_root, stage, name, [f"preset={preset.hydra_preset}", f"schedule={schedule}"])
        return {
            "schedule": schedule,
            "max_epoch": int(cfg.optimization.max_epoch),
            "lr": float(OmegaConf.select(cfg, "optimization.lr")[0]),
            "batch_size": int(cfg.dataset.batch_size),
            "sample_size": int(cfg.task.sample_size),
        }

    return {
        "pretraining": facts("pretraining", "base", preset.pretrain_schedule),
        "linear_probe": facts("finetuning", "linear_probe", preset.probe_schedule),
        "finetune": facts("finetuning", "finetune", preset.finetune_schedule),
    }


def describe_method(config_root: Path, name: str) -> Method:
    """A pretraining method from its composed config and its registered strategy class."""

    if not (config_root / "pretraining" / f"{name}.yaml").is_file():
        raise BenchmarkError(f"no pretraining config {name!r} in {config_root / 'pretraining'}")
    cfg = compose(config_root, "pretraining", name)
    strategy_node = OmegaConf.select(cfg, "task.strategy")
    strategy_name = OmegaConf.select(cfg, "task.strategy._name")
    if strategy_name not in STRATEGY_REGISTRY:
        raise BenchmarkError(f"pretraining config {name!r}: unknown strategy {strategy_name!r}")
    cls = STRATEGY_REGISTRY[strategy_name]
    strategy_cfg = strategy_config(strategy_node)
    method_name = OmegaConf.select(cfg, "task.method_name")
    return Method(
        name=name,
        table_name=method_name or cls.table_name(),
        strategy=strategy_name,
        model=str(OmegaConf.select(cfg, "model._name")),
        uses_labels=cls.uses_labels,
        cross_record=cls.cross_record,
        paper_auroc=None if method_name else cls.paper_auroc,
        needs_repeat_patients=cls.needs_repeat_patients,
        crop_segments=cls.crop_segments(strategy_cfg),
        lead_mask_prob=float(OmegaConf.select(cfg, "task.lead_mask_prob")),
    )


def check_applicable(method: Method, config_root: Path, data: Path) -> Method:
    """``method`` with ``not_applicable`` set when no anchor of ``data``'s train split can have a
    positive (the check ``ecg_pretraining`` makes before training, made here without training)."""

    node = OmegaConf.select(compose(config_root, "pretraining", method.name), "task.strategy")
    table = read_metadata(str(data), "train")
    try:
        reason = build_strategy(node, table, table, seed=0).no_positive_reason()
    except ValueError as exc:  # e.g. a metadata column the strategy needs is missing
        reason = str(exc)
    return replace(method, not_applicable=reason) if reason else method


@dataclass
class RunSpec:
    """One ``fairseq-hydra-train`` invocation (and, for downstream runs, its scoring)."""

    run_id: str
    kind: str
    #: The pretraining method (config name), or ``supervised`` / ``random_init``.
    method: str
    seed: int
    stage: str  # "pretraining" or "finetuning": the config folder
    config_name: str
    #: Overrides of the experiment (paths excluded: they are added per output folder).
    overrides: List[str]
    protocol: Optional[str] = None  # "linear_probe" / "finetune" for downstream runs
    label_fraction: float = 1.0
    #: The pretraining run whose last checkpoint is ``model.model_path``.
    depends_on: Optional[str] = None
    #: Random lead masking probability of the pretraining (of the run itself, or of the one it
    #: depends on); None for the baselines, which pretrain nothing.
    lead_mask_prob: Optional[float] = None
    #: The prepared folder the run reads (:data:`MAIN_DATA` or :data:`PTBXL_DATA`).
    dataset: str = MAIN_DATA
    #: The registered model of the encoder the run trains or probes (its family).
    encoder: str = DEFAULT_ENCODER
    #: The leads the run trains and is tested on (canonical names; the others zero-filled); None: all 12.
    leads: Optional[tuple[str, ...]] = None


def _common(hydra_preset: str, schedule: str, seed: int) -> List[str]:
    return [f"preset={hydra_preset}", f"schedule={schedule}", f"common.seed={seed}"]


def pretrain_overrides(
    preset: Preset, method: Method, config_root: Path, lead_masking: Optional[str]
) -> tuple[List[str], float]:
    """The overrides of a pretraining run (seed 0: the plan sets each seed) and its lead masking."""

    hydra_preset, schedule = method.prefix + preset.hydra_preset, method.prefix + preset.pretrain_schedule
    overrides = _common(hydra_preset, schedule, 0)
    if lead_masking is not None:
        overrides.append(f"lead_masking={lead_masking}")
    cfg = compose(config_root, "pretraining", method.name, overrides)
    if preset.crop_per_view and method.crop_segments > 1:
        overrides.append(f"task.sample_size={int(cfg.task.sample_size) * method.crop_segments}")
    return overrides, float(OmegaConf.select(cfg, "task.lead_mask_prob"))


def lead_masking_variants(preset: Preset, method: Method) -> List[tuple[Optional[str], str]]:
    """(``lead_masking`` override or None, run-id suffix) of each column the method runs in."""
    if method.lead_mask_prob > 0:
        return [(None, "")]
    return [(name, "" if name == "none" else f"+{name}") for name in preset.lead_masking]


def lead_sets(preset: Preset) -> List[Optional[tuple[str, ...]]]:
    """The preset's lead sets as canonical lead names, each once, 12 leads first as None (the runs
    Table 1 has always had: no ``task.leads`` override, so their run ids and settings stay)."""
    sets: Dict[tuple[str, ...], None] = {CANONICAL_LEADS: None}
    for text in preset.lead_sets:
        try:
            sets[parse_lead_set(text)] = None
        except UnknownLeadError as exc:
            raise BenchmarkError(f"--lead-sets: {exc}") from None
    return [None if leads == CANONICAL_LEADS else leads for leads in sets]


def lead_set_suffix(leads: Optional[Sequence[str]]) -> str:
    """The run-id suffix of a run on the lead set ``leads`` (none for all 12): ``-leads_I+II``."""
    return "" if leads is None else "-leads_" + "+".join(leads)


def downstream_overrides(
    preset: Preset,
    prefix: str,
    seed: int,
    protocol: str,
    fraction: float,
    task: Optional[str] = None,
    leads: Optional[Sequence[str]] = None,
) -> List[str]:
    """The overrides of a downstream run on ``task`` (default: the preset's), best checkpoint by
    valid macro AUROC, trained and validated on ``leads`` (None: all 12; the others zero-filled)."""
    task = task or preset.task
    if task is None:
        raise BenchmarkError(f"preset {preset.name!r} names no downstream task (run_benchmark chooses one)")
    schedule = preset.probe_schedule if protocol == "linear_probe" else preset.finetune_schedule
    # The test split is scored once, from the best checkpoint, after training: validating on it
    # every epoch as well would only cost time.
    return [
        *_common(prefix + preset.hydra_preset, schedule, seed),
        f"task.train_fraction={fraction}",
        "dataset.valid_subset=valid",
        *task_overrides(task),
        *([] if leads is None else [f"task.leads=[{','.join(leads)}]"]),
    ]


def ptbxl_probe_overrides(preset: Preset, prefix: str, seed: int, leads: Optional[Sequence[str]] = None) -> List[str]:
    """A linear probe on the PTB-XL label set of the PTB-XL-layout folder (multi-label)."""
    return downstream_overrides(preset, prefix, seed, "linear_probe", 1.0, task=preset.ptbxl_label_set, leads=leads)


def fraction_tag(fraction: float) -> str:
    return f"f{fraction:g}"


def _fraction_suffix(fraction: float) -> str:
    """The run-id suffix of a probe on ``fraction`` of the training labels (none for all of them)."""
    return "" if fraction == 1.0 else f"-{fraction_tag(fraction)}"


def _spec(
    *,
    run_id: str,
    kind: str,
    method: str,
    seed: int,
    config_name: str,
    overrides: List[str],
    stage: str = "finetuning",
    protocol: Optional[str] = None,
    label_fraction: float = 1.0,
    pretrain: Optional[RunSpec] = None,
    lead_mask_prob: Optional[float] = None,
    dataset: str = MAIN_DATA,
    encoder: str = DEFAULT_ENCODER,
    leads: Optional[tuple[str, ...]] = None,
) -> RunSpec:
    """One run of the plan; a run on the encoder of ``pretrain`` depends on it and carries its lead
    masking (``lead_mask_prob`` is that of a pretraining run itself)."""
    return RunSpec(
        run_id=run_id,
        kind=kind,
        method=method,
        seed=seed,
        stage=stage,
        config_name=config_name,
        overrides=overrides,
        protocol=protocol,
        label_fraction=label_fraction,
        depends_on=None if pretrain is None else pretrain.run_id,
        lead_mask_prob=lead_mask_prob if pretrain is None else pretrain.lead_mask_prob,
        dataset=dataset,
        encoder=encoder if pretrain is None else pretrain.encoder,
        leads=leads,
    )


def build_plan(preset: Preset, methods: Sequence[Method], config_root: Path, ptbxl: bool = False) -> List[RunSpec]:
    """Every run of the benchmark, each pretraining run before the runs that depend on it.

    With ``ptbxl`` (a PTB-XL-layout folder is there), every encoder also gets the multi-label
    probe and the identification runs of the preset. Every lead set but 12 adds a probe of every
    encoder, of each random init and a supervised baseline on it (all training labels), run ids
    ``<12-lead id>-leads_<lead>+<lead>...``.
    """
    plan: List[RunSpec] = []
    sets = lead_sets(preset)
    fractions = sorted(set(preset.label_fractions) | {1.0})
    # every family gets its own random-init baseline: a method is compared with its own architecture
    families = list(dict.fromkeys([DEFAULT_ENCODER, *(method.model for method in methods)]))
    for method in methods:
        method.prefix  # noqa: B018 - a family without benchmark presets is a BenchmarkError here
    variants = [
        (method, method.name + suffix, *pretrain_overrides(preset, method, config_root, masking))
        for method in methods
        for masking, suffix in lead_masking_variants(preset, method)
    ]
    for seed in range(1, preset.seeds + 1):
        for method, name, pretraining, mask_prob in variants:
            pretrain = _spec(
                run_id=f"{name}-s{seed}-pretrain",
                kind=PRETRAIN,
                method=method.name,
                seed=seed,
                stage="pretraining",
                config_name=method.name,
                overrides=[o if not o.startswith("common.seed=") else f"common.seed={seed}" for o in pretraining],
                lead_mask_prob=mask_prob,
                encoder=method.model,
            )
            plan += [pretrain, *_encoder_runs(preset, method, name, pretrain, fractions, ptbxl, sets)]
        plan += _baseline_runs(preset, seed, fractions, ptbxl, families, sets)
    return plan


def random_init_stem(encoder: str) -> str:
    """The run-id stem of ``encoder``'s random-init baseline: ``random_init`` for the ResNet (as
    before there were several), ``random_init_w2v`` for wav2vec 2.0."""
    prefix = FAMILY_PREFIX[encoder]
    return RANDOM_INIT + (f"_{prefix.rstrip('_')}" if prefix else "")


def _probes(
    run: Callable[..., RunSpec],
    stem: str,
    kind: str,
    preset: Preset,
    prefix: str,
    seed: int,
    fractions: Sequence[float],
    leads: Optional[tuple[str, ...]] = None,
) -> List[RunSpec]:
    """Linear probes on each fraction of the training labels, made by ``run``: run ids
    ``<stem>[-f<fraction>]``, kind ``kind`` with all the labels, else :data:`LABEL_FRACTION`; on a
    lead set (``leads``), one probe with all the labels, ``<stem>-leads_...``."""
    return [
        run(
            run_id=f"{stem}{_fraction_suffix(fraction)}{lead_set_suffix(leads)}",
            kind=kind if fraction == 1.0 else LABEL_FRACTION,
            config_name="linear_probe",
            overrides=downstream_overrides(preset, prefix, seed, "linear_probe", fraction, leads=leads),
            protocol="linear_probe",
            label_fraction=fraction,
            leads=leads,
        )
        for fraction in (fractions if leads is None else (1.0,))
    ]


def _ptbxl_probe(
    run: Callable[..., RunSpec], stem: str, preset: Preset, prefix: str, seed: int, leads: Optional[tuple[str, ...]]
) -> RunSpec:
    """The multi-label linear probe on the PTB-XL-layout folder, made by ``run``: run id
    ``<stem>-ptbxl-probe[-leads_...]``."""
    return run(
        run_id=f"{stem}-ptbxl-probe{lead_set_suffix(leads)}",
        kind=MULTI_LABEL,
        config_name="linear_probe",
        overrides=ptbxl_probe_overrides(preset, prefix, seed, leads),
        protocol="ptbxl_probe",
        dataset=PTBXL_DATA,
        leads=leads,
    )


def _other_tasks(preset: Preset, ptbxl: bool, leads: Optional[tuple[str, ...]]) -> bool:
    """Whether the PTB-XL probe and identification run on the lead set ``leads``."""
    return ptbxl and (leads is None or preset.lead_sets_other_tasks)


def _encoder_runs(
    preset: Preset,
    method: Method,
    name: str,
    pretrain: RunSpec,
    fractions: Sequence[float],
    ptbxl: bool,
    sets: Sequence[Optional[tuple[str, ...]]],
) -> List[RunSpec]:
    """The downstream runs on the encoder that ``pretrain`` pretrains (``method`` in one lead-masking
    column; run ids ``<name>-s<seed>-...``), on each lead set of ``sets``."""
    seed = pretrain.seed
    run = partial(_spec, method=method.name, seed=seed, pretrain=pretrain)
    runs: List[RunSpec] = []
    for leads in sets:
        runs += _probes(run, f"{name}-s{seed}-probe", PROBE, preset, method.prefix, seed, fractions, leads)
        if preset.finetune and leads is None:
            runs.append(
                run(
                    run_id=f"{name}-s{seed}-finetune",
                    kind=FINETUNE,
                    config_name="finetune",
                    overrides=downstream_overrides(preset, method.prefix, seed, "finetune", 1.0),
                    protocol="finetune",
                )
            )
        if _other_tasks(preset, ptbxl, leads) and preset.ptbxl_label_set:
            runs.append(_ptbxl_probe(run, f"{name}-s{seed}", preset, method.prefix, seed, leads))
        if _other_tasks(preset, ptbxl, leads) and preset.identification:
            runs.append(
                run(
                    run_id=f"{name}-s{seed}-identify{lead_set_suffix(leads)}",
                    kind=IDENTIFICATION,
                    stage="none",
                    config_name="",
                    overrides=[],
                    protocol="identification",
                    dataset=PTBXL_DATA,
                    leads=leads,
                )
            )
    return runs


def _baseline_runs(
    preset: Preset,
    seed: int,
    fractions: Sequence[float],
    ptbxl: bool,
    families: Sequence[str],
    sets: Sequence[Optional[tuple[str, ...]]],
) -> List[RunSpec]:
    """The baselines at ``seed``, which pretrain nothing, on each lead set of ``sets``: each encoder
    family's random-init frozen encoder, probed as its pretrained encoders are, and the supervised
    encoder trained from scratch."""
    runs: List[RunSpec] = []
    for encoder in families if preset.random_init else ():
        random_init = partial(_spec, method=RANDOM_INIT, seed=seed, encoder=encoder)
        stem, prefix = f"{random_init_stem(encoder)}-s{seed}", FAMILY_PREFIX[encoder]
        for leads in sets:
            if _other_tasks(preset, ptbxl, leads) and preset.ptbxl_label_set:
                runs.append(_ptbxl_probe(random_init, stem, preset, prefix, seed, leads))
            runs += _probes(random_init, stem, RANDOM_INIT, preset, prefix, seed, fractions, leads)
    for leads in sets if preset.supervised else ():
        runs.append(
            _spec(
                run_id=f"supervised-s{seed}{lead_set_suffix(leads)}",
                kind=SUPERVISED,
                method=SUPERVISED,
                seed=seed,
                config_name="finetune",
                overrides=downstream_overrides(preset, "", seed, "finetune", 1.0, leads=leads),
                protocol="finetune",
                leads=leads,
            )
        )
    return runs
