"""The report's section for the controlled experiment (paper Section 6, Appendices E and K).

It reads only the report rule's input ``controlled`` (``valuedrift.controlled.report_inputs``)
and the study's long drift table: the synthetic data's counts, each support- vs oppose-aligned
pair of runs side by side (Figures 7, 11-14) with their drift contrast, the Tables 13-16 shape,
the dataset stance distributions (Figure 19) and the value-gap histograms and statistics
(Figure 20). A study without any of these has no such section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from .. import controlled, paper_tables, paths, tables
from ..topics import STANCES
from .sections import Context, Section, register


def _share(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, decimals: int) -> str:
    return "–" if v is None else paper_tables.fmt(v, decimals)


def synthetic_view(retrieval: dict[str, Any], generation: dict[str, Any]) -> dict[str, Any]:
    """Counts of the synthetic data: prompts retrieved per category, generations by status, pairs kept."""
    per_cat = generation.get("pairs_by_category") or {}
    return {"prompts": retrieval["prompts"], "retrieved": retrieval["retrieved"],
            "min_similarity": retrieval["min_similarity"], "generations": generation["generations"],
            "status": sorted(generation["status"].items()), "dropped": generation["dropped_statuses"],
            "pairs": generation["pairs"], "identical": generation["pairs_identical"],
            "categories": [[c, n, per_cat.get(c, 0)] for c, n in retrieval["by_category"].items()]}


def contrast_rows(contrast: pl.DataFrame, decimals: int) -> list[list[str]]:
    """Per topic (and the mean over topics): per stance, the drift magnitude of the
    support-aligned run, of the oppose-aligned run and their difference."""
    cols = ("magnitude_support_aligned", "magnitude_oppose_aligned", "magnitude_difference")
    mean = contrast.group_by("stance").agg(*[pl.col(c).mean() for c in cols]).with_columns(
        pl.lit("mean over topics").alias("topic"))
    rows = []
    for topic in [*sorted(contrast["topic"].unique().to_list()), "mean over topics"]:
        part = (mean if topic == "mean over topics" else contrast).filter(pl.col("topic") == topic)
        by_stance = {r["stance"]: r for r in part.iter_rows(named=True)}
        rows.append([topic, *[_num(by_stance.get(s, {}).get(c), decimals) for s in STANCES for c in cols]])
    return rows


def stance_rows(table: pl.DataFrame) -> list[list[Any]]:
    """Per dataset and role, over all topics: datapoints and the share of each stance."""
    rows = table.filter(pl.col("topic") == "all topics").sort("dataset", "role")
    return [[r["dataset"], r["role"], r["n"], *[_share(r[f"share_{s}"]) for s in STANCES]]
            for r in rows.iter_rows(named=True)]


def gap_rows(table: pl.DataFrame, decimals: int) -> list[list[Any]]:
    stats = [c for c in table.columns if c not in ("dataset", "pairs")]
    return [[r["dataset"], r["pairs"], *[(_share(r[c]) if c.startswith("share") else _num(r[c], decimals + 1))
                                         for c in stats]] for r in table.iter_rows(named=True)]


def controlled_view(context: Context) -> dict[str, Any] | None:
    """The section's data from ``controlled.report_layout``: each of its roles whose files are all
    among the rule's input ``controlled`` (None: no such input)."""
    files = set(context.inputs.get("controlled") or [])
    if not files:
        return None
    from .page import figure, paper_table_view

    links, decimals = context.links, context.decimals
    lay = controlled.report_layout(context.study, every_role=True)
    shown = lambda role: bool(role) and set(role.values()) <= files  # noqa: E731
    view: dict[str, Any] = {"synthetic": None, "alignments": [], "tables": [], "stance": None, "gap": None}
    if shown(synth := lay["synthetic"]):
        view["synthetic"] = synthetic_view(json.loads(Path(synth["retrieval"]).read_text()),
                                           json.loads(Path(synth["generation"]).read_text()))
        view["synthetic"]["files"] = [links(synth["retrieval"]), links(synth["generation"]),
                                      links(paths.synthetic_pairs_file())]
    for group in lay["alignments"]:
        f = group["files"]
        if not shown(f):
            continue
        label = controlled.alignment_label(group)
        view["alignments"].append({
            "label": label,
            "figure": figure(links, f["png"], f["html"], f"{label}: support-aligned (left) and oppose-aligned (right) "
                             "synthetic data from the same SFT checkpoint, v(T) per topic",
                             f"fig-aligned-{group['base']}-{group['sft']}-{group['name']}"),
            "rows": contrast_rows(pl.read_csv(f["table"]), decimals),
            "files": [links(f["table"], "drift contrast (CSV)"), links(paths.drift_table(group["support"]),
                      "support-aligned drift.csv"), links(paths.drift_table(group["oppose"]), "oppose-aligned drift.csv")]})
    aligned = [t for t in lay["tables"] if shown(t["files"])]
    if aligned:
        study_drift = tables.read(context.inputs["study_drift"], "study_drift")
        view["tables"] = [{"table": paper_table_view(paper_tables.build(t["spec"], study_drift), decimals),
                           "files": [links(p, ext.upper()) for ext, p in t["files"].items()]} for t in aligned]
    if shown(stance := lay["stance"]):
        view["stance"] = {"rows": stance_rows(pl.read_csv(stance["table"])), "link": links(stance["table"]),
                          "figure": figure(links, stance["png"], stance["html"],
                                           "Stance distribution of the training data per topic (Figure 19)",
                                           "fig-dataset-stance")}
    if shown(gap := lay["gap"]):
        gaps = pl.read_csv(gap["table"])
        view["gap"] = {"header": ["dataset", "pairs", *[c for c in gaps.columns if c not in ("dataset", "pairs")]],
                       "rows": gap_rows(gaps, decimals), "link": links(gap["table"]),
                       "figure": figure(links, gap["png"], gap["html"],
                                        "Value gap of preference pairs: histograms of the Euclidean distance between "
                                        "chosen and rejected stance vectors, one per dataset (Figure 20)",
                                        "fig-value-gap")}
    return view


register(Section("controlled", "Controlled experiment", "controlled_section.html.j2", controlled_view, before="runs"))
