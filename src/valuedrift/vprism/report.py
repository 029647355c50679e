"""The cluster report: what each stage kept, every cluster (size, name, n-grams, category)
and a 2-D UMAP scatter coloured by cluster (altair; HTML and PNG) for the HTML report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from .. import atomic

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
    configured = pl.DataFrame({"category": list(stats.get("sample", {}).get("available", {}))}, schema={"category": pl.String})
    per_cat = (pl.concat([configured, filtered.select("category")]).unique()
                 .join(filtered.group_by("category").agg(pl.len().alias("selected"),
                                                        pl.col("value_laden").sum().alias("value_laden")),
                       on="category", how="left")
                 .join(questions.group_by("category").len("sampled"), on="category", how="left")
                 .with_columns(pl.col("selected", "value_laden", "sampled").fill_null(0).cast(pl.Int64))
                 .sort("category"))
    return {
        "stages": stage_counts(stats),
        "questions": len(clusters),
        "noise": int((clusters["cluster"] < 0).sum()),
        "clusters": table.drop("examples").sort("cluster").to_dicts(),
        "examples": {str(c): e for c, e in zip(table["cluster"], table["examples"])},
        "categories": per_cat.to_dicts(),
    }


TABLEAU20 = ["#4c78a8", "#9ecae9", "#f58518", "#ffbf79", "#54a24b", "#88d27a", "#b79a20", "#f2cf5b", "#439894",
             "#83bcb6", "#e45756", "#ff9d98", "#79706e", "#bab0ac", "#d67195", "#fcbfd2", "#b279a2", "#d6a5c9",
             "#9e765f", "#d8b5a5"]


def scatter(clusters: pl.DataFrame, names: pl.DataFrame, mapping: pl.DataFrame):
    """2-D UMAP scatter, one colour per cluster (legend in cluster order), noise in grey."""
    import altair as alt

    label = names.join(mapping.select("cluster", "category"), on="cluster", how="left").select(
        "cluster", pl.format("{}: {}", "cluster", pl.col("name").fill_null("(unnamed)").str.slice(0, 40))
        .alias("cluster_name"), pl.col("category").fill_null("(not selected)"))
    data = (clusters.select("x", "y", "cluster", "question", "probability")
                    .join(label, on="cluster", how="left")
                    .with_columns(pl.col("cluster_name").fill_null("noise"), pl.col("category").fill_null("(noise)")))
    domain = label.sort("cluster")["cluster_name"].to_list()
    colours = [TABLEAU20[i % len(TABLEAU20)] for i in range(len(domain))]
    if (data["cluster"] < 0).any():
        domain, colours = domain + ["noise"], colours + ["#d9d9d9"]
    alt.data_transformers.disable_max_rows()
    return alt.Chart(data.to_pandas()).mark_circle(size=22, opacity=0.75).encode(
        x=alt.X("x:Q", title="UMAP 1", axis=alt.Axis(labels=False, ticks=False, grid=False)),
        y=alt.Y("y:Q", title="UMAP 2", axis=alt.Axis(labels=False, ticks=False, grid=False)),
        color=alt.Color("cluster_name:N", title="cluster", scale=alt.Scale(domain=domain, range=colours),
                        legend=alt.Legend(columns=1, symbolLimit=0, labelLimit=260)),
        tooltip=["cluster_name:N", "category:N", "question:N", alt.Tooltip("probability:Q", format=".2f")],
    ).properties(width=620, height=480, title=f"V-PRISM: {len(data)} questions, 2-D UMAP, coloured by HDBSCAN cluster")


def write_report(report: dict[str, Any], chart, json_path: str | Path, html_path: str | Path,
                 png_path: str | Path | None = None) -> None:
    atomic.write_json(json_path, report, default=str)
    with atomic.atomic_path(html_path) as tmp:
        chart.save(str(tmp), format="html")
    if png_path:
        with atomic.atomic_path(png_path) as tmp:
            chart.save(str(tmp), format="png", scale_factor=1.5)
    log.info("cluster report: %s, %s", json_path, html_path)
