"""Stage 6: describe each cluster by its top TF-IDF n-grams, then let an LLM name it.

N-grams are class-based: the questions of a cluster are joined into one document, so an
n-gram scores high when it is frequent in this cluster and rare in the others. The LLM
sees the n-grams and the cluster's most central questions (highest membership
probability; no sampling, so no seed) and replies with a short name (prompt text in
``prompts/vprism_name.txt``). A failed call leaves the name empty (recorded, not invented).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import polars as pl

from .. import prompts
from ..llm import LLMClient
from .ask import ask, first_line

log = logging.getLogger("valuedrift")


def top_ngrams(docs: list[str], k: int, ngram_max: int) -> list[list[str]]:
    """The ``k`` highest-scoring 1..ngram_max-grams of each document."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, ngram_max), stop_words="english", sublinear_tf=True)
    try:
        matrix = vec.fit_transform(docs)
    except ValueError:  # only stop words
        return [[] for _ in docs]
    vocab = np.array(vec.get_feature_names_out())
    out = []
    for row in matrix:
        row = row.toarray().ravel()
        order = np.lexsort((vocab, -row))  # by score, ties alphabetically: deterministic
        out.append([str(vocab[j]) for j in order[:k] if row[j] > 0])
    return out


def describe(clusters: pl.DataFrame, settings: dict[str, Any]) -> pl.DataFrame:
    """``cluster, size, ngrams, examples`` for every cluster (noise excluded)."""
    members = clusters.filter(pl.col("cluster") >= 0)
    grouped = (members.sort(["cluster", "probability", "row"], descending=[False, True, False])
                      .group_by("cluster", maintain_order=True)
                      .agg(pl.len().alias("size"), pl.col("question").alias("questions")))
    grams = top_ngrams([" ".join(qs) for qs in grouped["questions"]], int(settings["top_ngrams"]),
                       int(settings["ngram_max"]))
    return grouped.with_columns(
        pl.Series("ngrams", grams, dtype=pl.List(pl.String)),
        pl.col("questions").list.head(int(settings["examples"])).alias("examples"),
    ).drop("questions").with_columns(pl.col("size").cast(pl.Int64))


def name_prompt(ngrams: list[str], examples: list[str]) -> str:
    return prompts.load("vprism_name").format(ngrams=", ".join(ngrams) or "(none)",
                                              examples="\n".join(f"- {q}" for q in examples))


def name_clusters(clusters: pl.DataFrame, client: LLMClient, settings: dict[str, Any]) -> tuple[pl.DataFrame, dict]:
    table = describe(clusters, settings)
    results, stats = ask(client, [name_prompt(g, e) for g, e in zip(table["ngrams"], table["examples"])],
                         max_tokens=int(settings["max_tokens"]), what="name clusters")
    names = [first_line(r.text).rstrip(".")[:80] or None if r.error is None else None for r in results]
    table = table.with_columns(pl.Series("name", names, dtype=pl.String))
    for row in table.iter_rows(named=True):
        log.info("cluster %d (%d questions): %s | %s", row["cluster"], row["size"], row["name"],
                 ", ".join(row["ngrams"][:6]))
    stats = {**stats, "clusters": len(table), "unnamed": sum(n is None for n in names),
             "output": int(table["size"].sum())}  # questions in named clusters (naming drops none)
    return table, stats
