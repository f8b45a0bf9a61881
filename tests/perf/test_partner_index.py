"""The partner-index benchmark's scikit-learn baseline: same vectors, same radius, the same capped question."""

import json

import numpy as np

from fairseq_goodviews.cli import perf
from fairseq_goodviews.perf import partner_index
from fairseq_goodviews.strategies.attributes import build_partner_index

#: Points on a line: within 0.6 of each other are 0-1, 1-2 (0.5 apart) and nobody else.
LINE = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [3.0, 0.0], [3.7, 0.0]], dtype=np.float32)


def test_exact_capped_sets_leave_the_anchor_out_and_break_ties_by_index():
    distances = np.array([0.0, 0.5, 0.5, 0.2])
    indices = np.array([4, 9, 1, 7])
    assert partner_index.capped_set(distances, indices, anchor=4, k=2).tolist() == [7, 1]


def test_both_searches_agree_on_a_case_whose_answer_is_known():
    index = build_partner_index(LINE, radius=0.6, max_candidates=4)
    assert [index.candidates[i, : index.n_within[i]].tolist() for i in range(5)] == [[1], [0, 2], [1], [], []]
    for algorithm in partner_index.SKLEARN_ALGORITHMS:
        result = partner_index.versus_sklearn(LINE, index, 1.0, 0.6, np.arange(5), algorithm, 1, 1024.0)
        assert result["candidate_recall_vs_sklearn"] == 1.0 and result["partner_count_agreement"] == 1.0
        assert result["anchors_with_partner_sklearn"] == 3 / 5 and result["mean_within_radius"] == 4 / 5
        assert result["full_radius_query_measured"] and result["agreement_on"] == "every record"


def test_a_missed_neighbour_lowers_the_recall_against_sklearn():
    index = build_partner_index(LINE, radius=0.6, max_candidates=4)
    index.candidates[1] = [0, -1, -1, -1]  # record 2 forgotten
    index.n_within[1] = 1
    result = partner_index.versus_sklearn(LINE, index, 1.0, 0.6, np.arange(5), "kd_tree", 1, 1024.0)
    assert result["candidate_recall_vs_sklearn"] == 3 / 4 and result["partner_count_agreement"] == 4 / 5


def test_the_full_query_is_skipped_when_its_output_would_be_too_large():
    vectors = np.random.default_rng(0).standard_normal((400, 2)).astype(np.float32)
    index = build_partner_index(vectors, radius=0.5, max_candidates=8)
    sample = np.arange(0, 400, 8)
    result = partner_index.versus_sklearn(vectors, index, 1.0, 0.5, sample, "kd_tree", 1, 0.0)
    assert not result["full_radius_query_measured"] and result["full_query_peak_rss_increase_mb"] is None
    assert not result["full_kneighbors_measured"]
    assert result["radius_query_all_s"] == result["sample_radius_query_s"] * 8
    assert result["agreement_on"] == "50 sampled anchors" and result["candidate_recall_vs_sklearn"] == 1.0


def test_a_real_run_writes_both_timings_the_ratio_and_the_recall(tmp_path, capsys):
    argv = ["partner-index", "--out", str(tmp_path), "--distribution", "normal", "--records", "5000", "--dim", "3"]
    assert perf.main([*argv, "--check", "20", "--threads", "1", "--sklearn-anchors", "300"]) == 0
    result = json.loads((tmp_path / "partner_index.json").read_text())
    versus = result["versus_sklearn"]
    assert versus["anchors"] == 300 and [r["algorithm"] for r in versus["results"]] == ["kd_tree", "ball_tree"]
    for column in versus["results"]:
        assert column["fit_s"] > 0 and column["radius_query_all_s"] > 0 and column["full_kneighbors_measured"]
        assert column["ratio"] == column["sklearn_s"] / result["build_s"]
        assert column["candidate_recall_vs_sklearn"] == 1.0  # 5,000 records: the index is exact
        assert column["peak_rss_increase_mb"] >= 0 and column["mean_within_radius"] > 1
    out = capsys.readouterr().out
    assert "ratio sklearn / ours" in out and "recall of sklearn's capped sets" in out


def test_no_versus_sklearn_leaves_it_out(tmp_path):
    argv = ["partner-index", "--out", str(tmp_path), "--distribution", "normal", "--records", "300"]
    assert perf.main([*argv, "--check", "5", "--threads", "1", "--no-versus-sklearn"]) == 0
    assert json.loads((tmp_path / "partner_index.json").read_text())["versus_sklearn"] is None
