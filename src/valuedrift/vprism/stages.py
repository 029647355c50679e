"""File-in, file-out V-PRISM stages, one per Snakemake rule (workflow/rules/vprism.smk).

Every stage takes the ``questions.vprism`` config block (``vp``) and paths, and writes
its artifact plus a small JSON of counts (``results/vprism/stats/<stage>.json``) that the
cluster report gathers. LLM stages take an optional ``client`` (default: the shared
cached client built from config) so tests can hand one in.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .. import atomic, tables
from ..llm import LLMClient
from . import cluster as clustering
from . import embed as embedding
from .ask import client_for

log = logging.getLogger("valuedrift")


def settings(vp: dict[str, Any] | None) -> dict[str, Any]:
    """``vp`` with every default of the config schema filled in (a copy)."""
    from ..config import _fill_defaults, schema

    vp = copy.deepcopy(vp or {})
    _fill_defaults(vp, schema()["properties"]["questions"]["properties"]["vprism"])
    return vp


def categories(vp: dict[str, Any]) -> dict[str, str]:
    from ..topics import CATEGORY_TOPICS

    return dict(vp.get("categories") or CATEGORY_TOPICS)


def _write_stats(path: str | Path, stats: dict[str, Any]) -> None:
    atomic.write_json(path, stats, default=str)


def _write(df: pl.DataFrame, path: str | Path) -> None:
    atomic.write_parquet(df, path)


def load(vp: dict[str, Any], output: str, stats: str, *, workdir: str | Path = ".") -> None:
    from .load import load_prompts

    df, counts = load_prompts(settings(vp)["prompts"], workdir)
    _write(df, output)
    _write_stats(stats, {**counts, "output": len(df)})


def _llm_table_stage(run, stage: str, vp: dict[str, Any], source: str, output: str, stats: str,
                     client: LLMClient | None) -> None:
    """A stage that maps one table to another with its LLM: rephrase, filter."""
    vp = settings(vp)
    df, counts = run(pl.read_parquet(source), client or client_for(vp, stage), vp[stage])
    _write(df, output)
    _write_stats(stats, counts)


def rephrase(vp: dict[str, Any], prompts: str, output: str, stats: str, *, client: LLMClient | None = None) -> None:
    from .rephrase import rephrase as run

    _llm_table_stage(run, "rephrase", vp, prompts, output, stats, client)


def embed(vp: dict[str, Any], rephrased: str, output: str, stats: str) -> None:
    vp = settings(vp)
    questions = pl.read_parquet(rephrased)["question"].to_list()
    vectors = embedding.embed(questions, vp["embedder"])
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    atomic.save_npy(output, vectors)
    _write_stats(stats, {"embedder": embedding.resolve(vp["embedder"]), "input": len(questions),
                         "output": len(vectors), "dim": int(vectors.shape[1])})


def reduce(vp: dict[str, Any], embeddings: str, reduced: str, coords: str) -> None:
    """UMAP to ``umap.n_components`` (for clustering) and to 2-D (for the plot only; a little
    ``min_dist`` so that the points of a cluster do not collapse onto one spot)."""
    vp = settings(vp)
    vectors = np.load(embeddings)
    low = clustering.reduce(vectors, vp["umap"])
    plane = clustering.reduce(vectors, {**vp["umap"], "min_dist": max(vp["umap"]["min_dist"], 0.1)}, n_components=2)
    atomic.save_npy(reduced, low)
    atomic.save_npy(coords, plane)


def cluster(vp: dict[str, Any], rephrased: str, reduced: str, coords: str, output: str, stats: str) -> None:
    vp = settings(vp)
    questions = pl.read_parquet(rephrased)
    labels, probability, membership = clustering.cluster(np.load(reduced), vp["hdbscan"])
    table = clustering.cluster_table(questions, labels, probability, membership, np.load(coords))
    _write(table, output)
    sizes = table.filter(pl.col("cluster") >= 0).group_by("cluster").len().sort("cluster")
    _write_stats(stats, {"input": len(table), "output": int((labels >= 0).sum()), "noise": int((labels < 0).sum()),
                         "clusters": len(sizes), "sizes": dict(zip(map(str, sizes["cluster"]), sizes["len"]))})


def name(vp: dict[str, Any], clusters: str, output: str, stats: str, *, client: LLMClient | None = None) -> None:
    from .name import name_clusters

    vp = settings(vp)
    table, counts = name_clusters(pl.read_parquet(clusters), client or client_for(vp, "name"), vp["name"])
    _write(table, output)
    _write_stats(stats, counts)


def select(vp: dict[str, Any], clusters: str, names: str, mapping: str, output: str, stats: str, *,
           embeddings: str | None = None, client: LLMClient | None = None) -> None:
    from .select import select as run

    vp = settings(vp)
    method = vp["select"]["method"]
    embed_fn = vectors = None
    if method == "embedding":
        model = embedding.load_model(vp["embedder"])
        embed_fn = lambda texts: embedding.embed(texts, vp["embedder"], model=model)  # noqa: E731
        vectors = np.load(embeddings) if vp["select"]["by"] == "centroid" else None
    if method == "llm" and client is None:
        client = client_for(vp, "select")
    cmap, selected, counts = run(pl.read_parquet(names), pl.read_parquet(clusters), categories(vp), vp["select"],
                                 embed=embed_fn, embeddings=vectors, client=client)
    _write(cmap, mapping)
    _write(selected, output)
    _write_stats(stats, counts)


def value_filter(vp: dict[str, Any], selected: str, output: str, stats: str, *,
                 client: LLMClient | None = None) -> None:
    from .filter import value_filter as run

    _llm_table_stage(run, "filter", vp, selected, output, stats, client)


def sample(vp: dict[str, Any], filtered: str, output: str, stats: str) -> None:
    from .sample import sample as run

    vp = settings(vp)
    questions, counts = run(pl.read_parquet(filtered), categories(vp), vp["sample"])
    tables.write(questions, output, "questions")
    _write_stats(stats, counts)


def report(clusters: str, names: str, mapping: str, filtered: str, questions: str, stats: dict[str, str],
           json_path: str, html_path: str, png_path: str | None = None) -> None:
    from . import report as rep

    c, n, m = pl.read_parquet(clusters), pl.read_parquet(names), pl.read_parquet(mapping)
    counts = {stage: json.loads(Path(p).read_text()) for stage, p in stats.items()}
    body = rep.build_report(c, n, m, pl.read_parquet(filtered), tables.read(questions, "questions"), counts)
    rep.write_report(body, rep.scatter(c, n, m), json_path, html_path, png_path)
