r"""Value-drift metrics of the paper (Section 3), implemented once.

Stance distribution of a model on topic T (Eq. 1):

    v(T)_s = E_{x in X_T} [ mean_{i=1..k} p(s | x, y_i, T) ],   y_i ~ pi(. | x)

i.e. the mean over the topic's questions of the mean over the k sampled responses of
the judge's softmaxed option probabilities. Unscorable responses are left out of the
per-question mean; a question with none scorable is left out of the topic mean.

95% confidence intervals: percentile bootstrap over questions (the same resampled
question sets for all three stances), seeded so that a rerun gives the same bounds.

Drift magnitude between the phase's start t and end t' (Section 3, "(1) Drift Magnitude"):

    M_s(t, t') = v_{t'}(T)_s - v_t(T)_s

Drift time (Section 3, "(2) Drift Time"):

    eta_s(t, t') = eta^ext / eta^total

where v^ext is the extremum of v_s along the trajectory (the maximum if it lies
further from the start than the minimum, else the minimum; earliest step on ties),
eta^ext is the number of training steps until v_s first lies within the 95% CI of
v^ext, and eta^total the phase's total steps. The search starts at the first
checkpoint after the start model, so a trajectory that moves at once (or not at all)
gets first_step / total, the paper's 0.09-style values for 11 checkpoints.
"""

from __future__ import annotations

import zlib

import numpy as np
import polars as pl

from .topics import STANCES

PROB_COLUMNS = [f"p_{s}" for s in STANCES]


def question_means(stances: pl.DataFrame, questions: pl.DataFrame) -> pl.DataFrame:
    """Per question: mean over its scorable samples of each stance probability."""
    scored = stances.filter(pl.col("scorable"))
    per_q = scored.group_by("question_id").agg([pl.col(c).mean() for c in PROB_COLUMNS])
    return per_q.join(questions.select("question_id", "topic"), on="question_id", how="inner")


def _stable_seed(*parts: object) -> int:
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def topic_values(per_question: pl.DataFrame, *, resamples: int, confidence: float, seed: int,
                 step: int = 0) -> pl.DataFrame:
    """v(T) and bootstrap CI per topic and stance from per-question means."""
    alpha = (1.0 - confidence) / 2.0
    rows = []
    for topic, group in sorted(per_question.group_by("topic"), key=lambda kv: kv[0][0]):
        topic = topic[0]
        values = group.sort("question_id").select(PROB_COLUMNS).to_numpy()  # (questions, 3)
        n = len(values)
        rng = np.random.default_rng([seed, _stable_seed(topic), step])
        idx = rng.integers(0, n, size=(resamples, n))
        boot = values[idx].mean(axis=1)  # (resamples, 3)
        lows = np.quantile(boot, alpha, axis=0)
        highs = np.quantile(boot, 1 - alpha, axis=0)
        means = values.mean(axis=0)
        for j, stance in enumerate(STANCES):
            rows.append({"step": step, "topic": topic, "stance": stance, "mean": float(means[j]),
                         "ci_low": float(lows[j]), "ci_high": float(highs[j]), "n_questions": n})
    return pl.DataFrame(rows, schema={"step": pl.Int64, "topic": pl.String, "stance": pl.String,
                                      "mean": pl.Float64, "ci_low": pl.Float64,
                                      "ci_high": pl.Float64, "n_questions": pl.Int64})


def trajectory(stances_by_step: dict[int, pl.DataFrame], questions: pl.DataFrame, *,
               resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """The trajectory table: v(T) with CIs for every checkpoint step, topic and stance.

    Topics of the question set that have no scorable response at a step appear with
    null values, so a gap is visible instead of silently missing.
    """
    frames = []
    all_topics = sorted(questions["topic"].unique().to_list())
    for step in sorted(stances_by_step):
        values = topic_values(question_means(stances_by_step[step], questions),
                              resamples=resamples, confidence=confidence, seed=seed, step=step)
        grid = pl.DataFrame({"topic": all_topics}).join(pl.DataFrame({"stance": list(STANCES)}), how="cross")
        frames.append(grid.join(values.drop("step"), on=["topic", "stance"], how="left").with_columns(
            pl.lit(step, dtype=pl.Int64).alias("step"), pl.col("n_questions").fill_null(0)))
    return pl.concat(frames).select("step", "topic", "stance", "mean", "ci_low", "ci_high", "n_questions")


def drift_for_series(steps: list[int], means: list[float | None], lows: list[float | None],
                     highs: list[float | None]) -> dict[str, object]:
    """Drift magnitude and time of one stance trajectory (steps ascending, step 0 = start)."""
    pts = [(s, m, lo, hi) for s, m, lo, hi in zip(steps, means, lows, highs)
           if m is not None and not np.isnan(m)]
    total = (steps[-1] - steps[0]) if steps else 0
    out: dict[str, object] = {"magnitude": None, "drift_time": None, "start": None, "end": None,
                              "extremum": None, "extremum_kind": None, "extremum_step": None,
                              "ci_low": None, "ci_high": None, "reached_step": None, "total_steps": total}
    if not pts or pts[0][0] != steps[0]:
        # without the start value there is no drift to speak of
        if pts:
            out["end"] = pts[-1][1]
        return out
    start, end = pts[0][1], pts[-1][1]
    out.update(start=start, end=end, magnitude=end - start)
    hi_pt = max(pts, key=lambda p: (p[1], -p[0]))  # earliest step among ties
    lo_pt = min(pts, key=lambda p: (p[1], p[0]))
    ext = hi_pt if abs(hi_pt[1] - start) >= abs(lo_pt[1] - start) else lo_pt
    kind = "max" if ext is hi_pt else "min"
    ext_step, ext_val, ext_lo, ext_hi = ext
    out.update(extremum=ext_val, extremum_kind=kind, extremum_step=ext_step, ci_low=ext_lo, ci_high=ext_hi)
    for s, m, _, _ in pts[1:]:
        if s == ext_step or (ext_lo is not None and ext_lo <= m <= ext_hi):
            out["reached_step"] = s
            break
    if out["reached_step"] is not None and total > 0:
        out["drift_time"] = (out["reached_step"] - steps[0]) / total
    return out


def drift(trajectory_table: pl.DataFrame) -> pl.DataFrame:
    """The drift table (one row per topic and stance) from a trajectory table."""
    rows = []
    steps = sorted(trajectory_table["step"].unique().to_list())
    for (topic, stance), group in sorted(trajectory_table.group_by(["topic", "stance"]),
                                         key=lambda kv: (kv[0][0], STANCES.index(kv[0][1]))):
        g = group.sort("step")
        by_step = {r["step"]: r for r in g.iter_rows(named=True)}
        rec = drift_for_series(steps, [by_step.get(s, {}).get("mean") for s in steps],
                               [by_step.get(s, {}).get("ci_low") for s in steps],
                               [by_step.get(s, {}).get("ci_high") for s in steps])
        rows.append({"topic": topic, "stance": stance, **rec})
    return pl.DataFrame(rows, schema={
        "topic": pl.String, "stance": pl.String, "magnitude": pl.Float64, "drift_time": pl.Float64,
        "start": pl.Float64, "end": pl.Float64, "extremum": pl.Float64, "extremum_kind": pl.String,
        "extremum_step": pl.Int64, "ci_low": pl.Float64, "ci_high": pl.Float64,
        "reached_step": pl.Int64, "total_steps": pl.Int64})
