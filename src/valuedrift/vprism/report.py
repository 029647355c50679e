"""The cluster report: what each stage kept, every cluster (size, name, n-grams, category)
and a 2-D UMAP scatter coloured by cluster (altair; HTML and PNG) for the HTML report."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

log = logging.getLogger("valuedrift")

STAGES = ("load", "rephrase", "embed", "cluster", "name", "select", "filter", "sample")


def stage_counts(stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for stage in STAGES:
        s = stats.get(stage, {})
        kept = s.get("output", s.get("kept"))
        rows.append({"stage": stage, "kept": kept, "llm_calls": s.get("llm_calls", 0),
                     **{k: v for k, v in s.items() if k not in ("output", "kept", "llm_calls")}})
    return rows


def build_report(clusters: pl.DataFrame, names: pl.DataFrame, mapping: pl.DataFrame, filtered: pl.DataFrame,
                 questions: pl.DataFrame, stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    table = names.join(mapping.select("cluster", "category", "score", "best_category"), on="cluster", how="left")
    per_cat = (filtered.group_by("category")
                       .agg(pl.len().alias("selected"), pl.col("value_laden").sum().alias("value_laden"))
                       .join(questions.group_by("category").len("sampled"), on="category", how="left")
                       .with_columns(pl.col("sampled").fill_null(0))
                       .sort("category"))
    return {
        "stages": stage_counts(stats),
        "questions": len(clusters),
        "noise": int((clusters["cluster"] < 0).sum()),
        "clusters": table.drop("examples").sort("cluster").to_dicts(),
        "examples": {str(c): e for c, e in zip(table["cluster"], table["examples"])},
        "categories": per_cat.to_dicts(),
    }


def scatter(clusters: pl.DataFrame, names: pl.DataFrame, mapping: pl.DataFrame):
    import altair as alt

    label = names.join(mapping.select("cluster", "category"), on="cluster", how="left").select(
        "cluster", pl.format("{}: {}", "cluster", pl.col("name").fill_null("(unnamed)")).alias("cluster_name"),
        pl.col("category").fill_null("(not selected)"))
    data = (clusters.select("x", "y", "cluster", "question", "probability")
                    .join(label, on="cluster", how="left")
                    .with_columns(pl.col("cluster_name").fill_null("noise"),
                                  pl.col("category").fill_null("(noise)"))
                    .to_pandas())
    alt.data_transformers.disable_max_rows()
    points = alt.Chart(data).mark_circle(size=18, opacity=0.7).encode(
        x=alt.X("x:Q", title="UMAP 1", axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("y:Q", title="UMAP 2", axis=alt.Axis(labels=False, ticks=False)),
        color=alt.Color("cluster_name:N", title="cluster", legend=alt.Legend(columns=1, symbolLimit=60)),
        tooltip=["cluster_name:N", "category:N", "question:N", alt.Tooltip("probability:Q", format=".2f")],
    ).properties(width=620, height=480, title="V-PRISM questions: 2-D UMAP, coloured by HDBSCAN cluster")
    return points


def write_report(report: dict[str, Any], chart, json_path: str | Path, html_path: str | Path,
                 png_path: str | Path | None = None) -> None:
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(report, indent=2, default=str))
    chart.save(str(html_path))
    if png_path:
        chart.save(str(png_path), format="png", scale_factor=1.5)
    log.info("cluster report: %s, %s", json_path, html_path)
