r"""Value-drift metrics of the paper (Section 3), implemented once.

Notation: a *phase* (one run: SFT of a base model, or PO of an SFT model) has
checkpoints at steps t_0 = 0 < t_1 < ... < t_n; step 0 is the phase's start model
(the base model for SFT, the final SFT checkpoint for PO). S = {support, neutral,
oppose}; X_T are the questions of topic T; y_1..y_k are k sampled responses.

Stance distribution v(T), the paper's Eq. 1
--------------------------------------------

    v_t(T)_s = E_{x in X_T} E_{y ~ pi_t(.|x)} [ p(s | x, y, T) ]

estimated as in Section 3 ("Evaluation setup") by the mean over the topic's
questions of the mean over each question's k responses:

    v_t(T)_s = 1/|X_T'| * sum_{x in X_T'}  1/|Y_x| * sum_{y in Y_x} p(s | x, y, T)

where p(. | x, y, T) is the judge's softmax over the three option tokens, Y_x the
*scorable* responses to x (an unscorable response has no stance; it is left out,
never imputed) and X_T' the questions with at least one scorable response. A topic
with no scorable response at a step has v = null (shown as a gap, not as a 0).

95% confidence interval of v_t(T)_s: percentile bootstrap over questions. B
resamples of |X_T'| questions drawn with replacement (the same resampled question
sets for all three stances, so the bounds belong to one distribution); the bounds
are the alpha/2 and 1-alpha/2 quantiles (linear interpolation) of the B resampled
means, alpha = 1 - confidence. The generator is seeded by (seed, crc32(topic),
step), so a rerun, or a run with other topics, gives the same bounds.

Drift magnitude (Section 3, "Evaluation metrics", (1))
-------------------------------------------------------

    M_s(t, t') = v_{t'}(T)_s - v_t(T)_s,    t = t_0 (start),  t' = t_n (end)

null when v at the start or at the end is missing. A phase with no checkpoint after
its start (t' = t) has M = 0.

Drift time (Section 3, "Evaluation metrics", (2))
--------------------------------------------------

    eta_s(t, t') = eta^ext / eta^total

* v^ext, the extremum of v_s over the trajectory t_0..t_n: the maximum if it lies at
  least as far from the start value as the minimum (up to float rounding), otherwise
  the minimum (a rising trajectory peaks, a falling one bottoms out, a flat one has
  its extremum at the start). Among checkpoints with the same extreme value, the
  earliest.
* [lo, hi]: the 95% CI of v^ext (the bootstrap CI at the extremum's checkpoint,
  widened to contain v^ext itself should the percentile interval miss it).
* eta^ext = t_r - t_0 with t_r the first checkpoint *after the start* whose v_s lies
  in [lo, hi] (the extremum's own checkpoint always qualifies).
* eta^total = t_n - t_0, the phase's total number of steps.

So a trajectory that moves at its first checkpoint and stays (or never moves) has
eta = t_1 / t_n, the paper's 0.09-style values (1/11 for 11 equally spaced
checkpoints); one that keeps moving until the end has eta = 1. Checkpoints where
v_s is null are skipped. eta is null when the phase has no step after its start.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import polars as pl

from .topics import STANCES

PROB_COLUMNS = [f"p_{s}" for s in STANCES]

TRAJECTORY_SCHEMA = {"step": pl.Int64, "topic": pl.String, "stance": pl.String, "mean": pl.Float64,
                     "ci_low": pl.Float64, "ci_high": pl.Float64, "n_questions": pl.Int64}

DRIFT_SCHEMA = {"topic": pl.String, "stance": pl.String, "magnitude": pl.Float64, "drift_time": pl.Float64,
                "start": pl.Float64, "end": pl.Float64, "extremum": pl.Float64, "extremum_kind": pl.String,
                "extremum_step": pl.Int64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                "reached_step": pl.Int64, "total_steps": pl.Int64}


def question_means(stances: pl.DataFrame, questions: pl.DataFrame) -> pl.DataFrame:
    """Per question: mean over its scorable responses of each stance probability (inner mean of Eq. 1)."""
    scored = stances.filter(pl.col("scorable") & pl.all_horizontal(pl.col(PROB_COLUMNS).is_not_nan()))
    per_q = scored.group_by("question_id").agg([pl.col(c).mean() for c in PROB_COLUMNS])
    return per_q.join(questions.select("question_id", "topic"), on="question_id", how="inner")


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def bootstrap_ci(values: np.ndarray, *, resamples: int, confidence: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap bounds of the column means of ``values`` (questions x stances).

    Rows (questions) are resampled with replacement; every column is averaged over the
    same resampled rows.
    """
    n = len(values)
    alpha = (1.0 - confidence) / 2.0
    idx = rng.integers(0, n, size=(resamples, n))
    boot = values[idx].mean(axis=1)  # (resamples, stances)
    return np.quantile(boot, alpha, axis=0), np.quantile(boot, 1.0 - alpha, axis=0)


