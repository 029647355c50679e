"""The study's static HTML page: the data of each section, rendered from Jinja2 templates.

``write_report`` reads only the files it is given (the report rule's named inputs, listed by
``valuedrift.study.Study.report_inputs``) and links to everything else by relative path.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
from pathlib import Path
from typing import Any

import markupsafe
import polars as pl

from .. import atomic, paper_tables, paths, tables
from ..study import Study
from . import evals_view as _evals_sections  # noqa: F401  (registers the evals and samples sections)
from . import controlled_view as _controlled_section  # noqa: F401  (registers the controlled-experiment section)
from . import series_view as _series_sections  # noqa: F401  (registers the checkpoint-series and seed sections)
from . import judges_view  # registers the Judge quality section; its headline goes into the caveat
from . import readers, sections

TOC = [("caveat", "Read this first"), ("summary", "Summary"), ("tables", "Drift tables"), ("figures", "Figures"),
       ("runs", "Runs"), ("training", "Training curves"), ("judge", "Judge accounting"),
       ("config", "Study configuration"), ("artifacts", "All artifacts")]


def self_judged(study: dict[str, Any]) -> bool:
    judge = study.get("judge", {})
    return judge.get("backend", "local") == "local" and judge.get("model") in study.get("models", {})


def caveat(study: dict[str, Any], quality: dict[str, Any] | None = None) -> str:
    """The plain statement of what the numbers can and cannot show; ``quality``: the primary
    judge's validation headline (judges_view.primary_quality), when the study measured it."""
    judge = study.get("judge", {})
    measured = ""
    if quality:
        measured = (f" Measured on {quality['n']} authored validation responses with known stances, it reaches "
                    f"accuracy {quality['accuracy']:.2f} and macro-F1 {quality['macro_f1']:.2f} (chance "
                    f"{quality['chance_macro_f1']:.2f}; see Judge quality).")
    if self_judged(study):
        return (f"The stance judge here is {judge['model']}, a model of this study judging its own responses. "
                "A tiny model judging itself shows the mechanics of the pipeline (training checkpoints, sampling, "
                "judging, v(T), drift magnitude and drift time), not values: a model this small is a poor judge, "
                "its stance probabilities are close to its prior and mostly noise, and nothing here says what any "
                f"model believes.{measured} Use a strong judge (GPT-4o in the paper, judge.backend: openai) for findings.")
    if judge.get("backend") == "classifier":
        from ..judge_specs import describe

        return (f"The stance judge is a trained {describe(judge)}.{measured} A drift here is a change in the "
                "stances this judge reads in the responses, with its errors on top of the sampling noise: read "
                "each with its CI. The judge measures what the answers say, not what any model believes"
                + (", and a model this small and this briefly trained shows the mechanics of the study, not "
                   "real values." if judge.get("embedder", {}).get("llm") in study.get("models", {}) else "."))
    return (f"Stances were judged by {judge.get('model', '?')} ({judge.get('backend', '?')} backend).{measured} "
            "Drift estimates carry the judge's errors as well as sampling noise; read them with their CIs.")


class Links:
    """Relative links from the report's folder (artifacts upstream of the report exist when it runs)."""

    def __init__(self, page: str):
        self.base = Path(page).parent

    def rel(self, target: str, folder: bool = False) -> str:
        return os.path.relpath(target, self.base) + ("/" if folder else "")

    def __call__(self, target: str, text: str | None = None, folder: bool = False) -> dict[str, str]:
        name = (text or Path(target).name) + ("/" if folder else "")
        return {"href": self.rel(target, folder), "text": name}


def figure(links: Links, png: str, page_html: str, caption: str, fig_id: str) -> dict[str, Any]:
    return {"id": fig_id, "png": links.rel(png), "html": links.rel(page_html), "caption": caption}


def paper_table_view(table: paper_tables.PaperTable, decimals: int) -> dict[str, Any]:
    """A paper table as header spans and cells (magnitude cells tinted green up / red down)."""
    n_stances = len(paper_tables.STANCES)
    rows, previous = [], None
    raw = list(table.data.iter_rows(named=True))
    for row, cells in zip(raw, table.formatted(decimals)):
        metric_span = 0
        if cells[0] != previous:
            metric_span = sum(1 for r in raw if r["metric"] == cells[0])
        previous = cells[0]
        values = []
        for column, text in zip(table.value_columns, cells[2:]):
            v = row[column]
            tint = None
            if v is not None and row["metric"] == paper_tables.METRICS["magnitude"]:
                tint = f"rgba({'27,120,55' if v > 0 else '178,24,43'},{min(abs(v), 1) * 0.6:.2f})"
            values.append({"text": text or "–", "tint": tint})
        rows.append({"metric": cells[0], "metric_span": metric_span, "topic": cells[1], "cells": values})
    return {"caption": table.full_caption(), "stances": list(paper_tables.STANCES) * len(table.groups),
            "header": [[{"label": label, "span": span * n_stances} for label, span in spans]
                       for spans in table.header_rows()], "rows": rows}


