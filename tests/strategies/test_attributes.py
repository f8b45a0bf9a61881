"""Attributes: records within distance h of each other in standardised wave-attribute space (or in the
same k-means cluster) are the positives; statistics come from the training split only."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.strategies.attributes import DEFAULT_ATTRIBUTES, AttributeScaler, build_partner_index
from strategies.helpers import load, make_task, off_diagonal, pairwise

ANGLES = ("RAxis", "TAxis")


def standardised(train: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """The attribute vectors computed independently: z-scores with train statistics, angles as a
    (cos, sin) pair scaled by its total train variance, missing values at the train mean."""
    parts, missing = [], []
    for name in DEFAULT_ATTRIBUTES:

        def raw(frame, name=name):
            values = frame[f"attr_{name}"].to_numpy(dtype=float)
            if name in ANGLES:
                return np.stack([np.cos(np.radians(values)), np.sin(np.radians(values))], axis=1)
            return values[:, None]

        fit = raw(train)
        fit = fit[~np.isnan(fit).any(axis=1)]
        z = (raw(table) - fit.mean(axis=0)) / np.sqrt(fit.var(axis=0).sum())
        absent = np.isnan(z).any(axis=1)
        z[absent] = 0.0
        parts.append(z)
        missing.append(absent)
    vectors = np.concatenate(parts, axis=1)
    vectors[np.all(missing, axis=0)] = np.nan
    return vectors


def within_radius(vectors: np.ndarray, radius: float) -> np.ndarray:
    distance = np.sqrt(((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2))
    return distance <= radius  # NaN rows (no attributes) are never within


@pytest.mark.parametrize("no_partner", ["nearest", "none"])
def test_radius_positive_mask_and_partners(ramp_dataset, no_partner):
    radius = 3.0
    loaded = load(ramp_dataset, {"_name": "attributes", "radius": radius, "no_partner": no_partner})
    vectors = standardised(loaded.table, loaded.table)
    near = within_radius(vectors, radius)
    np.fill_diagonal(near, False)
    views = loaded.views
    expected = near[np.ix_(views["record"], views["record"])] | pairwise(views["record"]) | pairwise(views["item"])
    assert np.array_equal(off_diagonal(loaded.mask), off_diagonal(expected))
    assert 0 < near.any(axis=1).sum() < len(near) - 1, "the radius should leave some records alone"

    strategy = loaded.strategy
    alone = ~near.any(axis=1)
    no_vector = np.isnan(vectors).any(axis=1)
    assert no_vector.sum() == 1 and strategy.describe()["records_without_attributes"] == 1
    for record in range(len(vectors)):
        partner = strategy.sample_partner(record, np.random.default_rng(record))
        if near[record].any():
            assert near[record, partner]
        elif no_partner == "nearest" and not no_vector[record]:
            distance = np.sqrt(((vectors - vectors[record]) ** 2).sum(axis=1))
            distance[record] = np.inf
            assert partner == np.nanargmin(distance)
        else:
            assert partner is None
    fallbacks = int((alone & ~no_vector).sum())
    described = strategy.describe()
    if no_partner == "nearest":
        assert described["nearest_fallbacks"] == fallbacks and loaded.batch["items_without_partner"] == 1
        anchors = (views["record"] == views["item"]).to_numpy() & ~no_vector[views["record"]]
        assert off_diagonal(loaded.mask).any(axis=1)[anchors].all()
    else:
        assert described["nearest_fallbacks"] == 0 and loaded.batch["items_without_partner"] == int(alone.sum())


def test_radius_index_is_exact_up_to_max_candidates(ramp_dataset):
    radius, cap = 4.0, 3
    loaded = load(ramp_dataset, {"_name": "attributes", "radius": radius, "max_candidates": cap})
    vectors = standardised(loaded.table, loaded.table)
    index = loaded.strategy.partner_index
    assert index.exact
    for record, vector in enumerate(vectors):
        distance = np.sqrt(((vectors - vector) ** 2).sum(axis=1))
        distance[record] = np.inf
        within = np.flatnonzero(distance <= radius)
        nearest_first = within[np.lexsort((within, distance[within]))][:cap]
        assert index.candidates[record, : index.n_within[record]].tolist() == nearest_first.tolist()


def test_standardisation_and_index_come_from_the_training_split_only(ramp_dataset, tmp_path):
    changed = Path(shutil.copytree(ramp_dataset, tmp_path / "changed"))
    for split in ("valid", "test"):
        table = read_metadata(changed, split)
        attributes = [c for c in table.columns if c.startswith("attr_")]
        table[attributes] = table[attributes] * 3 + 50
        table.to_csv(changed / f"{split}.csv", index=False)

    for strategy in (
        {"_name": "attributes", "radius": 3.0},
        {"_name": "attributes", "mode": "kmeans", "n_clusters": 4},
    ):
        original = load(ramp_dataset, strategy).strategy
        moved = load(changed, strategy).strategy
        assert np.array_equal(original.vectors, moved.vectors, equal_nan=True)
        if strategy.get("mode") == "kmeans":
            assert np.array_equal(original.cluster, moved.cluster)
        else:
            assert np.array_equal(original.partner_index.candidates, moved.partner_index.candidates)
        valid = load(changed, strategy, split="valid")
        expected = standardised(read_metadata(changed, "train"), read_metadata(changed, "valid"))
        assert np.allclose(valid.strategy.vectors, expected, atol=1e-5)


def test_kmeans_clusters_are_seeded_and_other_splits_take_the_nearest_train_centroid(ramp_dataset):
    strategy = {"_name": "attributes", "mode": "kmeans", "n_clusters": 4}
    first, again = load(ramp_dataset, strategy), load(ramp_dataset, strategy)
    assert np.array_equal(first.strategy.cluster, again.strategy.cluster)
    assert np.array_equal(first.strategy.centroids, again.strategy.centroids)
    cluster = first.strategy.cluster[first.views["record"]]
    expected = (pairwise(cluster) & (cluster >= 0)[:, None]) | pairwise(first.views["record"])
    assert np.array_equal(off_diagonal(first.mask), off_diagonal(expected))

    valid = load(ramp_dataset, strategy, split="valid")
    vectors = standardised(first.table, valid.table)
    nearest = np.argmin(((vectors[:, None, :] - first.strategy.centroids[None]) ** 2).sum(axis=2), axis=1)
    assert np.array_equal(valid.strategy.cluster, nearest)
    with pytest.raises(ValueError, match="n_clusters=40"):
        make_task(ramp_dataset, {"_name": "attributes", "mode": "kmeans"}).load_dataset("train")


def test_angles_are_encoded_on_the_circle():
    train = pd.DataFrame({"attr_RAxis": [0.0, 90.0, 180.0, 270.0], "attr_QRSDuration": [80.0, 90.0, 100.0, 110.0]})
    scaler = AttributeScaler(["RAxis", "QRSDuration"], ["RAxis"]).fit(train)
    vectors = scaler.transform(pd.DataFrame({"attr_RAxis": [359.0, 1.0, 179.0], "attr_QRSDuration": [95.0] * 3}))
    assert np.linalg.norm(vectors[0] - vectors[1]) < 0.05
    assert np.linalg.norm(vectors[0] - vectors[2]) > 1.9
    assert vectors.shape == (3, 3)


def test_approximate_index_keeps_only_true_candidates_and_finds_most(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((4000, 5)).astype(np.float32)
    vectors[11] = vectors[12]  # duplicates are each other's nearest
    options = dict(exact_below=0, cell_size=64, probes=6, seed=3)
    index = build_partner_index(vectors, 0.8, 8, threads=1, **options)
    assert not index.exact
    again = build_partner_index(vectors, 0.8, 8, threads=2, **options)
    assert np.array_equal(index.candidates, again.candidates) and np.array_equal(index.nearest, again.nearest)
    assert index.candidates[11, 0] == 12 and index.candidates[12, 0] == 11
    found = expected = 0
    for record in range(0, 4000, 7):
        distance = np.sqrt(((vectors.astype(np.float64) - vectors[record]) ** 2).sum(axis=1))
        distance[record] = np.inf
        stored = index.candidates[record, : index.n_within[record]]
        assert (distance[stored] <= 0.8).all() and np.all(np.diff(distance[stored]) >= -1e-6)
        assert (index.candidates[record, index.n_within[record] :] == -1).all()
        within = np.flatnonzero(distance <= 0.8)
        found += len(np.intersect1d(stored, within[np.argsort(distance[within])][:8]))
        expected += min(len(within), 8)
    assert found / expected > 0.8
