"""Figures (altair) and the study's static HTML report."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from . import paths, tables
from .topics import STANCES

STANCE_COLOURS = {"support": "#1b9e77", "neutral": "#7570b3", "oppose": "#d95f02"}

MECHANICS_NOTE = (
    "This demo trains a 135M-parameter model for a handful of steps on small authored data, "
    "and the same tiny model judges the stances of its own responses. The numbers show the "
    "mechanics of the pipeline (training checkpoints, sampling, judging, drift metrics), "
    "not real values of any model: a model this small is a poor judge and its stances are "
    "mostly noise. Run config/paper.yaml with GPT-4o (or a strong local judge) for findings."
)


def trajectory_chart(traj: pl.DataFrame, title: str):
    """Small multiples over topics: v(T) per stance with 95% CI bands over training steps."""
    import altair as alt

    data = traj.drop_nulls("mean").to_pandas()
    colour = alt.Color("stance:N", scale=alt.Scale(domain=list(STANCES), range=list(STANCE_COLOURS.values())),
                       title="stance")
    base = alt.Chart(data).encode(x=alt.X("step:Q", title="training step"))
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("ci_low:Q", title="v(T)", scale=alt.Scale(domain=[0, 1])),
                                              y2="ci_high:Q", color=colour)
    line = base.mark_line(point=True).encode(
        y="mean:Q", color=colour,
        tooltip=["topic", "stance", "step", alt.Tooltip("mean:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"), "n_questions"])
    return (alt.layer(band, line).properties(width=180, height=120)
            .facet(facet=alt.Facet("topic:N", title=None), columns=4)
            .properties(title=title))


def trajectory_figure(trajectory_path: str, *, html: str, png: str, title: str) -> None:
    chart = trajectory_chart(tables.read(trajectory_path, "trajectory"), title)
    chart.save(html, inline=True)  # self-contained: opens without network
    chart.save(png, scale_factor=1.5)


def _table_html(df: pl.DataFrame, float_fmt: str = "{:.2f}") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"<td class=num>{float_fmt.format(v)}</td>")
            else:
                cells.append(f"<td>{'' if v is None else html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def drift_wide(drift: pl.DataFrame) -> pl.DataFrame:
    """Paper layout: one row per topic, magnitude and drift time per stance."""
    wide = drift.pivot(on="stance", index="topic", values=["magnitude", "drift_time"])
    order = [f"{m}_{s}" for m in ("magnitude", "drift_time") for s in STANCES]
    return wide.select("topic", *[c for c in order if c in wide.columns]).sort("topic")


def write_report(*, runs: list[str], output: str, settings: dict[str, Any], config_summary: dict[str, Any]) -> None:
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, out.parent)  # noqa: E731
    sections = []
    for run in runs:
        drift = tables.read(paths.drift_table(run), "drift")
        png, fig = paths.trajectory_plot(run, "png"), paths.trajectory_plot(run, "html")
        sections.append(
            f"<section id='{html.escape(run)}'><h2>{html.escape(run)}</h2>"
            f"<p><a href='{rel(fig)}'>interactive figure</a> · <a href='{rel(paths.drift_table(run))}'>drift.csv</a>"
            f" · <a href='{rel(paths.trajectory_file(run))}'>trajectory.parquet</a></p>"
            f"<img src='{rel(png)}' alt='stance trajectories of {html.escape(run)}'>"
            f"<h3>Drift magnitude and drift time</h3>{_table_html(drift_wide(drift))}</section>")
    note = settings.get("note") or MECHANICS_NOTE
    toc = "".join(f"<li><a href='#{html.escape(r)}'>{html.escape(r)}</a></li>" for r in runs)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(settings.get('title', 'valuedrift'))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;font-size:.9em;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:.2em .5em}}
td.num{{text-align:right;font-variant-numeric:tabular-nums}}img{{max-width:100%}}
.note{{background:#fff4e5;border-left:4px solid #f0a030;padding:.6em 1em}}pre{{background:#f6f6f6;padding:.6em;overflow:auto}}</style>
</head><body><h1>{html.escape(settings.get('title', 'valuedrift report'))}</h1>
<p class="note"><strong>Read this first.</strong> {html.escape(note)}</p>
<p>Drift magnitude M = v(end) − v(start) of a phase; drift time = fraction of the phase's steps until the
stance first lies within the 95% CI of its extremum (paper, Section 3).</p>
<h2>Runs</h2><ul>{toc}</ul>{''.join(sections)}
<h2>Study configuration</h2><pre>{html.escape(json.dumps(config_summary, indent=2, default=str))}</pre>
</body></html>"""
    out.write_text(page, encoding="utf-8")
