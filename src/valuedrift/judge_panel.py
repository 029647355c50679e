"""A judge panel: how much the judges agree, where they disagree, how much option mass each reads.

Every judge scores the same generations (the primary at results/stances/, the others
under results/judges/{name}/stances/). Agreement per topic and judge pair: Cohen's kappa
of the argmax stances, Pearson correlation of the probabilities (the three columns
stacked) and the mean total-variation distance of the distributions, over the responses
both judges could score. The most disagreed responses are those with the largest
total-variation distance between any two judges.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import polars as pl

from . import tables
from .classifier_judge import cohen_kappa
from .judge_eval import _write_csv, mass_summary
from .topics import STANCES

log = logging.getLogger("valuedrift")

P_COLS = [f"p_{s}" for s in STANCES]


def _stances(files: dict[str, str]) -> pl.DataFrame:
    """Stance tables of many models in one frame with a ``model`` column."""
    return pl.concat([tables.read(path, "stances").with_columns(pl.lit(model).alias("model"))
                      for model, path in sorted(files.items())])


def joined(stance_files: dict[str, dict[str, str]], questions: str) -> pl.DataFrame:
    """One row per (model, question_id, sample), each judge's p_* and argmax as ``{judge}:...`` columns."""
    qs = tables.read(questions, "questions").select("question_id", "topic")
    out = None
    for name, files in stance_files.items():
        t = _stances(files)
        probs = t.select(P_COLS).to_numpy()
        arg = [STANCES[int(np.argmax(p))] if ok else None for p, ok in zip(probs, t["scorable"].to_list())]
        t = t.select("model", "question_id", "sample", *[pl.col(c).alias(f"{name}:{c}") for c in P_COLS],
                     pl.Series(f"{name}:stance", arg, dtype=pl.String))
        out = t if out is None else out.join(t, on=["model", "question_id", "sample"], how="full", coalesce=True)
    return out.join(qs, on="question_id", how="left")


def pair_agreement(frame: pl.DataFrame, a: str, b: str) -> dict[str, Any]:
    both = frame.filter(pl.col(f"{a}:stance").is_not_null() & pl.col(f"{b}:stance").is_not_null())
    if not len(both):
        return {"n": 0, "kappa": None, "agreement": None, "prob_correlation": None, "mean_tv_distance": None}
    pa = both.select([f"{a}:{c}" for c in P_COLS]).to_numpy()
    pb = both.select([f"{b}:{c}" for c in P_COLS]).to_numpy()
    sa, sb = both[f"{a}:stance"].to_list(), both[f"{b}:stance"].to_list()
    flat_a, flat_b = pa.ravel(), pb.ravel()
    corr = float(np.corrcoef(flat_a, flat_b)[0, 1]) if flat_a.std() > 0 and flat_b.std() > 0 else None
    return {"n": len(both), "kappa": cohen_kappa(sa, sb), "agreement": float(np.mean([x == y for x, y in zip(sa, sb)])),
            "prob_correlation": corr, "mean_tv_distance": float(0.5 * np.abs(pa - pb).sum(axis=1).mean())}


def agreement(stance_files: dict[str, dict[str, str]], questions: str, output: str, disagreements: str,
              generations: dict[str, str], *, top: int = 20) -> pl.DataFrame:
    """Agreement per topic and judge pair (CSV), and the ``top`` most disagreed responses (CSV).

    ``stance_files``: judge name -> model key -> stance file; ``generations``: model key -> file."""
    if len(stance_files) < 2:
        raise ValueError(f"a panel needs at least two judges, got {list(stance_files)}")
    frame = joined(stance_files, questions)
    names = list(stance_files)
    rows = []
    for a, b in itertools.combinations(names, 2):
        rows.append({"topic": "all", "judge_a": a, "judge_b": b, **pair_agreement(frame, a, b)})
        for topic in sorted(frame["topic"].drop_nulls().unique().to_list()):
            rows.append({"topic": topic, "judge_a": a, "judge_b": b,
                         **pair_agreement(frame.filter(pl.col("topic") == topic), a, b)})
    table = pl.DataFrame(rows, schema={"topic": pl.String, "judge_a": pl.String, "judge_b": pl.String, "n": pl.Int64,
                                       "kappa": pl.Float64, "agreement": pl.Float64, "prob_correlation": pl.Float64,
                                       "mean_tv_distance": pl.Float64})
    _write_csv(table, output)
    _write_csv(most_disagreed(frame, names, generations, questions, top), disagreements)
    log.info("panel of %d judges over %d responses -> %s", len(names), len(frame), output)
    return table


def most_disagreed(frame: pl.DataFrame, names: list[str], generations: dict[str, str], questions: str,
                   top: int) -> pl.DataFrame:
    tv = np.zeros(len(frame))
    for a, b in itertools.combinations(names, 2):
        pa = frame.select([f"{a}:{c}" for c in P_COLS]).to_numpy()
        pb = frame.select([f"{b}:{c}" for c in P_COLS]).to_numpy()
        d = 0.5 * np.abs(pa - pb).sum(axis=1)
        tv = np.fmax(tv, np.nan_to_num(d, nan=0.0))
    worst = frame.with_columns(pl.Series("max_tv_distance", tv)).sort("max_tv_distance", descending=True).head(top)
    gens = pl.concat([tables.read(p, "generations").select("question_id", "sample", "response")
                      .with_columns(pl.lit(m).alias("model")) for m, p in sorted(generations.items())])
    qs = tables.read(questions, "questions").select("question_id", "question")
    worst = worst.join(gens, on=["model", "question_id", "sample"], how="left").join(qs, on="question_id", how="left")
    keep = ["model", "question_id", "sample", "topic", "question", "response", "max_tv_distance",
            *[f"{n}:stance" for n in names], *[f"{n}:{c}" for n in names for c in P_COLS]]
    return worst.select(keep).sort("max_tv_distance", descending=True)


def option_mass_table(stance_files: dict[str, str], output: str, *, floor: float = 0.0) -> pl.DataFrame:
    """Option-mass distribution of one judge per model (and ``all``), with the share below ``floor``."""
    frame = _stances(stance_files)
    rows = [{"model": "all", **mass_summary(frame["option_mass"], floor),
             "unscorable": int((~frame["scorable"]).sum())}]
    for model in sorted(frame["model"].unique().to_list()):
        part = frame.filter(pl.col("model") == model)
        rows.append({"model": model, **mass_summary(part["option_mass"], floor),
                     "unscorable": int((~part["scorable"]).sum())})
    table = pl.DataFrame(rows)
    _write_csv(table, output)
    return table
