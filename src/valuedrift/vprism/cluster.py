"""Stages 4-5: UMAP to 20 dimensions, then HDBSCAN with soft membership (paper, App. A.1).

UMAP is the seeded step (``umap.seed``; a fixed ``random_state`` makes it deterministic,
single-threaded). HDBSCAN is deterministic given its input. Its soft membership vectors
(``hdbscan.all_points_membership_vectors``) give every question a probability for every
cluster; with ``hdbscan.soft_noise_threshold`` set, a noise point whose strongest
membership reaches the threshold joins that cluster (the soft assignment the paper relies
on); null keeps HDBSCAN's hard labels.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import polars as pl

log = logging.getLogger("valuedrift")


class ClusterError(RuntimeError):
    pass


def reduce(embeddings: np.ndarray, settings: dict[str, Any], n_components: int | None = None) -> np.ndarray:
    """UMAP projection to ``n_components`` (default ``settings['n_components']``) dimensions."""
    import umap

    n = len(embeddings)
    dims = int(n_components or settings["n_components"])
    neighbours = min(int(settings["n_neighbors"]), n - 1)
    if n <= dims + 1:
        raise ClusterError(f"UMAP to {dims} dimensions needs more than {dims + 1} questions, got {n}")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        reducer = umap.UMAP(n_components=dims, n_neighbors=neighbours, min_dist=float(settings["min_dist"]),
                            metric=settings["metric"], random_state=int(settings["seed"]),
                            init="spectral" if n > dims + 10 else "random")
        out = reducer.fit_transform(embeddings).astype(np.float32)
    log.info("UMAP %d x %d -> %d dims in %.1f s", n, embeddings.shape[1], dims, time.perf_counter() - t0)
    return out


def cluster(reduced: np.ndarray, settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hard labels (-1 = noise, after the optional soft assignment), the probability of the
    assigned cluster, and the soft membership matrix (questions x clusters)."""
    import hdbscan

    t0 = time.perf_counter()
    model = hdbscan.HDBSCAN(min_cluster_size=int(settings["min_cluster_size"]),
                            min_samples=settings.get("min_samples"),
                            cluster_selection_method=settings["cluster_selection_method"],
                            cluster_selection_epsilon=float(settings.get("cluster_selection_epsilon", 0.0)),
                            prediction_data=True).fit(reduced)
    labels = model.labels_.astype(np.int64)
    n_clusters = int(labels.max()) + 1
    if n_clusters < 1:
        raise ClusterError(f"HDBSCAN found no cluster in {len(reduced)} questions with min_cluster_size "
                           f"{settings['min_cluster_size']}; lower questions.vprism.hdbscan.min_cluster_size")
    membership = hdbscan.all_points_membership_vectors(model).astype(np.float32).reshape(len(reduced), n_clusters)
    probability = model.probabilities_.astype(np.float32)
    threshold = settings.get("soft_noise_threshold")
    if threshold is not None:
        best = membership.argmax(axis=1)
        strength = membership.max(axis=1)
        move = (labels == -1) & (strength >= float(threshold))
        labels[move] = best[move]
        probability[move] = strength[move]
        log.info("soft assignment: %d noise questions joined a cluster (membership >= %s)", int(move.sum()), threshold)
    log.info("HDBSCAN: %d clusters, %d noise of %d questions in %.1f s", n_clusters, int((labels == -1).sum()),
             len(labels), time.perf_counter() - t0)
    return labels, probability, membership


def cluster_table(questions: pl.DataFrame, labels: np.ndarray, probability: np.ndarray, membership: np.ndarray,
                  coords: np.ndarray) -> pl.DataFrame:
    """One row per question: its cluster, membership and 2-D plot position."""
    return questions.select("prompt_id", "question").with_columns(
        pl.Series("row", np.arange(len(labels)), dtype=pl.Int64),
        pl.Series("cluster", labels, dtype=pl.Int64),
        pl.Series("probability", probability, dtype=pl.Float32),
        pl.Series("membership", membership.tolist(), dtype=pl.List(pl.Float32)),
        pl.Series("x", coords[:, 0], dtype=pl.Float32),
        pl.Series("y", coords[:, 1], dtype=pl.Float32),
    )
