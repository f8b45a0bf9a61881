"""Wave attributes (Good Views strategy 5): records with similar standardised wave attributes are positives.

**Attribute vector.** By default 8 of Chapman's 11 attributes (``attr_<name>`` columns):
VentricularRate, AtrialRate, QRSDuration, QTInterval, QTCorrected, RAxis, TAxis, QRSCount.
QOnset, QOffset and TOffset are left out: they are sample positions in the median beat, and
their differences are exactly QRSDuration = 2 (QOffset - QOnset) ms and QTInterval =
2 (TOffset - QOnset) ms, so they would count the same information twice. The axes RAxis and TAxis
are angles (-90 to 270 degrees): each is encoded as (cos, sin) so that 359 and 1 degrees are
close. Set ``attributes`` to all 11 and ``angle_attributes`` to [] for the paper's plain z-scored
11-vector.

**Standardisation** uses statistics of the TRAINING split only (``fit_table``): a linear attribute
becomes (x - mean) / std; an angle's (cos, sin) pair is centred and divided by the square root of
its total variance, so the pair stays a circle (no direction favoured) and an angle weighs like one
linear attribute. A missing value is imputed with the training mean (0 after standardisation); a
record with every attribute missing has no vector: no partner and no cross-record positive.

**mode: radius** (the paper): positives are records within Euclidean distance ``radius`` (h) of
each other. In a batch the relation is computed exactly from the gathered vectors (distance <= h),
plus views of the same record, plus the anchor-partner pair (``item``). For partner draws a
partner index keeps, per record, up to ``max_candidates`` nearest records within h, and the
partner is drawn uniformly from them. Anchors with nobody within h get, with ``no_partner:
nearest``, their nearest neighbour (a positive through the explicit anchor-partner pair; counted
as ``nearest_fallbacks`` in ``describe()``) or, with ``none``, no partner (counted by the dataset
as ``items_without_partner``). On real Chapman, h = 1.0 gives 82.5% of anchors a partner with
the paper's 11-vector and 90.2% with the default vector.

The partner index never forms an N x N matrix. Up to ``exact_below`` records it compares every
pair in blocks (exact). Above, it is an inverted-file index: k-means cells of about
``index_cell_size`` records (fitted on a sample, seeded), each record compared with the members of
its ``index_probes`` nearest cells. Every stored candidate is verified exactly (distance <= h),
but a record within h in an unprobed cell is missed: the benchmark
(:mod:`fairseq_goodviews.perf.partner_index`) reports the recall (1,000,000 random 10-d
records: 73% of the up to 32 nearest records within h found, the true nearest neighbour for 85%;
raise ``index_probes`` for more). Every cell is first compared with its own members; a record
then only takes, from the other cells it probes, pairs no farther than its current
``max_candidates``-th candidate, which leaves out most pairs where records are dense (the stored
candidates are the same as without this bound). Ties are broken by record index and blocks merged
in a total order, so the index does not depend on the number of threads.

**mode: kmeans** (the paper's code): ``n_clusters`` clusters (k-means on the training vectors,
seeded); positives share a cluster; records of other splits go to the nearest training centroid.
"""

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans

from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.strategies.base import (
    ALL,
    GroupIndex,
    PositiveStrategy,
    StrategyConfig,
    group_relation,
    register_strategy,
    same,
)

MODES = ("radius", "kmeans")
NO_PARTNER = ("nearest", "none")
#: Chapman's wave attributes without the median beat's sample indices (QOnset, QOffset, TOffset),
#: which only restate QRS duration and QT.
DEFAULT_ATTRIBUTES = [name for name in ATTRIBUTE_NAMES if name not in ("QOnset", "QOffset", "TOffset")]
#: Entries of one block of pairwise distances (4 MiB of float32): small enough to stay in cache.
BLOCK_ENTRIES = 1 << 20
#: A block whose pairs within the bounds are under 1 / SPARSE_SHARE of its entries gathers them one by one.
SPARSE_SHARE = 8
#: Records whose candidates are verified at once ([rows, max_candidates, d] float64 differences).
VERIFY_ROWS = 8192


