"""Figures of a study, each a self-contained interactive HTML file (vega inlined, opens
offline) and a PNG (vl-convert):

* per run: small multiples over topics, v(T) per stance with 95% CI bands over
  training steps (the paper's Figures 3-7);
* per base model: its SFT runs side by side (one column per SFT dataset);
* per SFT model: its PO runs side by side (one column per algorithm and preference data);
* drift magnitude and drift time over topics x runs (heatmaps);
* training curves (loss, learning rate, ...) of every run, read from its checkpoints.

Every look-and-feel option is a ``report.figures`` config key; only the plot rules read them.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from .. import tables
from ..topics import STANCES

# The paper's stance colours (support green, neutral blue, oppose red).
STANCE_COLOURS = {"support": "#2ca02c", "neutral": "#1f77b4", "oppose": "#d62728"}

# Defaults of the `report.figures` config block (the schema holds the same values).
FIGURE_DEFAULTS: dict[str, Any] = {
    "panel_width": 180,
    "panel_height": 120,
    "columns": 4,
    "ci_band_opacity": 0.2,
    "png_scale": 1.5,
    "focus_topics": [],
    "training_metrics": ["loss", "learning_rate", "grad_norm", "rewards/margins", "rewards/accuracies"],
}

CI_NOTE = "lines: v(T) per stance; bands: 95% bootstrap CI over questions; step 0 = the phase's start model"


def figure_options(options: dict[str, Any] | None) -> dict[str, Any]:
    return {**FIGURE_DEFAULTS, **(options or {})}


def _colour():
    import altair as alt

    return alt.Color("stance:N", title="stance", sort=list(STANCES),
                     scale=alt.Scale(domain=list(STANCES), range=[STANCE_COLOURS[s] for s in STANCES]),
                     legend=alt.Legend(orient="top", symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3))


def _trajectory_layers(opts: dict[str, Any], extra_tooltip: Iterable[str] = ()):
    import altair as alt

    x = alt.X("step:Q", title="training step", axis=alt.Axis(tickMinStep=1, grid=False))
    band = alt.Chart().mark_area(opacity=opts["ci_band_opacity"]).encode(
        x=x, y=alt.Y("ci_low:Q", title="v(T)", scale=alt.Scale(domain=[0, 1])), y2="ci_high:Q", color=_colour())
    line = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.6).encode(
        x=x, y=alt.Y("mean:Q"), color=_colour(),
        tooltip=[*extra_tooltip, "topic:N", "stance:N", "step:Q", alt.Tooltip("mean:Q", title="v(T)", format=".3f"),
                 alt.Tooltip("ci_low:Q", title="95% CI low", format=".3f"),
                 alt.Tooltip("ci_high:Q", title="95% CI high", format=".3f"),
                 alt.Tooltip("n_questions:Q", title="questions")])
    return band, line


def _points(traj: pl.DataFrame) -> pl.DataFrame:
    # null values stay in (vega skips them): every facet cell must have rows, see _complete
    return traj.sort("topic", "stance", "step")


def _complete(data: pl.DataFrame, row: str, column: str) -> pl.DataFrame:
    """Add an all-null row for every empty (row, column) facet cell.

    Vega-Lite misplaces data between cells of a faceted chart with a sorted facet when
    some cells have no rows, so no cell may be empty.
    """
    cells = data.select(row).unique().join(data.select(column).unique(), how="cross")
    missing = cells.join(data.select(row, column).unique(), on=[row, column], how="anti")
    return pl.concat([data, missing], how="diagonal_relaxed") if missing.height else data


def trajectory_chart(traj: pl.DataFrame, title: str, options: dict[str, Any] | None = None):
    """Small multiples over topics: v(T) per stance with 95% CI bands over training steps."""
    import altair as alt

    opts = figure_options(options)
    band, line = _trajectory_layers(opts)
    return (alt.layer(band, line, data=_points(traj))
            .properties(width=opts["panel_width"], height=opts["panel_height"])
            .facet(facet=alt.Facet("topic:N", title=None, header=alt.Header(
                labelFontSize=11, labelFontWeight="bold", labelLimit=opts["panel_width"] + 30)),
                columns=opts["columns"])
            .properties(title=alt.Title(title, subtitle=CI_NOTE, anchor="start")))


def _focus(traj: pl.DataFrame, topics: list[str]) -> pl.DataFrame:
    if not topics:
        return traj
    known = set(traj["topic"].unique().to_list())
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise ValueError(f"report.figures.focus_topics: unknown topics {unknown}; topics: {sorted(known)}")
    return traj.filter(pl.col("topic").is_in(topics))


def comparison_chart(trajectories: list[tuple[str, pl.DataFrame]], title: str, column_title: str,
                     options: dict[str, Any] | None = None):
    """Runs side by side: one column per run, one row per topic (report.figures.focus_topics)."""
    import altair as alt

    opts = figure_options(options)
    labels = [label for label, _ in trajectories]
    data = _complete(pl.concat([_focus(_points(t), opts["focus_topics"]).with_columns(pl.lit(label).alias("run"))
                                for label, t in trajectories]), "topic", "run")
    band, line = _trajectory_layers(opts, extra_tooltip=["run:N"])
    return (alt.layer(band, line, data=data)
            .properties(width=opts["panel_width"], height=opts["panel_height"])
            .facet(column=alt.Column("run:N", sort=labels, title=column_title,
                                     header=alt.Header(labelFontSize=12, labelFontWeight="bold")),
                   row=alt.Row("topic:N", title=None, header=alt.Header(
                       labelAngle=0, labelAlign="left", labelFontSize=11, labelLimit=220)))
            .properties(title=alt.Title(title, subtitle=CI_NOTE, anchor="start")))


def sweep_chart(trajectories: list[tuple[str, pl.DataFrame]], key: str, title: str,
                options: dict[str, Any] | None = None):
    """One setting's values side by side (paper Figures 15-17): v(T) of support over training
    steps, one line per value, one panel per topic (report.figures.focus_topics)."""
    import altair as alt

    opts = figure_options(options)
    labels = [label for label, _ in trajectories]
    data = pl.concat([_focus(_points(t), opts["focus_topics"]).filter(pl.col("stance") == "support")
                      .with_columns(pl.lit(label).alias(key)) for label, t in trajectories])
    colour = alt.Color(f"{key}:N", sort=labels, title=key, legend=alt.Legend(orient="top"))
    x = alt.X("step:Q", title="training step", axis=alt.Axis(tickMinStep=1, grid=False))
    band = alt.Chart().mark_area(opacity=opts["ci_band_opacity"]).encode(
        x=x, y=alt.Y("ci_low:Q", title="v(T) of support", scale=alt.Scale(domain=[0, 1])), y2="ci_high:Q",
        color=colour)
    line = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.6).encode(
        x=x, y="mean:Q", color=colour,
        tooltip=[f"{key}:N", "topic:N", "step:Q", alt.Tooltip("mean:Q", title="v(T)", format=".3f")])
    return (alt.layer(band, line, data=data).properties(width=opts["panel_width"], height=opts["panel_height"])
            .facet(facet=alt.Facet("topic:N", title=None), columns=opts["columns"])
            .properties(title=alt.Title(title, subtitle=CI_NOTE, anchor="start")))


def heatmap_chart(study: pl.DataFrame, run_labels: dict[str, str], options: dict[str, Any] | None = None):
    """Drift magnitude (diverging, centred on 0) and drift time (0-1) over topics x runs, per stance."""
    import altair as alt

    opts = figure_options(options)
    order = list(run_labels.values())
    data = study.with_columns(pl.col("run").replace_strict(run_labels).alias("run_label"))
    largest = data["magnitude"].abs().max()
    bound = max(0.1, math.ceil((largest or 0.0) * 10) / 10)
    cell = {"width": max(28 * len(order), 120), "height": 16 * max(data["topic"].n_unique(), 1)}

    def panel(field: str, title: str, legend_title: str, scale, fmt: str, threshold: float):
        x = alt.X("run_label:N", title=None, sort=order, axis=alt.Axis(labelAngle=-35, labelLimit=260))
        y = alt.Y("topic:N", title=None, axis=alt.Axis(labelLimit=260))
        rect = alt.Chart().mark_rect(stroke="white").encode(
            x=x, y=y, color=alt.Color(f"{field}:Q", title=legend_title, scale=scale, legend=alt.Legend(orient="right")),
            tooltip=["run_label:N", "topic:N", "stance:N", alt.Tooltip("magnitude:Q", format=".3f"),
                     alt.Tooltip("drift_time:Q", format=".2f"), alt.Tooltip("start:Q", format=".3f"),
                     alt.Tooltip("end:Q", format=".3f"), "extremum_step:Q", "total_steps:Q"])
        text = alt.Chart().mark_text(fontSize=9).encode(
            x=x, y=y, text=alt.Text(f"{field}:Q", format=fmt),
            color=alt.condition(f"abs(datum.{field}) > {threshold}", alt.value("white"), alt.value("#222")))
        return (alt.layer(rect, text, data=data).properties(**cell)
                .facet(column=alt.Column("stance:N", sort=list(STANCES), title=None,
                                         header=alt.Header(labelFontSize=12, labelFontWeight="bold")))
                .properties(title=alt.Title(title, anchor="start")))

    magnitude = panel("magnitude", "drift magnitude M = v(end) − v(start)", "magnitude",
                      alt.Scale(scheme="redblue", domain=[-bound, bound], domainMid=0), ".2f", 0.6 * bound)
    drift_time = panel("drift_time", "drift time (fraction of the phase's steps)", "drift time",
                       alt.Scale(scheme="greys", domain=[0, 1]), ".2f", 0.6)
    return (alt.vconcat(magnitude, drift_time).resolve_scale(color="independent")
            .properties(title=alt.Title("Drift over topics × runs", anchor="start",
                                        subtitle=f"magnitude colour scale ±{bound:g}")))


def training_chart(logs: list[tuple[str, pl.DataFrame]], options: dict[str, Any] | None = None):
    """Training curves: one row per logged metric (report.figures.training_metrics), one column per run."""
    import altair as alt

    opts = figure_options(options)
    wanted = opts["training_metrics"]
    labels = [label for label, _ in logs]
    frames = [log.filter(pl.col("metric").is_in(wanted)).with_columns(pl.lit(label).alias("run"))
              for label, log in logs]
    data = pl.concat(frames) if frames else pl.DataFrame(schema={"step": pl.Int64, "metric": pl.String,
                                                                 "value": pl.Float64, "run": pl.String})
    data = data.drop_nulls("value")
    title = alt.Title("Training curves", subtitle="as logged by the trainer in each checkpoint", anchor="start")
    if data.is_empty():
        return alt.Chart(pl.DataFrame({"text": ["no training log entries"]})).mark_text().encode(
            text="text:N").properties(title=title, width=300, height=40)
    metrics = [m for m in wanted if m in set(data["metric"].to_list())]
    data = _complete(data, "metric", "run")
    return (alt.Chart(data).mark_line(point=alt.OverlayMarkDef(size=14), color="#444", strokeWidth=1.4)
            .encode(x=alt.X("step:Q", title="training step", axis=alt.Axis(tickMinStep=1)),
                    y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False), axis=alt.Axis(format="~g")),
                    tooltip=["run:N", "metric:N", "step:Q", alt.Tooltip("value:Q", format=".4g")])
            .properties(width=opts["panel_width"], height=max(60, opts["panel_height"] * 2 // 3))
            .facet(row=alt.Row("metric:N", sort=metrics, title=None,
                               header=alt.Header(labelAngle=0, labelAlign="left", labelFontSize=11)),
                   column=alt.Column("run:N", sort=labels, title=None,
                                     header=alt.Header(labelFontSize=11, labelFontWeight="bold", labelLimit=300)))
            .resolve_scale(x="independent", y="independent")  # safe: _complete leaves no cell empty
            .properties(title=title))


def save_chart(chart, *, html_path: str, png_path: str, options: dict[str, Any] | None = None,
               title: str = "valuedrift figure") -> None:
    """Self-contained interactive HTML (inline=True: opens without network) and a PNG, each
    written beside its target and renamed into place (a killed job leaves no half figure)."""
    opts = figure_options(options)

    def temporary(path: str) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p.with_name(f".{p.stem}.tmp-{os.getpid()}{p.suffix}")  # the suffix tells altair the format

    tmp_html, tmp_png = temporary(html_path), temporary(png_path)
    chart.save(str(tmp_html), inline=True)
    page = tmp_html.read_text(encoding="utf-8")
    if "<title>" not in page:
        tmp_html.write_text(page.replace("<head>", f"<head>\n  <title>{html.escape(title)}</title>", 1),
                            encoding="utf-8")
    chart.save(str(tmp_png), scale_factor=opts["png_scale"])
    os.replace(tmp_html, html_path)
    os.replace(tmp_png, png_path)


# file-in, file-out steps of the figure rules

def trajectory_figure(trajectory_path: str, *, html: str, png: str, title: str,
                      options: dict[str, Any] | None = None) -> None:
    chart = trajectory_chart(tables.read(trajectory_path, "trajectory"), title, options)
    save_chart(chart, html_path=html, png_path=png, options=options, title=title)


def comparison_figure(trajectory_paths: list[str], labels: list[str], *, html: str, png: str, title: str,
                      column_title: str, options: dict[str, Any] | None = None) -> None:
    trajs = [(label, tables.read(p, "trajectory")) for label, p in zip(labels, trajectory_paths, strict=True)]
    save_chart(comparison_chart(trajs, title, column_title, options), html_path=html, png_path=png, options=options,
               title=title)


def sweep_figure(trajectory_paths: list[str], values: list[str], key: str, *, html: str, png: str, title: str,
                 options: dict[str, Any] | None = None) -> None:
    trajs = [(value, tables.read(p, "trajectory")) for value, p in zip(values, trajectory_paths, strict=True)]
    save_chart(sweep_chart(trajs, key, title, options), html_path=html, png_path=png, options=options, title=title)


def heatmap_figure(study_path: str, run_labels: dict[str, str], *, html: str, png: str,
                   options: dict[str, Any] | None = None) -> None:
    study = tables.read(study_path, "study_drift")
    save_chart(heatmap_chart(study, run_labels, options), html_path=html, png_path=png, options=options,
               title="Drift over topics × runs")


def training_figure(log_paths: list[str], labels: list[str], *, html: str, png: str,
                    options: dict[str, Any] | None = None) -> None:
    logs = [(label, tables.read(p, "training_log")) for label, p in zip(labels, log_paths, strict=True)]
    save_chart(training_chart(logs, options), html_path=html, png_path=png, options=options, title="Training curves")


