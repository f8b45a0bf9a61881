import math

import torch

from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce


def _hand_loss(z, positive, tau):
    z = [[c / math.sqrt(sum(c2 * c2 for c2 in v)) for c in v] for v in z]
    losses = []
    for i, zi in enumerate(z):
        sims = [sum(a * b for a, b in zip(zi, zj, strict=True)) / tau for zj in z]
        denominator = sum(math.exp(s) for j, s in enumerate(sims) if j != i)
        numerator = sum(math.exp(s) for j, s in enumerate(sims) if j != i and positive[i][j])
        losses.append(-math.log(numerator / denominator) if numerator > 0 else 0.0)
    return losses


def test_loss_equals_hand_computed_value_on_a_tiny_batch():
    z = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.2]]
    positive = [[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    tau = 0.5
    loss, n_positive = multi_positive_info_nce(
        torch.tensor(z), torch.tensor(z), torch.tensor(positive, dtype=torch.bool), 0, tau
    )
    expected = _hand_loss(z, positive, tau)
    assert torch.allclose(loss, torch.tensor(expected), atol=1e-5)
    assert n_positive.tolist() == [2, 1, 1, 0]


def test_anchor_without_positive_contributes_nothing_and_stays_finite():
    z = torch.randn(5, 8, requires_grad=True)
    positive = torch.zeros(5, 5, dtype=torch.bool)
    positive[0, 1] = positive[1, 0] = True
    loss, n_positive = multi_positive_info_nce(z, z, positive, 0, 0.07)
    assert torch.isfinite(loss).all()
    assert loss[2:].abs().sum() == 0 and (n_positive[2:] == 0).all()
    loss.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_self_similarity_is_masked_even_if_marked_positive():
    z = torch.randn(4, 3)
    positive = torch.eye(4, dtype=torch.bool)
    loss, n_positive = multi_positive_info_nce(z, z, positive, 0, 0.1)
    assert (n_positive == 0).all() and (loss == 0).all()


def test_single_positive_reduces_to_nt_xent():
    torch.manual_seed(0)
    z = torch.randn(6, 4)
    pairs = torch.tensor([1, 0, 3, 2, 5, 4])
    positive = torch.zeros(6, 6, dtype=torch.bool)
    positive[torch.arange(6), pairs] = True
    loss, _ = multi_positive_info_nce(z, z, positive, 0, 0.2)
    zn = torch.nn.functional.normalize(z, dim=1)
    logits = (zn @ zn.t() / 0.2).masked_fill(torch.eye(6, dtype=torch.bool), -float("inf"))
    reference = torch.nn.functional.cross_entropy(logits, pairs, reduction="none")
    assert torch.allclose(loss, reference, atol=1e-5)


def test_anchors_offset_into_a_larger_candidate_set():
    torch.manual_seed(1)
    z = torch.randn(6, 4)
    positive = torch.rand(6, 6) > 0.5
    full, _ = multi_positive_info_nce(z, z, positive, 0, 0.3)
    part, _ = multi_positive_info_nce(z[2:4], z, positive[2:4], 2, 0.3)
    assert torch.allclose(full[2:4], part, atol=1e-6)


def test_bf16_autocast_keeps_logits_and_loss_in_float32_without_nan():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    positive = torch.zeros(8, 8, dtype=torch.bool)
    positive[0, 1] = positive[1, 0] = positive[2, 3] = True  # anchors 3..7 have no positive (3 only as target)
    reference, _ = multi_positive_info_nce(z, z, positive, 0, 0.07)
    half = z.to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = multi_positive_info_nce(half, half, positive, 0, 0.07)
    assert loss.dtype == torch.float32
    # Only the bf16 rounding of the inputs remains (bf16 logits at tau = 0.07 would be off by ~0.5).
    assert torch.allclose(loss, reference, atol=0.05)
    loss.sum().backward()
    assert torch.isfinite(half.grad.float()).all()


def test_local_rows_against_the_global_batch_give_the_global_loss_rows():
    torch.manual_seed(1)
    z = torch.randn(10, 4)
    positive = torch.rand(10, 10) < 0.3
    full, full_count = multi_positive_info_nce(z, z, positive, 0, 0.1)
    local, local_count = multi_positive_info_nce(z[4:7], z, positive[4:7], 4, 0.1)
    assert torch.allclose(local, full[4:7]) and torch.equal(local_count, full_count[4:7])


def test_a_loss_without_any_anchor_with_a_positive_is_logged_as_unmeasured_not_zero():
    """A validation split without pairs must not log 0 (fairseq would keep it as the best loss)."""
    from fairseq import metrics

    from fairseq_goodviews.criterions.multi_positive_infonce import MultiPositiveInfoNceCriterion

    no_pairs = {"loss": 0.0, "anchors_with_positive": 0, "anchors_without_positive": 8, "positives": 0, "views": 8}
    with_pairs = {**no_pairs, "loss": 6.0, "anchors_with_positive": 4, "anchors_without_positive": 4}
    with metrics.aggregate(new_root=True) as unmeasured:
        MultiPositiveInfoNceCriterion.reduce_metrics([no_pairs])
        MultiPositiveInfoNceCriterion.reduce_metrics([no_pairs])
    assert unmeasured.get_smoothed_values()["loss"] == math.inf
    with metrics.aggregate(new_root=True) as mixed:  # batches without pairs carry no weight
        MultiPositiveInfoNceCriterion.reduce_metrics([no_pairs])
        MultiPositiveInfoNceCriterion.reduce_metrics([with_pairs])
        MultiPositiveInfoNceCriterion.reduce_metrics([no_pairs])
    assert mixed.get_smoothed_values()["loss"] == 1.5