@dataclass
class AttributesConfig(StrategyConfig):
    mode: str = field(
        default="radius", metadata={"help": "radius: distance <= radius (paper) | kmeans: same cluster (paper's code)"}
    )
    attributes: List[str] = field(
        default_factory=lambda: list(DEFAULT_ATTRIBUTES),
        metadata={"help": "wave attributes (metadata columns attr_<name>) that make the vector"},
    )
    angle_attributes: List[str] = field(
        default_factory=lambda: ["RAxis", "TAxis"],
        metadata={"help": "attributes that are angles in degrees, encoded as (cos, sin)"},
    )
    radius: float = field(
        default=1.0, metadata={"help": "mode=radius: distance threshold h on the standardised vectors"}
    )
    max_candidates: int = field(
        default=32,
        metadata={"help": "mode=radius: nearest records within the radius kept per record for partner draws"},
    )
    no_partner: str = field(
        default="nearest",
        metadata={"help": "mode=radius, nobody within the radius: nearest (nearest neighbour) | none"},
    )
    n_clusters: int = field(default=40, metadata={"help": "mode=kmeans: number of clusters"})
    exact_below: int = field(
        default=20000, metadata={"help": "partner index: compare every pair up to this many records (exact)"}
    )
    index_cell_size: int = field(
        default=384, metadata={"help": "partner index above exact_below: records per k-means cell"}
    )
    index_probes: int = field(
        default=6, metadata={"help": "partner index above exact_below: nearest cells searched per record"}
    )
    index_threads: int = field(
        default=0, metadata={"help": "threads building the partner index (0 = every usable CPU)"}
    )


class AttributeScaler:
    """Encodes attribute columns as one standardised vector, with statistics fitted on the training split."""

    def __init__(self, attributes: Sequence[str], angles: Sequence[str]):
        unknown = [a for a in angles if a not in attributes]
        if unknown:
            raise ValueError(f"angle_attributes {unknown} are not among attributes {list(attributes)}")
        if not attributes:
            raise ValueError("attributes is empty")
        self.attributes = list(attributes)
        self.angles = set(angles)
        self.center: Dict[str, np.ndarray] = {}
        self.scale: Dict[str, float] = {}

    def _raw(self, table: pd.DataFrame, name: str) -> np.ndarray:
        """[n, 1] values of a linear attribute or [n, 2] (cos, sin) of an angle; NaN where missing."""
        column = f"attr_{name}"
        if column not in table.columns:
            raise ValueError(f"strategy 'attributes' needs metadata column {column!r}")
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        if name in self.angles:
            radians = np.deg2rad(values)
            return np.stack([np.cos(radians), np.sin(radians)], axis=1)
        return values[:, None]

    def fit(self, table: pd.DataFrame) -> "AttributeScaler":
        for name in self.attributes:
            raw = self._raw(table, name)
            known = raw[~np.isnan(raw).any(axis=1)]
            if len(known) == 0:
                raise ValueError(f"attribute {name!r} has no value in the training split")
            self.center[name] = known.mean(axis=0)
            spread = float(np.sqrt(known.var(axis=0).sum()))
            self.scale[name] = spread if spread > 0 else 1.0
        return self

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """[n, d] float32 vectors; missing values imputed with the training mean; NaN rows if all are missing."""
        parts, missing = [], []
        for name in self.attributes:
            raw = self._raw(table, name)
            absent = np.isnan(raw).any(axis=1)
            z = (raw - self.center[name]) / self.scale[name]
            z[absent] = 0.0
            parts.append(z)
            missing.append(absent)
        vectors = np.concatenate(parts, axis=1).astype(np.float32)
        vectors[np.all(missing, axis=0)] = np.nan
        return vectors


@dataclass
class PartnerIndex:
    """Per record: up to ``max_candidates`` records within the radius (nearest first) and its nearest neighbour."""

    candidates: np.ndarray  # [n, max_candidates] int32, -1 past n_within
    n_within: np.ndarray  # [n] int32
    nearest: np.ndarray  # [n] int32, -1 if the record has no neighbour at all
    exact: bool


