"""Sample tables (paper, Tables 5-8): sampled responses of chosen checkpoints beside the
judge's stance probabilities, per topic and question.

Config ``report.samples`` picks topics, questions per topic (the first by question_id),
checkpoints of each run (``start``, ``end`` or steps) and how many samples per question. The
rule reads only the questions table and the generations and stances of those checkpoints; the
CSV keeps whole responses, Markdown, LaTeX and the report cut them to ``max_chars``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from . import atomic
from . import tables
from .config import ConfigError
from .study import Study
from .topics import STANCES

COLUMNS = {"topic": pl.String, "question_id": pl.String, "question": pl.String, "model": pl.String,
           "label": pl.String, "sample": pl.Int64, "response": pl.String, "p_support": pl.Float64,
           "p_neutral": pl.Float64, "p_oppose": pl.Float64, "scorable": pl.Boolean}
CAPTION = "Sampled responses and their stance probabilities (support / neutral / oppose)"


def chosen_models(study: Study, block: dict[str, Any]) -> dict[str, str]:
    """Model key -> row label of every checkpoint shown, each once, in run order. A PO run's
    start is its SFT run's end, so it is shown once, under the SFT run."""
    wanted = set(block.get("runs") or [r.model_path for r in study.runs])
    chosen: dict[str, str] = {}
    for run in study.runs:
        if run.model_path not in wanted:
            continue
        steps = [0, *run.steps]
        for which in block.get("checkpoints", ["start", "end"]):
            step = {"start": 0, "end": run.max_steps}.get(which, which)
            if step not in steps:
                continue
            key = run.sampled_at(step)  # a seeded run's start: the answers sampled with its seed
            chosen.setdefault(key, checkpoint_label(study, key))
    return chosen


def checkpoint_label(study: Study, model_key: str) -> str:
    """``base (base)``, or the first run holding the checkpoint, at its step."""
    for run in study.runs:
        for step in [0, *run.steps]:
            if run.sampled_at(step) == model_key:
                seed = "" if run.seed is None or step else f", seed {run.seed}"
                return f"{run.base} (base{seed})" if step == 0 and run.is_sft else f"{run.study_label} @ step {step}"
    raise ConfigError(f"{model_key} is no checkpoint of this config's runs")


def check_config(config: dict[str, Any]) -> None:
    """Runs and checkpoints of ``report.samples`` exist (topics are checked against the questions table)."""
    block = config.get("report", {}).get("samples") or {}
    if not block.get("enabled"):
        return
    study = Study(config)
    study.require_runs(block.get("runs"), "report.samples.runs")
    if not chosen_models(study, block):
        raise ConfigError(f"config key 'report.samples.checkpoints': {block.get('checkpoints')!r} selects no "
                          "checkpoint of the runs shown")


def build(*, questions: str, models: dict[str, dict[str, str]], labels: dict[str, str],
          block: dict[str, Any]) -> pl.DataFrame:
    """The long sample table: ``models`` maps a model key to its ``generations`` and ``stances`` files."""
    q = tables.read(questions, "questions")
    topics = block.get("topics") or sorted(q["topic"].unique().to_list())
    missing = [t for t in topics if t not in set(q["topic"])]
    if missing:
        raise ConfigError(f"config key 'report.samples.topics': {', '.join(missing)} not a topic of {questions}; "
                          f"topics: {', '.join(sorted(set(q['topic'])))}")
    per_topic = block.get("questions_per_topic", 1)
    picked = pl.concat([q.filter(pl.col("topic") == t).sort("question_id").head(per_topic) for t in topics])
    frames = []
    for model, files in models.items():
        gen = tables.read(files["generations"], "generations")
        stances = tables.read(files["stances"], "stances")
        rows = (picked.select("topic", "question_id", "question")
                .join(gen.filter(pl.col("sample") < block.get("samples_per_question", 1)), on="question_id")
                .join(stances, on=["question_id", "sample"], how="left"))
        absent = set(picked["question_id"]) - set(rows["question_id"])
        if absent:
            raise ValueError(f"{files['generations']}: no response to question {sorted(absent)[0]}")
        frames.append(rows.select(
            "topic", "question_id", "question", pl.lit(model).alias("model"), pl.lit(labels[model]).alias("label"),
            pl.col("sample").cast(pl.Int64), "response", "p_support", "p_neutral", "p_oppose",
            pl.col("scorable").fill_null(False)))
    order = {t: i for i, t in enumerate(topics)}
    out = pl.concat(frames).with_columns(pl.col("topic").replace_strict(order).alias("_t"))
    return out.sort("_t", "question_id", maintain_order=True).drop("_t").select(list(COLUMNS)).cast(COLUMNS)


