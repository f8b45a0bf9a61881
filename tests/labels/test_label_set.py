"""One LabelSet per label set: the vector a preparer writes and the targets the task reads agree."""

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from fairseq_goodviews.labels import CLASS_NAMES, MULTI_LABEL_SETS, LabelSetError, label_set
from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES


def test_rhythm_set_gives_class_indices_and_one_hot_vectors():
    rhythm = label_set("rhythm")
    assert rhythm.classes == CLASS_NAMES and rhythm.column == "label" and not rhythm.multi_label
    table = pd.DataFrame({"label": ["SB", None, "AFIB", "nope"]})
    targets, labelled = rhythm.targets(table, "t.csv")
    assert targets.tolist() == [2, -1, 0, -1] and labelled.tolist() == [True, False, True, False]
    assert rhythm.vector({"label": "SB"}).tolist() == [False, False, True, False]
    assert not rhythm.vector({}).any()
    assert label_set("rhythm", ["x", "y"]).targets(pd.DataFrame({"label": ["y"]}), "t.csv")[0].tolist() == [1]


def test_cinc2021_set_reads_the_dx_codes_and_is_challenge_scored():
    cinc = label_set("cinc2021")
    assert cinc.classes == CINC2021_CLASS_NAMES and cinc.column == "dx" and cinc.challenge_scored
    table = pd.DataFrame({"dx": ["164889003 59118001", "428750005", float("nan")]})
    targets, labelled = cinc.targets(table, "t.csv")
    assert targets.dtype == np.float32 and targets.shape == (3, 26)
    assert [CINC2021_CLASS_NAMES[k] for k in np.flatnonzero(targets[0])] == ["AF", "CRBBB|RBBB"]
    assert labelled.tolist() == [True, False, False]
    assert np.array_equal(cinc.vector({"dx": "164889003 59118001"}), targets[0] > 0)
    first_ten = ", ".join(CINC2021_CLASS_NAMES[:10])
    with pytest.raises(LabelSetError) as caught:
        cinc.targets(pd.DataFrame({"label": ["SB"]}), "t.csv")
    assert str(caught.value) == (
        f"t.csv: no 'dx' column, which the label set cinc2021 (26 classes: {first_ten} and 16 more) reads"
    )


def test_description_lists_a_short_set_whole_and_a_long_one_cut():
    assert label_set("rhythm").description == "label set rhythm (4 classes: AFIB, GSVT, SB, SR)"
    ten = [f"c{i}" for i in range(10)]
    assert label_set("labels", ten).description == f"label set labels (10 classes: {', '.join(ten)})"
    eleven = label_set("labels", [*ten, "c10"]).description
    assert eleven == f"label set labels (11 classes: {', '.join(ten)} and 1 more)"


def test_labels_set_needs_its_class_names():
    named = label_set("labels", ["a", "b"])
    assert named.column == "labels" and not named.challenge_scored
    assert named.vector({"labels": "b zzz"}).tolist() == [False, True]
    with pytest.raises(LabelSetError, match="needs its class names"):
        label_set("labels")


def test_ptbxl_set_reads_the_statement_table_only_when_asked():
    statements = shared_data() / "real" / "ptbxl" / "scp_statements.csv"
    superdiagnostic = label_set("ptbxl_superdiagnostic", scp_statements=statements)
    assert superdiagnostic.classes == ("CD", "HYP", "MI", "NORM", "STTC") and superdiagnostic.column == "scp_codes"
    assert superdiagnostic.vector({"scp_codes": "NORM SR"}).tolist() == [False, False, False, True, False]

    def never_called():
        raise AssertionError("the statement table is read by the ptbxl_* sets only")

    assert label_set("cinc2021", scp_statements=never_called).name == "cinc2021"
    assert label_set("ptbxl_form", scp_statements=lambda: statements).name == "ptbxl_form"
    with pytest.raises(LabelSetError, match=r"needs PTB-XL's scp_statements\.csv"):
        label_set("ptbxl_form")


def test_unknown_name_lists_the_known_sets():
    with pytest.raises(LabelSetError, match="unknown label set 'nope'; known: rhythm, cinc2021, labels, ptbxl_all"):
        label_set("nope")
    assert "rhythm" not in MULTI_LABEL_SETS and "ptbxl_rhythm" in MULTI_LABEL_SETS