def _pair_keys(distance: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (distance, index): the bits of a float32 >= 0 order like its value."""
    bits = distance.clamp(min=0.0).abs_().view(torch.int32).to(torch.int64)
    return (bits << 32) | index


def _key_distance(keys: torch.Tensor) -> torch.Tensor:
    return (keys >> 32).to(torch.int32).view(torch.float32)


def _key_index(keys: torch.Tensor) -> torch.Tensor:
    return keys & 0xFFFFFFFF


class _Search:
    """Shared state of one index build: per record, its best candidates and its nearest neighbour so far.

    Both are kept as (squared distance, index) keys, so merging blocks is a min / smallest-k
    over a total order: the result never depends on the order the threads finish in. ``bound``
    holds, per record, the largest distance a new candidate may have: the threshold, or the
    distance of its ``max_candidates``-th candidate once it has that many. It only decreases and
    never drops below the final ``max_candidates``-th distance, so a block that skips the pairs
    beyond it (read while other threads lower it) keeps every pair the result needs.
    """

    def __init__(self, x: torch.Tensor, radius: float, max_candidates: int):
        n = x.shape[0]
        self.x = x
        self.norms = (x * x).sum(1)
        # float32 distances via |q|^2 + |m|^2 - 2 q.m are loose by ~1e-5 |q|^2: keep a margin here,
        # candidates are verified in float64 at the end.
        self.threshold = (radius * (1 + 1e-3) + 1e-3) ** 2
        self.k = max_candidates
        self.empty = int(_pair_keys(torch.tensor([math.inf]), torch.tensor([0xFFFFFFFF]))[0])
        self.best = torch.full((n, max_candidates), self.empty, dtype=torch.int64)
        self.nearest = torch.full((n,), self.empty, dtype=torch.int64)
        self.bound = torch.full((n,), self.threshold, dtype=torch.float32)
        self.lock = threading.Lock()

    def block(self, queries: torch.Tensor, members: torch.Tensor, self_column: Optional[torch.Tensor]) -> None:
        """Compare ``queries`` with ``members``; ``self_column[r]`` is query r's own column (None: none is).

        The block holds |m|^2 - 2 q.m; |q|^2 is added before the comparison with ``bound``. A
        nearest-neighbour index is only looked up for rows that may improve on it (the shared
        minimum only decreases, so reading it without the lock is safe). The pairs within the rows'
        bounds are gathered as they are when they are few (no row has more than ``max_candidates``,
        or they are under 1 / ``SPARSE_SHARE`` of the block); otherwise every row is first reduced
        to its ``max_candidates`` smallest keys, which costs the same however many pairs there are.
        """
        partial = torch.addmm(self.norms[members].unsqueeze(0), self.x[queries], self.x[members].t(), alpha=-2.0)
        if self_column is not None:
            partial[torch.arange(len(queries)), self_column] = math.inf
        query_norms = self.norms[queries]
        near_d = partial.amin(dim=1).add_(query_norms)
        improving = torch.nonzero(near_d <= _key_distance(self.nearest[queries])).squeeze(1)
        nearest = _pair_keys(near_d[improving], members[partial[improving].argmin(dim=1)])
        bound = self.bound[queries]
        rows = torch.nonzero(near_d <= bound).squeeze(1)
        if len(rows):
            values = partial[rows].add_(query_norms[rows].unsqueeze(1))
            inside = values <= bound[rows].unsqueeze(1)
            counts = inside.sum(1)
            width = int(counts.max())
            if width <= self.k or SPARSE_SHARE * int(counts.sum()) <= inside.numel():  # few pairs: gather them
                row, column = torch.nonzero(inside, as_tuple=True)
                position = torch.arange(len(row)) - (torch.cumsum(counts, 0) - counts)[row]
                found = torch.full((len(rows), width), self.empty)
                found[row, position] = _pair_keys(values[row, column], members[column])
            else:  # many: each row's smallest keys
                keys = _pair_keys(values, members).masked_fill_(~inside, self.empty)
                found = keys.topk(self.k, dim=1, largest=False, sorted=False).values
        with self.lock:
            better = queries[improving]
            self.nearest[better] = torch.minimum(self.nearest[better], nearest)
            if len(rows):
                hit_queries = queries[rows]
                merged = torch.cat([self.best[hit_queries], found], dim=1)
                kept = merged.topk(self.k, dim=1, largest=False, sorted=False).values
                self.best[hit_queries] = kept
                self.bound[hit_queries] = torch.minimum(self.bound[hit_queries], _key_distance(kept.amax(dim=1)))


def _nearest_rows(points: torch.Tensor, centres: torch.Tensor, k: int) -> torch.Tensor:
    """[len(points), k] indices of each point's k nearest ``centres``, nearest first (blocked)."""
    norms = (centres * centres).sum(1)
    rows = max(1, BLOCK_ENTRIES // max(len(centres), 1))
    out = torch.empty((len(points), k), dtype=torch.int64)
    for start in range(0, len(points), rows):
        d2 = torch.addmm(norms.unsqueeze(0), points[start : start + rows], centres.t(), alpha=-2.0)
        out[start : start + rows] = d2.topk(k, dim=1, largest=False, sorted=True).indices
    return out


def _coarse_cells(vectors: np.ndarray, n_cells: int, probes: int, seed: int, pool: ThreadPoolExecutor) -> torch.Tensor:
    """[n, probes] nearest k-means cells of every record, nearest first (column 0: the record's own cell)."""
    rng = np.random.default_rng(seed)
    sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 10 * n_cells), replace=False)]
    kmeans = KMeans(n_clusters=n_cells, init="random", n_init=1, max_iter=8, random_state=seed).fit(sample)
    centroids = torch.from_numpy(kmeans.cluster_centers_.astype(np.float32))
    x = torch.from_numpy(vectors)
    probe = torch.empty((len(vectors), probes), dtype=torch.int64)
    rows = 16 * max(1, BLOCK_ENTRIES // n_cells)

    def nearest_cells(start: int) -> None:
        probe[start : start + rows] = _nearest_rows(x[start : start + rows], centroids, probes)

    list(pool.map(nearest_cells, range(0, len(vectors), rows)))
    return probe


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_partner_index(
    vectors: np.ndarray,
    radius: float,
    max_candidates: int,
    exact_below: int = 20000,
    cell_size: int = 384,
    probes: int = 6,
    seed: int = 0,
    threads: int = 0,
) -> PartnerIndex:
    """The radius partner index of ``vectors`` [n, d] (finite float32 rows); see the module docstring."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n < 2:
        nobody = np.full(n, -1, dtype=np.int32)
        return PartnerIndex(np.full((n, max_candidates), -1, dtype=np.int32), np.zeros(n, dtype=np.int32), nobody, True)
    threads = threads or _usable_cpus()
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # parallel over blocks instead: small matrices scale badly with intra-op threads
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            n_cells = math.ceil(n / max(cell_size, 1))
            exact = n <= exact_below or n_cells <= probes
            if exact:
                probe = torch.zeros((n, 1), dtype=torch.int64)
            else:
                probe = _coarse_cells(vectors, n_cells, probes, seed, pool)
            search = _Search(torch.from_numpy(vectors), radius, max_candidates)
            list(pool.map(lambda task: search.block(*task), _blocks(probe)))
            return _verified(vectors, search, radius, exact, pool)
    finally:
        torch.set_num_threads(torch_threads)


def _blocks(probe: torch.Tensor):
    """(queries, members, self_column) blocks: each cell's members against every record that probes the cell.

    First every cell against its own members (a record's own cell holds its nearest records
    most often), then against the records probing it from farther: their bounds have tightened
    by then, so those blocks leave most pairs out.
    """
    n, n_probes = probe.shape
    n_cells = int(probe.max()) + 1
    own_cell = probe[:, 0]
    by_cell = torch.argsort(own_cell, stable=True)
    member_start = _starts(own_cell, n_cells)
    for cell in range(n_cells):
        members = by_cell[member_start[cell] : member_start[cell + 1]]
        rows = max(1, BLOCK_ENTRIES // max(len(members), 1))
        for start in range(0, len(members), rows):
            chunk = members[start : start + rows]
            yield chunk, members, torch.arange(start, start + len(chunk))
    if n_probes == 1:
        return
    flat_cells = probe[:, 1:].reshape(-1)
    flat_queries = torch.arange(n).repeat_interleave(n_probes - 1)[torch.argsort(flat_cells, stable=True)]
    query_start = _starts(flat_cells, n_cells)
    for cell in range(n_cells):
        members = by_cell[member_start[cell] : member_start[cell + 1]]
        queries = flat_queries[query_start[cell] : query_start[cell + 1]]
        if len(members) == 0:
            continue
        rows = max(1, BLOCK_ENTRIES // len(members))
        for start in range(0, len(queries), rows):
            yield queries[start : start + rows], members, None


def _starts(cells: torch.Tensor, n_cells: int) -> torch.Tensor:
    """[n_cells + 1] offsets of each cell's run once ``cells`` is sorted."""
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(cells, minlength=n_cells).cumsum(0)])