def topic_values(per_question: pl.DataFrame, *, resamples: int, confidence: float, seed: int,
                 step: int = 0) -> pl.DataFrame:
    """v(T) (outer mean of Eq. 1) and its bootstrap CI per topic and stance, from per-question means."""
    rows = []
    for (topic,), group in sorted(per_question.group_by("topic"), key=lambda kv: kv[0][0]):
        values = group.sort("question_id").select(PROB_COLUMNS).to_numpy()  # (questions, 3)
        rng = np.random.default_rng([seed, _stable_seed(topic), step])
        lows, highs = bootstrap_ci(values, resamples=resamples, confidence=confidence, rng=rng)
        means = values.mean(axis=0)
        for j, stance in enumerate(STANCES):
            rows.append({"step": step, "topic": topic, "stance": stance, "mean": float(means[j]),
                         "ci_low": float(lows[j]), "ci_high": float(highs[j]), "n_questions": len(values)})
    return pl.DataFrame(rows, schema=TRAJECTORY_SCHEMA)


def trajectory(stances_by_step: dict[int, pl.DataFrame], questions: pl.DataFrame, *,
               resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """The trajectory table: v(T) with CIs for every checkpoint step, topic and stance.

    Topics of the question set that have no scorable response at a step appear with
    null values, so a gap is visible instead of silently missing.
    """
    if not stances_by_step:
        raise ValueError("a trajectory needs the stances of at least one checkpoint")
    all_topics = sorted(questions["topic"].unique().to_list())
    grid = pl.DataFrame({"topic": all_topics}).join(pl.DataFrame({"stance": list(STANCES)}), how="cross")
    frames = []
    for step in sorted(stances_by_step):
        values = topic_values(question_means(stances_by_step[step], questions),
                              resamples=resamples, confidence=confidence, seed=seed, step=step)
        frames.append(grid.join(values.drop("step"), on=["topic", "stance"], how="left").with_columns(
            pl.lit(step, dtype=pl.Int64).alias("step"), pl.col("n_questions").fill_null(0)))
    return pl.concat(frames).select(list(TRAJECTORY_SCHEMA))


def _present(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def drift_for_series(steps: list[int], means: list[float | None], lows: list[float | None],
                     highs: list[float | None]) -> dict[str, Any]:
    """Drift magnitude and drift time of one stance trajectory.

    ``steps`` ascending, ``steps[0]`` the phase's start; ``means``/``lows``/``highs``
    aligned with it (None or NaN where v is missing). Returns the drift.csv fields.
    """
    if list(steps) != sorted(set(steps)):
        raise ValueError(f"steps must be strictly ascending: {steps}")
    total = (steps[-1] - steps[0]) if steps else 0
    out: dict[str, Any] = {"magnitude": None, "drift_time": None, "start": None, "end": None,
                           "extremum": None, "extremum_kind": None, "extremum_step": None,
                           "ci_low": None, "ci_high": None, "reached_step": None, "total_steps": total}
    if not steps:
        return out
    pts = [(s, m, lo if _present(lo) else None, hi if _present(hi) else None)
           for s, m, lo, hi in zip(steps, means, lows, highs) if _present(m)]
    start = means[0] if _present(means[0]) else None
    end = means[-1] if _present(means[-1]) else None
    out.update(start=start, end=end)
    if start is None:
        return out  # without the start value there is no drift to speak of
    if end is not None:
        out["magnitude"] = end - start

    # the extremum: the max if at least as far from the start as the min; earliest step among equal values
    hi_pt = max(pts, key=lambda p: (p[1], -p[0]))
    lo_pt = min(pts, key=lambda p: (p[1], p[0]))
    d_hi, d_lo = abs(hi_pt[1] - start), abs(lo_pt[1] - start)
    ext = hi_pt if d_hi >= d_lo or math.isclose(d_hi, d_lo, rel_tol=1e-9, abs_tol=1e-12) else lo_pt
    ext_step, ext_val, ext_lo, ext_hi = ext
    out.update(extremum=ext_val, extremum_kind="max" if ext is hi_pt else "min", extremum_step=ext_step,
               ci_low=ext_lo, ci_high=ext_hi)

    # first checkpoint after the start within the extremum's CI (widened to contain the extremum)
    lo = min(ext_val, ext_lo) if ext_lo is not None else ext_val
    hi = max(ext_val, ext_hi) if ext_hi is not None else ext_val
    for s, m, _, _ in pts[1:]:
        if s == ext_step or lo <= m <= hi:
            out["reached_step"] = s
            break
    if out["reached_step"] is not None and total > 0:
        out["drift_time"] = (out["reached_step"] - steps[0]) / total
    return out


def drift(trajectory_table: pl.DataFrame) -> pl.DataFrame:
    """The drift table (one row per topic and stance, stances in S order) from a trajectory table."""
    steps = sorted(trajectory_table["step"].unique().to_list())
    full = (trajectory_table.select("topic", "stance").unique()
            .join(pl.DataFrame({"step": steps}, schema={"step": pl.Int64}), how="cross")
            .join(trajectory_table, on=["topic", "stance", "step"], how="left"))
    rows = []
    for (topic, stance), g in full.group_by(["topic", "stance"]):
        g = g.sort("step")
        rec = drift_for_series(steps, g["mean"].to_list(), g["ci_low"].to_list(), g["ci_high"].to_list())
        rows.append({"topic": topic, "stance": stance, **rec})
    order = {s: i for i, s in enumerate(STANCES)}
    rows.sort(key=lambda r: (r["topic"], order[r["stance"]]))
    return pl.DataFrame(rows, schema=DRIFT_SCHEMA)
