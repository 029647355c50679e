"""Figures (altair) and the study's static HTML report.

Figures, each written as a self-contained interactive HTML file (vega inlined, opens
offline) and a PNG (vl-convert):

* per run: small multiples over topics, v(T) per stance with 95% CI bands over
  training steps (the paper's Figures 3-7);
* per base model: its SFT runs side by side (one column per SFT dataset);
* per SFT model: its PO runs side by side (one column per algorithm and preference data);
* drift magnitude and drift time over topics x runs (heatmaps);
* training curves (loss, learning rate, ...) of every run, read from its checkpoints.

``results/report/index.html`` is one static page (no server) over all of it. Every
look-and-feel option is a ``report`` config key; only the report rules depend on them.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from . import paper_tables, paths, tables
from .paths import Run
from .topics import STANCES

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


def study_label(run: Run) -> str:
    """A run's name across the study: ``base · SFT data`` or ``base · SFT data → ALGO (preference)``."""
    head = f"{run.base} · {run.sft}"
    return head if run.is_sft else f"{head} → {paper_tables.run_label(run)}"


def sft_groups(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """SFT runs per base model (compared side by side: one column per SFT dataset)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.is_sft:
            groups.setdefault(run.base, []).append(run)
    return groups


def po_groups(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """PO runs per SFT model (base, sft) (compared side by side: one column per algorithm and preference)."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if not run.is_sft:
            groups.setdefault((run.base, run.sft), []).append(run)
    return groups


def study_figures(runs: Iterable[Run], ext: str) -> list[str]:
    """The cross-run figures of a study: heatmap, comparisons, training curves."""
    runs = list(runs)
    out = [paths.drift_heatmap(ext)]
    out += [paths.sft_comparison_plot(base, ext) for base in sft_groups(runs)]
    out += [paths.po_comparison_plot(base, sft, ext) for base, sft in po_groups(runs)]
    return out + [paths.training_plot(ext)]


def analysis_outputs(runs: Iterable[Run]) -> list[str]:
    """Every cross-run artifact of a study (the report's inputs besides the per-run ones)."""
    runs = list(runs)
    out = [paths.study_drift_table(), *study_figures(runs, "html"), *study_figures(runs, "png")]
    out += [paper_tables.table_paths(spec, ext) for spec in paper_tables.table_specs(runs)
            for ext in ("csv", "md", "tex")]
    return out + [paths.training_log(r.model_path) for r in runs]


# --- figures -----------------------------------------------------------------------------

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
    """Self-contained interactive HTML (inline=True: opens without network) and a PNG."""
    opts = figure_options(options)
    for p in (html_path, png_path):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    chart.save(html_path, inline=True)
    page = Path(html_path).read_text(encoding="utf-8")
    if "<title>" not in page:
        Path(html_path).write_text(page.replace("<head>", f"<head>\n  <title>{html.escape(title)}</title>", 1),
                                   encoding="utf-8")
    chart.save(png_path, scale_factor=opts["png_scale"])


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


def heatmap_figure(study_path: str, run_labels: dict[str, str], *, html: str, png: str,
                   options: dict[str, Any] | None = None) -> None:
    study = tables.read(study_path, "study_drift")
    save_chart(heatmap_chart(study, run_labels, options), html_path=html, png_path=png, options=options,
               title="Drift over topics × runs")


def training_figure(log_paths: list[str], labels: list[str], *, html: str, png: str,
                    options: dict[str, Any] | None = None) -> None:
    logs = [(label, tables.read(p, "training_log")) for label, p in zip(labels, log_paths, strict=True)]
    save_chart(training_chart(logs, options), html_path=html, png_path=png, options=options, title="Training curves")


# --- training logs and judge accounting ----------------------------------------------------

def _read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def training_log(model_keys: list[str]) -> pl.DataFrame:
    """(step, metric, value) of every numeric entry the trainer logged in a run's checkpoints.

    Each checkpoint's ``valuedrift_segment.json`` holds the log of the segment that made
    it; ``trainer_state.json`` (``log_history``, the run so far) is the fallback. A later
    checkpoint's value for a step wins.
    """
    values: dict[tuple[int, str], float] = {}
    for key in model_keys:
        segment = _read_json(paths.segment_info_file(key)) or {}
        entries = segment.get("log") or (_read_json(paths.trainer_state_file(key)) or {}).get("log_history") or []
        for entry in entries:
            step = entry.get("step")
            if step is None:
                continue
            for metric, value in entry.items():
                if metric != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    values[(int(step), metric)] = float(value)
    rows = [{"step": s, "metric": m, "value": v if math.isfinite(v) else None} for (s, m), v in sorted(values.items())]
    return pl.DataFrame(rows, schema={"step": pl.Int64, "metric": pl.String, "value": pl.Float64})


def write_training_log(model_keys: list[str], output: str) -> None:
    tables.write(training_log(model_keys), output, "training_log")


ACCOUNTING_ORDER = ["backend", "judge_backend", "responses", "unscorable", "calls", "cache_hits", "prompt_tokens",
                    "completion_tokens", "failures", "cost", "seconds", "mean_option_mass"]
SUMMABLE = {"responses", "unscorable", "calls", "cache_hits", "prompt_tokens", "completion_tokens", "failures",
            "cost", "seconds"}


def judge_accounting(model_keys: list[str]) -> list[dict[str, Any]]:
    """One row per judged model from results/stances/{model}.accounting.json (missing files skipped).

    ``judged`` is the model whose responses were judged; the file's ``model`` (the judge) is ``judge_model``.
    """
    rows = []
    for key in model_keys:
        data = _read_json(paths.judge_accounting_file(key))
        if data is not None:
            fields = {("judge_model" if k == "model" else k): v for k, v in data.items()
                      if not isinstance(v, (dict, list))}
            rows.append({"judged": key, **fields})
    return rows


# --- the report page ---------------------------------------------------------------------

def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


class Raw(str):
    """A table cell that is already HTML (a link)."""


def _cell(v: Any) -> str:
    if isinstance(v, Raw):
        return f"<td>{v}</td>"
    if isinstance(v, float):
        text = f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
        return f"<td class=num>{text}</td>"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"<td class=num>{v:,}</td>"
    return f"<td>{_esc(v)}</td>"


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Links:
    """Relative links from the report's folder; marks what does not exist (yet)."""

    def __init__(self, page: Path):
        self.base = page.parent

    def __call__(self, target: str, text: str | None = None) -> str:
        rel = os.path.relpath(target, self.base)
        name = _esc(text or Path(target).name)
        if not Path(target).exists():
            return f"<span class=missing title='not produced'>{name}</span>"
        suffix = "/" if Path(target).is_dir() else ""
        return f"<a href='{_esc(rel)}{suffix}'>{name}{suffix}</a>"

    def rel(self, target: str) -> str:
        return _esc(os.path.relpath(target, self.base))


def _figure(links: _Links, png: str, page_html: str, caption: str, fig_id: str) -> str:
    return (f"<figure id='{_esc(fig_id)}'><a href='{links.rel(page_html)}'>"
            f"<img class=figure src='{links.rel(png)}' alt='{_esc(caption)}' loading=eager></a>"
            f"<figcaption>{_esc(caption)} · {links(page_html, 'interactive')} · {links(png, 'PNG')}</figcaption>"
            f"</figure>")


def self_judged(study: dict[str, Any]) -> bool:
    judge = study.get("judge", {})
    return judge.get("backend", "local") == "local" and judge.get("model") in study.get("models", {})


def caveat(study: dict[str, Any]) -> str:
    """The plain statement of what the numbers can and cannot show."""
    judge = study.get("judge", {})
    if self_judged(study):
        return (f"The stance judge here is {judge['model']}, a model of this study judging its own responses. "
                "A tiny model judging itself shows the mechanics of the pipeline (training checkpoints, sampling, "
                "judging, v(T), drift magnitude and drift time), not values: a model this small is a poor judge, "
                "its stance probabilities are close to its prior and mostly noise, and nothing here says what any "
                "model believes. Use a strong judge (GPT-4o in the paper, judge.backend: openai) for findings.")
    return (f"Stances were judged by {judge.get('model', '?')} ({judge.get('backend', '?')} backend). "
            "Drift estimates carry the judge's errors as well as sampling noise; read them with their CIs.")


def _config_section(study: dict[str, Any], runs: list[Run], questions: pl.DataFrame | None, links: _Links) -> str:
    parts = []
    models = [[name, m.get("source"), m.get("name") or m.get("file") or m.get("path") or "", m.get("prompt_format"),
               m.get("dtype")] for name, m in study.get("models", {}).items()]
    parts.append("<h3>Models</h3>" + _table(["name", "source", "weights", "step-0 prompt", "dtype"], models))
    datasets = [[name, d.get("kind"), d.get("source"), d.get("path") or d.get("name") or "",
                 d.get("max_examples"), Raw(links(paths.dataset_file(name), "parquet"))]
                for name, d in study.get("datasets", {}).items()]
    parts.append("<h3>Training data</h3>" + _table(["name", "kind", "source", "file / hub name", "max examples",
                                                     "prepared"], datasets))
    rows = []
    for run in runs:
        steps = [0, *run.steps]
        rows.append([study_label(run), "SFT" if run.is_sft else "PO", run.algorithm or "sft",
                     run.preference or run.sft, run.every, run.max_steps, ", ".join(map(str, steps)), run.start_model])
    parts.append("<h3>Runs (training phases)</h3>" + _table(
        ["run", "phase", "algorithm", "data", "every", "max steps", "checkpoints", "step 0"], rows))
    q = study.get("questions", {})
    if questions is not None:
        per_topic = questions.group_by("topic").len().sort("topic")
        parts.append(f"<h3>Questions</h3><p>{questions.height} questions over {per_topic.height} topics "
                     f"(source: {_esc(q.get('source'))}, {_esc(q.get('path', ''))}; per category: "
                     f"{_esc(q.get('per_category') or 'all')}) · {links(paths.questions_file())}</p>"
                     + _table(["topic", "questions"], [list(r) for r in per_topic.iter_rows()], "compact"))
    for block in ("generation", "judge", "drift"):
        items = [[k, json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in study.get(block, {}).items()]
        parts.append(f"<h3>{block.capitalize()}</h3>" + _table(["key", "value"], items, "compact"))
    training = study.get("training", {})
    parts.append("<details><summary>Training hyperparameters set in the config (the rest are the paper's "
                 f"Appendix B values)</summary><pre>{_esc(json.dumps(training, indent=2))}</pre></details>")
    parts.append(f"<details><summary>The whole study config</summary><pre>{_esc(json.dumps(study, indent=2, default=str))}"
                 "</pre></details>")
    return "".join(parts)


def _vprism_section(links: _Links) -> str:
    """How the V-PRISM questions were built: kept per stage, per category, the cluster scatter."""
    from .vprism import artifact

    report_path = artifact("cluster_report.json")
    if not Path(report_path).exists():
        return f"<p>No cluster report ({links(report_path)}).</p>"
    rep = _read_json(report_path)
    stages = _table(["stage", "kept", "LLM calls"], [[r["stage"], r["kept"], r["llm_calls"]] for r in rep["stages"]],
                    "compact")
    cats = _table(["category", "clustered prompts selected", "value-laden", "sampled questions"],
                  [[c["category"], c["selected"], c["value_laden"], c["sampled"]] for c in rep["categories"]], "compact")
    return (f"<p>{rep['questions']} PRISM prompts embedded and clustered into {len(rep['clusters'])} clusters "
            f"({rep['noise']} noise points); clusters mapped to the paper's categories, filtered for value-laden "
            f"questions by an LLM, then sampled per category (the paper's Section 3). Full report: "
            f"{links(report_path)}.</p><h3>What each stage kept</h3>{stages}<h3>Per category</h3>{cats}"
            + _figure(links, artifact("cluster_scatter.png"), artifact("cluster_scatter.html"),
                      "V-PRISM prompts: 2-D UMAP of their embeddings, coloured by cluster", "fig-vprism"))


def _largest_drifts(study_drift: pl.DataFrame, labels: dict[str, str], n: int = 8) -> str:
    top = (study_drift.drop_nulls("magnitude").with_columns(pl.col("magnitude").abs().alias("abs"))
           .sort("abs", descending=True).head(n))
    rows = [[labels[r["run"]], r["topic"], r["stance"], r["start"], r["end"], r["magnitude"], r["drift_time"]]
            for r in top.iter_rows(named=True)]
    return _table(["run", "topic", "stance", "v(start)", "v(end)", "magnitude", "drift time"], rows)


def _accounting_section(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No judge accounting files found.</p>"
    keys = [k for k in ACCOUNTING_ORDER if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys) - {"judged"})
    body = [[r.get("judged"), *[r.get(k) for k in keys]] for r in rows]
    totals = ["total", *[sum(r.get(k) or 0 for r in rows) if k in SUMMABLE else None for k in keys]]
    return _table(["judged model", *keys], [*body, totals], "accounting")


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1180px;margin:0 auto;padding:1em 1.5em 4em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{margin-bottom:.3em}
nav{background:#f6f6f6;padding:.5em 1em;border-radius:6px;font-size:.92em}nav a{margin-right:1em}
table{border-collapse:collapse;font-size:.85em;margin:.4em 0 1em}td,th{border:1px solid #d4d4d4;padding:.18em .5em;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.paper caption{caption-side:top;text-align:left;font-style:italic;padding:.3em 0}th.group{text-align:center}
th.metric{writing-mode:vertical-rl;transform:rotate(180deg);background:#fafafa}
th.stance-support{color:#2ca02c}th.stance-neutral{color:#1f77b4}th.stance-oppose{color:#d62728}
figure{margin:1em 0 2em;overflow-x:auto}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
.note{background:#fff4e5;border-left:5px solid #f0a030;padding:.7em 1em;font-size:1.02em}
.missing{color:#a00;text-decoration:line-through}.meta{color:#666;font-size:.85em}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.8em}
ul.artifacts{columns:2;font-size:.88em}details{margin:.5em 0}
"""


def write_report(*, study: dict[str, Any], output: str, options: dict[str, Any] | None = None) -> None:
    """Write results/report/index.html for every run of ``study`` (a validated config's study blocks)."""
    from .config import runs as config_runs

    options = options or {}
    decimals = (options.get("tables") or {}).get("decimals", 2)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    links = _Links(out)
    runs = config_runs(study)
    labels = {r.model_path: study_label(r) for r in runs}
    study_drift = tables.read(paths.study_drift_table(), "study_drift")
    questions = tables.read(paths.questions_file(), "questions") if Path(paths.questions_file()).exists() else None
    title = options.get("title") or "valuedrift report"

    toc = [("caveat", "Read this first"), ("summary", "Summary"), ("tables", "Drift tables"),
           ("figures", "Figures"), ("runs", "Runs"), ("training", "Training curves"),
           ("judge", "Judge accounting"), ("config", "Study configuration"), ("artifacts", "All artifacts")]
    sections = []

    note = f"<p>{_esc(options['note'])}</p>" if options.get("note") else ""
    sections.append(f"<section id=caveat><p class=note><strong>Read this first.</strong> {_esc(caveat(study))}</p>"
                    f"{note}</section>")

    n_topics = study_drift["topic"].n_unique()
    sections.append(
        "<section id=summary><h2>Summary</h2>"
        f"<p>{len(runs)} runs ({sum(r.is_sft for r in runs)} SFT, {sum(not r.is_sft for r in runs)} preference "
        f"optimization) of {', '.join(map(_esc, study.get('models', {})))}; {n_topics} topics"
        + (f", {questions.height} questions" if questions is not None else "")
        + f", {study.get('generation', {}).get('samples', '?')} sampled response(s) per question and checkpoint. "
        "<b>Drift magnitude</b> M = v(end) − v(start) of a phase; <b>drift time</b> = fraction of the phase's "
        "steps until the stance first lies within the 95% CI of its extremum (the paper's Section 3; exact "
        "rules in <code>valuedrift.metrics</code>).</p>"
        f"<h3>Largest drifts</h3>{_largest_drifts(study_drift, labels)}"
        f"<p>{links(paths.study_drift_table(), 'every run, topic and stance (CSV)')}</p></section>")

    table_parts = []
    for spec in paper_tables.table_specs(runs):
        t = paper_tables.build(spec, study_drift)
        files = " · ".join(links(paper_tables.table_paths(spec, ext), ext.upper()) for ext in ("csv", "md", "tex"))
        table_parts.append(f"<div class=paper-table>{t.to_html(decimals)}<p class=meta>{files}</p></div>")
    sections.append("<section id=tables><h2>Drift tables</h2><p>In the paper's shapes: SFT tables as Tables 9-12 "
                    "(SFT datasets × stances), preference-optimization tables as Tables 1 and 13-16 (preference "
                    "data × algorithms × stances). Magnitude cells are tinted green (up) / red (down).</p>"
                    + "".join(table_parts) + "</section>")

    figs = [_figure(links, paths.drift_heatmap("png"), paths.drift_heatmap("html"),
                    "Drift magnitude and drift time over topics × runs", "fig-heatmap")]
    for base in sft_groups(runs):
        figs.append(_figure(links, paths.sft_comparison_plot(base, "png"), paths.sft_comparison_plot(base, "html"),
                            f"SFT of {base}: datasets side by side", f"fig-sft-{base}"))
    for base, sft in po_groups(runs):
        figs.append(_figure(links, paths.po_comparison_plot(base, sft, "png"),
                            paths.po_comparison_plot(base, sft, "html"),
                            f"Preference optimization of {base} SFT on {sft}: algorithms side by side",
                            f"fig-po-{base}-{sft}"))
    sections.append("<section id=figures><h2>Figures</h2>" + "".join(figs) + "</section>")

    run_parts = []
    for run in runs:
        mp = run.model_path
        wide = paper_tables.build({"kind": "sft" if run.is_sft else "po", "base": run.base, "sft": run.sft},
                                  study_drift.filter(pl.col("run") == mp))
        run_parts.append(
            f"<article id='run-{_esc(mp)}'><h3>{_esc(labels[mp])}</h3>"
            f"<p class=meta>{_esc(mp)} · {links(paths.drift_table(mp))} · {links(paths.trajectory_file(mp))} · "
            f"{links(paths.training_log(mp))}</p>"
            + _figure(links, paths.trajectory_plot(mp, "png"), paths.trajectory_plot(mp, "html"),
                      f"v(T) over training: {labels[mp]}", f"fig-run-{mp}")
            + wide.to_html(decimals) + "</article>")
    sections.append("<section id=runs><h2>Runs</h2>" + "".join(run_parts) + "</section>")

    sections.append("<section id=training><h2>Training curves</h2>"
                    + _figure(links, paths.training_plot("png"), paths.training_plot("html"),
                              "Trainer logs of every run", "fig-training")
                    + "<p class=meta>" + " · ".join(links(paths.training_log(r.model_path), labels[r.model_path])
                                                   for r in runs) + "</p></section>")

    model_keys = list(dict.fromkeys(r.model_at(s) for r in runs for s in [0, *r.steps]))
    sections.append("<section id=judge><h2>Judge accounting</h2><p>Per judged model: responses, unscorable "
                    "responses, judge calls, cache hits, tokens and cost, from "
                    "<code>results/stances/{model}.accounting.json</code>.</p>"
                    + _accounting_section(judge_accounting(model_keys)) + "</section>")

    if study.get("questions", {}).get("source") == "vprism":
        toc.insert(toc.index(("config", "Study configuration")), ("vprism", "V-PRISM questions"))
        sections.append("<section id=vprism><h2>V-PRISM questions</h2>" + _vprism_section(links) + "</section>")

    sections.append("<section id=config><h2>Study configuration</h2>"
                    + _config_section(study, runs, questions, links) + "</section>")

    art = []
    for run in runs:
        mp = run.model_path
        items = [links(paths.drift_table(mp)), links(paths.trajectory_file(mp)), links(paths.training_log(mp)),
                 links(paths.trajectory_plot(mp, "html")), links(paths.trajectory_plot(mp, "png"))]
        if not run.is_sft and _needs_reward_model(run.algorithm):
            items.append(links(paths.reward_model_dir(run.base, run.sft, run.preference), "reward model"))
        rows = [[s, links(paths.model_dir(run.model_at(s)), run.model_at(s)),
                 links(paths.generations_file(run.model_at(s)), "generations"),
                 links(paths.stances_file(run.model_at(s)), "stances"),
                 links(paths.judge_accounting_file(run.model_at(s)), "accounting")] for s in [0, *run.steps]]
        art.append(f"<h3>{_esc(labels[mp])}</h3><p>{' · '.join(items)}</p>"
                   + _raw_table(["step", "model", "responses", "stances", "judge"], rows))
    study_files = [paths.questions_file(), paths.study_drift_table(),
                   *[paper_tables.table_paths(s, e) for s in paper_tables.table_specs(runs) for e in ("csv", "md", "tex")],
                   *[f for pair in zip(study_figures(runs, "html"), study_figures(runs, "png")) for f in pair],
                   *[paths.dataset_file(name) for name in study.get("datasets", {})]]
    art.insert(0, "<h3>Study-wide</h3><ul class=artifacts>"
               + "".join(f"<li>{links(f, os.path.relpath(f, paths.RESULTS))}</li>" for f in study_files) + "</ul>")
    sections.append("<section id=artifacts><h2>All artifacts</h2><p>Relative links into <code>results/</code>; "
                    "checkpoints are folders.</p>" + "".join(art) + "</section>")

    nav = "".join(f"<a href='#{i}'>{_esc(t)}</a>" for i, t in toc)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = (f"<!doctype html><html lang=en><head><meta charset='utf-8'><meta name=viewport "
            f"content='width=device-width, initial-scale=1'><title>{_esc(title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>{_esc(title)}</h1><p class=meta>Value drifts during post-training "
            f"(v(T), drift magnitude, drift time) · generated {stamp} by valuedrift</p><nav>{nav}</nav>"
            + "".join(sections) + "</body></html>")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)


def _needs_reward_model(algorithm: str) -> bool:
    from .training import registry

    try:
        return registry.get(algorithm).needs_reward_model
    except KeyError:
        return False


def _raw_table(header: list[str], rows: list[list[Any]]) -> str:
    """A table whose cells are already HTML (links)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class=compact><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