def _verified(
    vectors: np.ndarray, search: _Search, radius: float, exact: bool, pool: ThreadPoolExecutor
) -> PartnerIndex:
    """Drop candidates farther than the radius in float64 and order the rest nearest first (ties: lower index)."""
    n, k = search.best.shape
    candidates = np.full((n, k), -1, dtype=np.int32)
    n_within = np.zeros(n, dtype=np.int32)

    def verify(start: int) -> None:
        stop = start + VERIFY_ROWS
        keys = torch.sort(search.best[start:stop], dim=1).values
        index = torch.where(torch.isfinite(_key_distance(keys)), _key_index(keys), -1).numpy()
        diff = vectors[np.maximum(index, 0)].astype(np.float64) - vectors[start:stop, None, :]
        within = (index >= 0) & (np.sqrt((diff * diff).sum(axis=2)) <= radius)
        # Verification only removes entries, so a stable sort keeps the (distance, index) order.
        order = np.argsort(~within, axis=1, kind="stable")
        candidates[start:stop] = np.where(
            np.take_along_axis(within, order, axis=1), np.take_along_axis(index, order, axis=1), -1
        )
        n_within[start:stop] = within.sum(axis=1)

    list(pool.map(verify, range(0, n, VERIFY_ROWS)))
    nearest_keys = search.nearest
    nearest = torch.where(torch.isfinite(_key_distance(nearest_keys)), _key_index(nearest_keys), -1).numpy()
    nearest = np.where(n_within > 0, candidates[:, 0], nearest).astype(np.int32)
    return PartnerIndex(candidates=candidates, n_within=n_within, nearest=nearest, exact=exact)


