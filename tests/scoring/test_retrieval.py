"""Patient retrieval: the gallery/probe protocol, retrieval metrics on hand-made embeddings and the
protocol on real PTB-XL patient ids."""

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.scoring.retrieval import (
    IdentificationError,
    equal_error_rate,
    gallery_probe_split,
    retrieval_metrics,
    standardizer,
)


def test_protocol_first_record_is_gallery_others_are_probes():
    ids = ["a", "b", "a", "c", "b", "a", None, "", float("nan")]
    split = gallery_probe_split(ids)
    assert split.gallery.tolist() == [0, 1] and split.gallery_patients.tolist() == ["a", "b"]
    assert split.probe.tolist() == [2, 4, 5] and split.probe_patients.tolist() == ["a", "b", "a"]
    with_distractors = gallery_probe_split(ids, distractors=True)
    assert with_distractors.gallery.tolist() == [0, 1, 3] and with_distractors.probe.tolist() == [2, 4, 5]


def test_protocol_refuses_splits_without_repeat_patients():
    with pytest.raises(
        IdentificationError, match=r"t.csv: no patient has two or more records \(3 records, 3 patients\)"
    ):
        gallery_probe_split(["a", "b", "c"], where="t.csv")
    with pytest.raises(
        IdentificationError,
        match=r"only one patient \(a\) has two or more records \(3 records, 2 patients\); retrieval needs at least "
        r"two in the gallery; --distractors would add its 1 single-record patient\(s\) to the gallery; pool$",
    ):
        gallery_probe_split(["a", "b", "a"], advice="pool")
    assert gallery_probe_split(["a", "b", "a"], distractors=True).gallery_patients.tolist() == ["a", "b"]


def test_the_advice_never_suggests_distractors_when_they_are_given_or_cannot_help():
    with pytest.raises(IdentificationError) as given:
        gallery_probe_split(["a", "a", "a"], distractors=True, advice="pool the splits")
    with pytest.raises(IdentificationError) as no_singles:
        gallery_probe_split(["a", "a"])
    with pytest.raises(IdentificationError) as none_repeated:
        gallery_probe_split(["a", "b"], advice="pool the splits")
    assert "--distractors" not in str(given.value) and str(given.value).endswith("; pool the splits")
    assert "--distractors" not in str(no_singles.value)
    assert "--distractors" not in str(none_repeated.value) and "pool the splits" in str(none_repeated.value)


def test_retrieval_metrics_worked_example():
    gallery = np.eye(3)
    probes = np.array(
        [
            [0.9, 0.1, 0.0],  # patient 0: nearest is 0 (cos 0.9939)
            [0.8, 0.6, 0.0],  # patient 1: 0 scores 0.8, its own 0.6 -> rank 2
            [0.0, 0.0, 2.0],
        ]
    )  # patient 2: cos 1
    result = retrieval_metrics(gallery, ["p0", "p1", "p2"], probes, ["p0", "p1", "p2"])
    assert result["top1"] == pytest.approx(2 / 3) and result["top5"] == 1.0
    # Genuine scores {1, 0.9939, 0.6}, impostors {0.8, 0.1104, 0, 0, 0, 0}: going down the
    # thresholds, (FRR, FAR) = (2/3, 0), (1/3, 0), (1/3, 1/6), (0, 1/6): FRR - FAR goes from +1/6
    # to -1/6 between the last two, so the crossing is halfway: EER = 1/6.
    assert result["eer"] == pytest.approx(1 / 6)
    assert (result["n_gallery"], result["n_probe"], result["chance_top1"]) == (3, 3, pytest.approx(1 / 3))


def test_top5_counts_the_true_entry_among_five():
    gallery = np.eye(7)
    probe = np.array([[0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]])  # true patient 5 ranks sixth
    assert retrieval_metrics(gallery, list("abcdefg"), probe, ["f"])["top5"] == 0.0
    assert retrieval_metrics(gallery, list("abcdefg"), probe, ["e"])["top5"] == 1.0
    assert retrieval_metrics(gallery, list("abcdefg"), probe, ["e"])["top1"] == 0.0


def test_a_constant_encoder_scores_no_better_than_chance():
    gallery, probes = np.ones((4, 8)), np.ones((6, 8))
    result = retrieval_metrics(gallery, list("abcd"), probes, list("abcdab"))
    assert result["top1"] == 0.0  # ties rank against the probe
    assert result["eer"] == pytest.approx(0.5)


def test_equal_error_rate_extremes_and_crossing_on_a_threshold():
    assert equal_error_rate([0.9, 0.8], [0.1, 0.2, 0.3]) == 0.0
    assert equal_error_rate([0.1, 0.2], [0.8, 0.9]) == 1.0
    # Thresholds 0.9 (G), 0.7 (I), 0.6 (G), 0.1 (I): at 0.7, FRR = FAR = 1/2 exactly.
    assert equal_error_rate([0.9, 0.6], [0.7, 0.1]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        equal_error_rate([0.9], [])


def test_standardizer_uses_the_fit_statistics_and_keeps_constant_dimensions():
    mean, std = standardizer(np.array([[1.0, 2.0, 5.0], [3.0, 2.0, 1.0]]))
    assert mean.tolist() == [2.0, 2.0, 3.0] and std.tolist() == [1.0, 1.0, 2.0]


def test_retrieval_metrics_reject_probes_without_a_gallery_entry():
    with pytest.raises(ValueError, match="probe patient 'z' has no gallery entry"):
        retrieval_metrics(np.eye(2), ["a", "b"], np.eye(2)[:1], ["z"])


def test_protocol_on_real_ptbxl_patients(tmp_path):
    """PTB-XL ecg_id 17, 18 and 20 are three ECGs of patient 13619 (fold 9); the other nine real
    records are one ECG each of nine patients (folds 2-8)."""
    from fairseq_goodviews.preprocessing.pipeline import PrepareOptions
    from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl
    from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter

    out = tmp_path / "ptbxl"
    prepare_ptbxl(
        shared_data() / "real" / "ptbxl",
        out,
        converter=WfdbConverter(attributes=False),
        options=PrepareOptions(progress=False),
    )
    train, valid = read_metadata(out, "train"), read_metadata(out, "valid")
    with pytest.raises(
        IdentificationError, match=r"train.csv: no patient has two or more records \(9 records, 9 patients\)"
    ):
        gallery_probe_split(train["patient_id"], where=str(out / "train.csv"))
    with pytest.raises(IdentificationError, match=r"only one patient \(13619\)"):
        gallery_probe_split(valid["patient_id"])
    both = pd.concat([train, valid], ignore_index=True)
    split = gallery_probe_split(both["patient_id"], distractors=True)
    assert len(split.gallery) == 10 and split.probe_patients.tolist() == ["13619", "13619"]
    assert both["ecg_id"].iloc[split.probe].tolist() == [18, 20]
    assert both["ecg_id"].iloc[split.gallery[split.gallery_patients == "13619"]].tolist() == [17]