def clip(text: str, max_chars: int | None) -> str:
    text = " ".join(text.split())
    return text if max_chars is None or len(text) <= max_chars else text[:max_chars - 1].rstrip() + "…"


def probabilities(row: dict[str, Any], decimals: int) -> list[str]:
    if not row["scorable"]:
        return ["–"] * len(STANCES)
    return [f"{row[f'p_{s}']:.{decimals}f}" for s in STANCES]


def sections(data: pl.DataFrame, max_chars: int | None, decimals: int) -> list[dict[str, Any]]:
    """Per topic, per question: its text and one row per model and sample (label, response, p's)."""
    out = []
    for topic in data["topic"].unique(maintain_order=True):
        part = data.filter(pl.col("topic") == topic)
        questions = []
        for qid in part["question_id"].unique(maintain_order=True):
            rows = part.filter(pl.col("question_id") == qid)
            questions.append({"question_id": qid, "question": rows["question"][0],
                              "rows": [[r["label"] + (f" (sample {r['sample']})" if r["sample"] else ""),
                                        clip(r["response"], max_chars), *probabilities(r, decimals)]
                                       for r in rows.iter_rows(named=True)]})
        out.append({"topic": topic, "questions": questions})
    return out


HEADER = ["model", "response", *STANCES]


def to_markdown(view: list[dict[str, Any]]) -> str:
    lines = [f"**{CAPTION}**", ""]
    for section in view:
        for q in section["questions"]:
            lines += [f"*Topic: {section['topic']}. Prompt ({q['question_id']}): {q['question']}*", "",
                      "| " + " | ".join(HEADER) + " |", "|---|---|" + "---:|" * len(STANCES)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in q["rows"]]
            lines.append("")
    return "\n".join(lines)


def to_latex(view: list[dict[str, Any]]) -> str:
    from .paper_tables import latex_escape

    lines = ["% requires \\usepackage{booktabs}"]
    for i, section in enumerate(view):
        lines += ["\\begin{table}[t]", "\\centering", "\\small",
                  f"\\caption{{{latex_escape(CAPTION)}: {latex_escape(section['topic'])}}}",
                  f"\\label{{tab:samples-{i + 1}}}",
                  "\\begin{tabular}{p{0.2\\linewidth}p{0.56\\linewidth}rrr}", "\\toprule",
                  " & ".join(h.capitalize() for h in HEADER) + " \\\\"]
        for q in section["questions"]:
            lines += ["\\midrule", f"\\multicolumn{{5}}{{l}}{{\\textit{{Prompt: {latex_escape(q['question'])}}}}} \\\\",
                      "\\midrule"]
            lines += [" & ".join(latex_escape(c) if c != "–" else "--" for c in row) + " \\\\" for row in q["rows"]]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def write_tables(*, questions: str, models: dict[str, dict[str, str]], labels: dict[str, str],
                 block: dict[str, Any], outputs: dict[str, str], decimals: int = 2) -> None:
    """Write the sample table as CSV (whole responses), Markdown and LaTeX (``outputs``: format -> path)."""
    data = build(questions=questions, models=models, labels=labels, block=block)
    view = sections(data, block.get("max_chars", 600), decimals)
    for ext, path in outputs.items():
        text = data.write_csv() if ext == "csv" else to_markdown(view) if ext == "md" else to_latex(view)
        atomic.write_text(path, text)


def read_view(path: str, block: dict[str, Any], decimals: int = 2) -> list[dict[str, Any]]:
    """The report's view of the table, from its CSV."""
    data = pl.read_csv(path, schema=COLUMNS)
    return sections(data, block.get("max_chars", 600), decimals)
