"""Stage 7: map clusters to the configured categories and keep their members.

The paper selected 11 of its 22 named clusters by hand. Three ways here
(``questions.vprism.select.method``):

  embedding  (default) embed each category as "<category>: <topic>" with the builder's
             embedder, and each cluster either as "<LLM name>: <top n-grams>" (``by: name``,
             default) or as the mean embedding of its questions (``by: centroid``: does not
             depend on the namer, robust to a weak LLM); a cluster goes to its most similar
             category when the cosine similarity reaches ``min_similarity``.
  llm        the LLM picks a category (or none) per cluster from its name, n-grams and
             sample questions (``prompts/vprism_select.txt``); score 1 for a pick.
  manual     ``clusters: {category: [cluster ids]}``, as the paper did; read the cluster
             report first (ids change with the data, the embedder and the UMAP seed).

Each cluster joins at most one category; ``clusters_per_category`` keeps only a
category's best-scoring clusters (1 = the paper's one cluster per category; null = all).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from .. import prompts
from ..llm import LLMClient
from .ask import ask

log = logging.getLogger("valuedrift")

Embed = Callable[[Sequence[str]], np.ndarray]


class SelectError(ValueError):
    pass


def cluster_text(name: str | None, ngrams: list[str]) -> str:
    return f"{name}: {', '.join(ngrams)}" if name else ", ".join(ngrams)


def embedding_scores(names: pl.DataFrame, categories: dict[str, str], embed: Embed,
                     centroids: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarity, clusters x categories; clusters by name, or by ``centroids`` when given."""
    cats = embed([f"{c}: {t}" for c, t in categories.items()])
    if centroids is None:
        clus = embed([cluster_text(n, g) for n, g in zip(names["name"], names["ngrams"])])
    else:
        clus = centroids / np.linalg.norm(centroids, axis=1, keepdims=True).clip(1e-12)
    return clus @ cats.T


def cluster_centroids(names: pl.DataFrame, clusters: pl.DataFrame, embeddings: np.ndarray) -> np.ndarray:
    """Mean question embedding of each cluster of ``names`` (rows of ``clusters`` index ``embeddings``)."""
    rows = clusters.group_by("cluster").agg("row")
    by_cluster = dict(zip(rows["cluster"], rows["row"]))
    return np.stack([embeddings[by_cluster[c].to_list()].mean(axis=0) for c in names["cluster"]])


def llm_scores(names: pl.DataFrame, categories: dict[str, str], client: LLMClient,
               settings: dict[str, Any]) -> tuple[np.ndarray, dict]:
    options = "\n".join(f"{i}. {c}" for i, c in enumerate(categories, 1))
    asks = [prompts.load("vprism_select").format(name=n or "(unnamed)", ngrams=", ".join(g), options=options,
                                                 examples="\n".join(f"- {q}" for q in e))
            for n, g, e in zip(names["name"], names["ngrams"], names["examples"])]
    results, stats = ask(client, asks, max_tokens=int(settings["max_tokens"]), what="select categories")
    scores = np.zeros((len(names), len(categories)))
    for i, res in enumerate(results):
        m = re.search(r"\d+", res.text or "") if res.error is None else None
        if m and 1 <= int(m.group()) <= len(categories):
            scores[i, int(m.group()) - 1] = 1.0
    return scores, stats


def manual_scores(names: pl.DataFrame, categories: dict[str, str], mapping: dict[str, list[int]]) -> np.ndarray:
    unknown = sorted(set(mapping) - set(categories))
    if unknown:
        raise SelectError(f"select.clusters names unknown categories {unknown}; categories: {list(categories)}")
    ids = names["cluster"].to_list()
    scores = np.zeros((len(names), len(categories)))
    for j, cat in enumerate(categories):
        for cid in mapping.get(cat, []):
            if cid not in ids:
                raise SelectError(f"select.clusters[{cat!r}]: no cluster {cid}; clusters: {ids}")
            scores[ids.index(cid), j] = 1.0
    return scores


def assign(scores: np.ndarray, threshold: float, per_category: int | None) -> list[int | None]:
    """Category index per cluster (None = unselected)."""
    best = scores.argmax(axis=1)
    choice = [int(b) if scores[i, b] >= threshold and scores[i, b] > 0 else None for i, b in enumerate(best)]
    if per_category:
        for j in set(c for c in choice if c is not None):
            mine = sorted((i for i, c in enumerate(choice) if c == j), key=lambda i: (-scores[i, j], i))
            for i in mine[per_category:]:
                choice[i] = None
    return choice


def select(names: pl.DataFrame, clusters: pl.DataFrame, categories: dict[str, str], settings: dict[str, Any], *,
           embed: Embed | None = None, embeddings: np.ndarray | None = None,
           client: LLMClient | None = None) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(cluster -> category map, selected questions, stats). ``embeddings``: the questions'
    embeddings (rows as in ``clusters.row``), needed for ``by: centroid``."""
    method = settings["method"]
    stats: dict[str, Any] = {"method": method}
    if method == "embedding":
        by = settings.get("by", "name")
        stats["by"] = by
        centroids = cluster_centroids(names, clusters, embeddings) if by == "centroid" else None
        scores, threshold = embedding_scores(names, categories, embed, centroids), float(settings["min_similarity"])
    elif method == "llm":
        (scores, llm_stats), threshold = llm_scores(names, categories, client, settings), 1.0
        stats.update(llm_stats)
    elif method == "manual":
        scores, threshold = manual_scores(names, categories, settings.get("clusters") or {}), 1.0
    else:
        raise SelectError(f"unknown select method {method!r}; use embedding, llm or manual")
    cats = list(categories)
    per_cat = settings.get("clusters_per_category") if method != "manual" else None
    choice = assign(scores, threshold, per_cat)
    mapping = names.select("cluster", "size", "name").with_columns(
        pl.Series("category", [cats[c] if c is not None else None for c in choice], dtype=pl.String),
        pl.Series("score", [float(scores[i].max()) if len(cats) else 0.0 for i in range(len(names))],
                  dtype=pl.Float64),
        pl.Series("best_category", [cats[int(b)] for b in scores.argmax(axis=1)], dtype=pl.String))
    chosen = mapping.filter(pl.col("category").is_not_null()).select("cluster", "category")
    selected = (clusters.join(chosen, on="cluster", how="inner")
                        .with_columns(pl.col("category").replace_strict(categories).alias("topic"))
                        .select("prompt_id", "question", "cluster", "category", "topic", "probability")
                        .sort("category", "cluster", "prompt_id"))
    empty = [c for c in cats if c not in set(chosen["category"])]
    if empty:
        log.warning("select: no cluster for %d categories: %s", len(empty), "; ".join(empty))
    for row in mapping.sort("cluster").iter_rows(named=True):
        log.info("cluster %d %r -> %s (score %.3f)", row["cluster"], row["name"], row["category"], row["score"])
    stats.update({"clusters": len(names), "selected_clusters": len(chosen), "input": len(clusters),
                  "output": len(selected), "categories_without_cluster": empty})
    return mapping, selected, stats
