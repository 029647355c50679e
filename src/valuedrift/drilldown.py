"""The drill-down page: every sampled answer of a run, beside its stance probabilities.

For any topic and question, the page shows the answers at each checkpoint with each
judge's stance distribution p(s | x, y, T) and verdict (the most probable stance, or
"unscorable"), plus the question's mean per checkpoint (the inner mean of Eq. 1, what
v(T) averages). One static page, no server, no network: the page
(``templates/drilldown.html.j2``, rendered with Jinja2) loads its data from a JS file
beside it and renders only the selected question, so it stays fast at paper scale
(550 questions x 5 samples x ~20 checkpoints ~ 55,000 answers; bench/drilldown.py
measures 100,000).

Data file (``window.DRILLDOWN = {...}``), columnar to stay compact:

    steps, judges, stances, topics                     lists
    q_id, q_topic (index into topics), q_text         one entry per question, sorted by topic, id
    q_start                                            answers of question i: q_start[i] .. q_start[i+1]-1
    a_step (index into steps), a_sample, a_text        one entry per answer, by question, step, sample
    a_p                                                per answer and judge, 3 probabilities in
                                                       thousandths (support, neutral, oppose); -1: unscorable
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import polars as pl

from . import tables
from .metrics import PROB_COLUMNS
from .topics import STANCES

TEMPLATE = "drilldown.html.j2"


def build_data(questions: pl.DataFrame, generations: Mapping[int, pl.DataFrame],
               stances: Mapping[str, Mapping[int, pl.DataFrame]], *, title: str) -> dict:
    """The page's data from in-memory tables: ``generations[step]``, ``stances[judge][step]``."""
    steps = sorted(generations)
    judges = list(stances)
    for judge, by_step in stances.items():
        if sorted(by_step) != steps:
            raise ValueError(f"judge {judge!r} has stances for steps {sorted(by_step)}, the generations for {steps}")
    qs = questions.select("question_id", "topic", "question").sort("topic", "question_id")
    topics = sorted(qs["topic"].unique().to_list())
    frames = []
    for i, step in enumerate(steps):
        g = generations[step].select("question_id", "sample", "response").with_columns(
            pl.lit(i, dtype=pl.Int32).alias("step_index"))
        for j, judge in enumerate(judges):
            s = stances[judge][step].select(
                "question_id", "sample",
                *[pl.when(pl.col("scorable")).then((pl.col(c) * 1000).round().cast(pl.Int32)).otherwise(-1)
                  .alias(f"{c}_{j}") for c in PROB_COLUMNS])
            g = g.join(s, on=["question_id", "sample"], how="left")
        frames.append(g)
    answers = pl.concat(frames) if frames else pl.DataFrame()
    order = qs.with_row_index("q_index").select("question_id", "q_index")
    answers = (answers.join(order, on="question_id", how="inner")
               .sort("q_index", "step_index", "sample"))
    prob_cols = [f"{c}_{j}" for j in range(len(judges)) for c in PROB_COLUMNS]
    # an answer a judge has no row for counts as unscorable (-1), never as a made-up stance
    probs = answers.select(prob_cols).fill_null(-1).to_numpy().astype(int) if prob_cols else np.zeros((len(answers), 0))
    counts = np.bincount(answers["q_index"].to_numpy(), minlength=qs.height)
    topic_index = {t: i for i, t in enumerate(topics)}
    return {
        "title": title, "steps": steps, "judges": judges, "stances": list(STANCES), "topics": topics,
        "q_id": qs["question_id"].to_list(), "q_topic": [topic_index[t] for t in qs["topic"]],
        "q_text": qs["question"].to_list(), "q_start": [0, *np.cumsum(counts).tolist()],
        "a_step": answers["step_index"].to_list(), "a_sample": answers["sample"].to_list(),
        "a_text": answers["response"].to_list(), "a_p": probs.reshape(-1).tolist(),
    }


def render_page(title: str, data_file: str) -> str:
    """The page's HTML (Jinja2; ``data_file`` is the data script's name, relative to the page)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("valuedrift", "templates"), autoescape=select_autoescape(["html", "j2"]))
    return env.get_template(TEMPLATE).render(title=title, data_file=data_file, stances=STANCES)


def _write_atomic(path: Path, text: str) -> None:
    from . import atomic

    atomic.write_text(path, text)


def write_data(data: dict, output: str | os.PathLike) -> None:
    # JSON is a JS expression; separators without spaces keep 100k answers a few MB smaller
    _write_atomic(Path(output), "window.DRILLDOWN = " + json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                  + ";\n")


def write_drilldown(*, questions: str, generations: Mapping[int, str], stances: Mapping[str, Mapping[int, str]],
                    page: str, data: str, title: str) -> None:
    """File-in, file-out: the drill-down page and its data script (which must sit beside the page)."""
    if Path(page).parent != Path(data).parent:
        raise ValueError(f"the data file {data} must be in the page's folder ({Path(page).parent})")
    built = build_data(tables.read(questions, "questions"),
                       {int(s): tables.read(p, "generations") for s, p in generations.items()},
                       {j: {int(s): tables.read(p, "stances") for s, p in by_step.items()} for j, by_step in stances.items()},
                       title=title)
    write_data(built, data)
    _write_atomic(Path(page), render_page(title, Path(data).name))