def largest_drifts(study_drift: pl.DataFrame, labels: dict[str, str], n: int = 8) -> dict[str, Any]:
    """The largest drifts among those whose paired-bootstrap CI excludes 0, with their CI and p-value."""
    from ..significance import largest_significant_drifts

    top = largest_significant_drifts(study_drift, n)
    rows = [[labels[r["run"]], r["topic"], r["stance"], r["start"], r["end"], r["magnitude"],
             f"[{r['magnitude_ci_low']:.3f}, {r['magnitude_ci_high']:.3f}]", r["magnitude_p_value"], r["drift_time"]]
            for r in top.iter_rows(named=True)]
    tested = study_drift.drop_nulls("significant")
    return {"rows": rows, "significant": int(tested["significant"].sum()), "tested": tested.height}


def vprism_view(inputs: dict[str, Any], links: Links) -> dict[str, Any] | None:
    """How the V-PRISM questions were built: kept per stage, per category, the cluster scatter."""
    files = inputs.get("vprism") or []
    report_file = next((f for f in files if f.endswith("cluster_report.json")), None)
    if report_file is None:
        return None
    rep = json.loads(Path(report_file).read_text())
    png = next(f for f in files if f.endswith(".png"))
    page_html = next(f for f in files if f.endswith(".html"))
    return {"report": rep, "report_link": links(report_file),
            "stages": [[r["stage"], r["kept"], r["llm_calls"]] for r in rep["stages"]],
            "categories": [[c["category"], c["selected"], c["value_laden"], c["sampled"]] for c in rep["categories"]],
            "figure": figure(links, png, page_html, "V-PRISM prompts: 2-D UMAP of their embeddings, coloured by "
                             "cluster", "fig-vprism")}


sections.register(sections.Section("vprism", "V-PRISM questions", "vprism_section.html.j2",
                                   lambda c: vprism_view(c.inputs, c.links), before="config"))


def trained_datasets(model: Study) -> set[str]:
    """The datasets some run trains on (the ones the workflow prepares)."""
    return {r.sft for r in model.runs if r.is_sft} | {r.preference for r in model.runs if not r.is_sft}


def config_view(study: dict[str, Any], model: Study, questions: pl.DataFrame, links: Links) -> dict[str, Any]:
    models = [[name, m.get("source"), m.get("name") or m.get("file") or m.get("path") or "", m.get("prompt_format"),
               m.get("dtype")] for name, m in study.get("models", {}).items()]
    trained_on = trained_datasets(model)  # only these are prepared: other datasets get no link
    datasets = [[name, d.get("kind"), d.get("source"), d.get("path") or d.get("name") or "", d.get("max_examples"),
                 links(paths.dataset_file(name), "parquet") if name in trained_on else "not trained on"]
                for name, d in study.get("datasets", {}).items()]
    runs = [[r.study_label, "SFT" if r.is_sft else "PO", r.algorithm or "sft", r.preference or r.sft, r.every,
             r.max_steps, ", ".join(map(str, [0, *r.steps])), r.start_model] for r in model.runs]
    per_topic = questions.group_by("topic").len().sort("topic")
    blocks = {block.capitalize(): [[k, json.dumps(v) if isinstance(v, (dict, list)) else v]
                                   for k, v in study.get(block, {}).items()]
              for block in ("generation", "judge", "drift")}
    return {"models": models, "datasets": datasets, "runs": runs, "blocks": blocks,
            "questions": {"n": questions.height, "topics": per_topic.height, "spec": study.get("questions", {}),
                          "per_topic": [list(r) for r in per_topic.iter_rows()],
                          "link": links(paths.questions_file())},
            "training": json.dumps(study.get("training", {}), indent=2),
            "whole": json.dumps(study, indent=2, default=str)}


def run_views(model: Study, study_drift: pl.DataFrame, links: Links, decimals: int) -> list[dict[str, Any]]:
    from ..training import registry

    views = []
    for run in model.runs:
        mp = run.model_path
        wide = paper_tables.build({"kind": "sft" if run.is_sft else "po", "base": run.base, "sft": run.sft},
                                  study_drift.filter(pl.col("run") == mp))
        files = [links(paths.drift_table(mp)), links(paths.trajectory_file(mp)), links(paths.training_log(mp)),
                 links(paths.trajectory_plot(mp, "html")), links(paths.trajectory_plot(mp, "png"))]
        if not run.is_sft and registry.get(run.algorithm).needs_reward_model:
            files.append(links(run.reward_model, "reward model", folder=True))
        steps = [[s, links(paths.model_dir(run.model_at(s)), run.model_at(s), folder=True),
                  links(paths.generations_file(run.sampled_at(s)), "generations"),
                  links(paths.stances_file(run.sampled_at(s)), "stances"),
                  links(paths.judge_accounting_file(run.sampled_at(s)), "accounting")] for s in [0, *run.steps]]
        files.append(links(paths.drilldown_page(mp), "answers behind the drift (drill-down)"))
        views.append({"id": f"run-{mp}", "label": run.study_label, "path": mp, "files": files, "steps": steps,
                      "figure": figure(links, paths.trajectory_plot(mp, "png"), paths.trajectory_plot(mp, "html"),
                                       f"v(T) over training: {run.study_label}", f"fig-run-{mp}"),
                      "table": paper_table_view(wide, decimals)})
    return views