@register_strategy("attributes", dataclass=AttributesConfig)
class Attributes(PositiveStrategy):
    display_name = "Attributes"
    paper_row = "Strategy 5"
    paper_auroc = (94.2, 0.3)
    cross_record = True
    partner_advice = (
        "more records, a larger task.strategy.radius (or fewer n_clusters), or task.strategy.no_partner=nearest"
    )
    cfg: AttributesConfig

    def __init__(self, cfg: AttributesConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        super().__init__(cfg, table, fit_table, seed)
        if cfg.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
        if cfg.no_partner not in NO_PARTNER:
            raise ValueError(f"no_partner must be one of {', '.join(NO_PARTNER)}, got {cfg.no_partner!r}")
        scaler = AttributeScaler(cfg.attributes, cfg.angle_attributes).fit(fit_table)
        self.vectors = scaler.transform(table)
        self.known = ~np.isnan(self.vectors).any(axis=1)
        if cfg.mode == "radius":
            self.partner_index = self._radius_index()
        else:
            self.cluster = self._clusters(scaler.transform(fit_table))
            self.groups = GroupIndex(self.cluster)

    def _radius_index(self) -> PartnerIndex:
        """The index over records with a vector, in table row numbers."""
        rows = np.flatnonzero(self.known).astype(np.int32)
        cfg = self.cfg
        index = build_partner_index(
            self.vectors[rows],
            cfg.radius,
            cfg.max_candidates,
            cfg.exact_below,
            cfg.index_cell_size,
            cfg.index_probes,
            self.seed,
            cfg.index_threads,
        )
        n = len(self.vectors)
        candidates = np.full((n, cfg.max_candidates), -1, dtype=np.int32)
        candidates[rows] = np.where(index.candidates >= 0, rows[index.candidates], -1)
        n_within = np.zeros(n, dtype=np.int32)
        n_within[rows] = index.n_within
        nearest = np.full(n, -1, dtype=np.int32)
        nearest[rows] = np.where(index.nearest >= 0, rows[index.nearest], -1)
        return PartnerIndex(candidates=candidates, n_within=n_within, nearest=nearest, exact=index.exact)

    def _clusters(self, train_vectors: np.ndarray) -> np.ndarray:
        """Cluster of every record: k-means fitted on the training split, nearest centroid; -1 without a vector."""
        train_vectors = train_vectors[~np.isnan(train_vectors).any(axis=1)]
        if len(train_vectors) < self.cfg.n_clusters:
            raise ValueError(
                f"n_clusters={self.cfg.n_clusters} but the training split has {len(train_vectors)} records with attributes"
            )
        kmeans = KMeans(n_clusters=self.cfg.n_clusters, n_init="auto", random_state=self.seed).fit(train_vectors)
        self.centroids = kmeans.cluster_centers_
        cluster = np.full(len(self.vectors), -1, dtype=np.int64)
        if self.known.any():
            cluster[self.known] = kmeans.predict(self.vectors[self.known])
        return cluster

    def record_keys(self) -> Dict[str, np.ndarray]:
        if self.cfg.mode == "radius":
            return {"attributes": self.vectors}
        return {"cluster": self.cluster}

    def sample_partner(self, index: int, rng: np.random.Generator) -> Optional[int]:
        if self.cfg.mode == "kmeans":
            return self.groups.sample(index, rng)
        n_within = self.partner_index.n_within[index]
        if n_within > 0:
            return int(self.partner_index.candidates[index, rng.integers(n_within)])
        nearest = self.partner_index.nearest[index]
        return int(nearest) if self.cfg.no_partner == "nearest" and nearest >= 0 else None

    def positive_mask(self, meta: Mapping[str, torch.Tensor], rows: slice = ALL) -> torch.Tensor:
        if self.cfg.mode == "kmeans":
            return group_relation(meta, ["cluster"], rows) | same(meta["record"], rows)
        vectors = meta["attributes"].double()
        # Only the [n, N] distances of the requested anchors to every view.
        distance = torch.cdist(vectors[rows], vectors, compute_mode="donot_use_mm_for_euclid_dist")
        return (distance <= self.cfg.radius) | same(meta["record"], rows) | same(meta["item"], rows)

    def _nearest_fallback(self) -> np.ndarray:
        """[n] records with nobody within the radius that get their nearest neighbour as partner."""
        within = self.partner_index.n_within > 0
        return ~within & (self.partner_index.nearest >= 0) & (self.cfg.no_partner == "nearest")

    def records_without_partner(self) -> int:
        if self.cfg.mode == "kmeans":
            return int((self.groups.group_size() < 2).sum())
        return int(((self.partner_index.n_within == 0) & ~self._nearest_fallback()).sum())

    def describe(self) -> Dict[str, Any]:
        facts = {**super().describe(), "mode": self.cfg.mode, "records_without_attributes": int((~self.known).sum())}
        facts["records_without_partner"] = self.records_without_partner()
        if self.cfg.mode == "kmeans":
            return {**facts, "clusters": self.groups.n_groups}
        return {
            **facts,
            "radius": self.cfg.radius,
            "exact_index": self.partner_index.exact,
            "records_with_partner_within_radius": int((self.partner_index.n_within > 0).sum()),
            "nearest_fallbacks": int(self._nearest_fallback().sum()),
        }