def study_figure_views(model: Study, links: Links) -> list[dict[str, Any]]:
    figs = [figure(links, paths.drift_heatmap("png"), paths.drift_heatmap("html"),
                   "Drift magnitude and drift time over topics × runs", "fig-heatmap")]
    for base in model.sft_groups:
        figs.append(figure(links, paths.sft_comparison_plot(base, "png"), paths.sft_comparison_plot(base, "html"),
                           f"SFT of {base}: datasets side by side", f"fig-sft-{base}"))
    for base, sft in model.po_groups:
        figs.append(figure(links, paths.po_comparison_plot(base, sft, "png"), paths.po_comparison_plot(base, sft, "html"),
                           f"Preference optimization of {base} SFT on {sft}: algorithms side by side",
                           f"fig-po-{base}-{sft}"))
    for sweep in model.sweeps:
        base, sft = sweep.of.base, sweep.of.sft
        figs.append(figure(links, paths.sweep_plot(base, sft, sweep.name, "png"),
                           paths.sweep_plot(base, sft, sweep.name, "html"),
                           f"{sweep.of.study_label}: {sweep.key} = {', '.join(map(str, sweep.values))}",
                           f"fig-sweep-{base}-{sft}-{sweep.name}"))
    return figs


def render(template: str, **context: Any) -> str:
    env = _environment()
    return env.get_template(template).render(**context)


@functools.cache
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("valuedrift.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["cell"] = cell
    return env


def cell(value: Any) -> dict[str, Any]:
    """How a plain table cell shows a value: a link, or text (numbers right-aligned, large ones
    with separators)."""
    view = {"link": None, "text": "", "class": ""}
    if isinstance(value, dict) and "href" in value:
        view["link"] = value
    elif isinstance(value, float):
        view.update(text=f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}", **{"class": "num"})
    elif isinstance(value, int) and not isinstance(value, bool):
        view.update(text=f"{value:,}", **{"class": "num"})
    elif value is not None:
        view["text"] = str(value)
    return view


def write_report(*, study: dict[str, Any], inputs: dict[str, Any], output: str,
                 options: dict[str, Any] | None = None) -> None:
    """Write the report page for every run of ``study`` (a validated config) from ``inputs``."""
    options = options or {}
    decimals = (options.get("tables") or {}).get("decimals", 2)
    model = Study(study)
    links = Links(output)
    study_drift = tables.read(inputs["study_drift"], "study_drift")
    questions = tables.read(inputs["questions"], "questions")
    accounting = readers.judge_accounting(dict(zip(model.evaluated_models, inputs["accounting"], strict=True)))
    toc = list(TOC)
    extra: dict[str, list[str]] = {}  # fixed section id -> rendered optional sections before it
    for section, view in sections.build(sections.Context(inputs, links, options, decimals, study)):
        toc.insert([anchor for anchor, _ in toc].index(section.before), (section.id, section.title))
        extra.setdefault(section.before, []).append(markupsafe.Markup(render(section.template, **{section.id: view})))
    study_files = [paths.questions_file(), paths.study_drift_table(), *model.table_files(),
                   *[f for pair in zip(model.study_figures("html"), model.study_figures("png")) for f in pair],
                   *[paths.dataset_file(name) for name in study.get("datasets", {}) if name in trained_datasets(model)]]
    page = render(
        "report.html.j2",
        title=options.get("title") or "valuedrift report", note=options.get("note") or "",
        caveat=caveat(study, judges_view.primary_quality(inputs.get("judges"))),
        stamp=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"), toc=toc,
        summary={"runs": len(model.runs), "sft_runs": sum(r.is_sft for r in model.runs),
                 "po_runs": sum(not r.is_sft for r in model.runs), "models": list(study.get("models", {})),
                 "topics": study_drift["topic"].n_unique(), "questions": questions.height,
                 "samples": study.get("generation", {}).get("samples", "?"),
                 "largest": largest_drifts(study_drift, model.labels), "study_link": links(paths.study_drift_table(),
                                                                                           "every run, topic and stance (CSV)")},
        tables=[{"table": paper_table_view(paper_tables.build(spec, study_drift), decimals),
                 "files": [links(paths.paper_table(spec, ext), ext.upper()) for ext in paths.TABLE_FORMATS]}
                for spec in model.table_specs],
        figures=study_figure_views(model, links), runs=run_views(model, study_drift, links, decimals),
        training={"figure": figure(links, paths.training_plot("png"), paths.training_plot("html"),
                                   "Trainer logs of every run", "fig-training"),
                  "logs": [links(paths.training_log(r.model_path), r.study_label) for r in model.runs]},
        accounting=readers.accounting_table(accounting), extra=extra,
        config=config_view(study, model, questions, links),
        study_files=[links(f, os.path.relpath(f, paths.RESULTS)) for f in study_files])
    atomic.write_text(output, page)
