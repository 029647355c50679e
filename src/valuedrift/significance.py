r"""Is a drift distinguishable from zero? A paired bootstrap of the drift magnitude.

The drift magnitude of topic T and stance s is M = v_end(T)_s - v_start(T)_s
(valuedrift.metrics). Both values are means over the same questions X_T, and a
question's stance at the end is strongly tied to its stance at the start (some
questions are simply more contested than others), so the two means are not
independent samples. The confidence interval of M therefore resamples *questions*,
the same resampled questions at start and end:

    d_x = m_end(x)_s - m_start(x)_s       per-question difference of the mean stance
                                           probability over its scorable responses
    M*_b = 1/n * sum_i d_{x_bi}           b = 1..B, x_b1..x_bn drawn with replacement
                                           from the n questions scorable at both ends

* CI: the alpha/2 and 1 - alpha/2 quantiles of M*_1..M*_B, alpha = 1 - confidence
  (the percentile interval, as for v(T) in valuedrift.metrics).
* p-value (two-sided, of "no drift"): 2 * min(#{M*_b <= 0} + 1, #{M*_b >= 0} + 1) / (B + 1),
  capped at 1: the smallest alpha at which the percentile CI would still exclude 0
  (the +1 keeps it above zero: B resamples cannot show a p below 1/(B+1)).
* significant: the CI excludes 0 (ci_low > 0 or ci_high < 0). Fewer than two paired
  questions give no interval worth the name: CI is the point, p null, not significant.

The paired questions are those with a scorable response at both ends, so when some
question is unscorable at one end, the CI is centred on the paired mean difference
rather than exactly on M. The generator is seeded by (seed, crc32(topic), "magnitude"):
a rerun, or a run with other topics, gives the same bounds.

Simulations (tests/test_significance.py): with 40 questions and B = 1000, a null drift
is called significant at about 1 - confidence of the time and a drift of 2.5 standard
errors almost always.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .metrics import PROB_COLUMNS, _stable_seed, question_means
from .topics import STANCES

SIGNIFICANCE_COLUMNS = ["magnitude_ci_low", "magnitude_ci_high", "magnitude_p_value", "significant",
                        "paired_questions"]
SIGNIFICANCE_SCHEMA = {"topic": pl.String, "stance": pl.String, "magnitude_ci_low": pl.Float64,
                       "magnitude_ci_high": pl.Float64, "magnitude_p_value": pl.Float64,
                       "significant": pl.Boolean, "paired_questions": pl.Int64}


def paired_bootstrap(start: np.ndarray, end: np.ndarray, *, resamples: int, confidence: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CI bounds and p-values of the mean of ``end - start`` (questions x stances, rows paired).

    Every stance is averaged over the same resampled questions, at start and end alike.
    """
    if start.shape != end.shape or start.ndim != 2:
        raise ValueError(f"start {start.shape} and end {end.shape} must be the same (questions x stances) shape")
    diffs = end - start
    n = len(diffs)
    alpha = (1.0 - confidence) / 2.0
    boot = diffs[rng.integers(0, n, size=(resamples, n))].mean(axis=1)  # (resamples, stances)
    lows, highs = np.quantile(boot, alpha, axis=0), np.quantile(boot, 1.0 - alpha, axis=0)
    below, above = (boot <= 0).sum(axis=0), (boot >= 0).sum(axis=0)
    p = np.minimum(1.0, 2.0 * (np.minimum(below, above) + 1) / (resamples + 1))
    return lows, highs, p


def magnitude_significance(start_stances: pl.DataFrame, end_stances: pl.DataFrame, questions: pl.DataFrame, *,
                           resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> pl.DataFrame:
    """Per topic and stance: paired-bootstrap CI, p-value and significance of the drift magnitude."""
    start = question_means(start_stances, questions)
    end = question_means(end_stances, questions).drop("topic")
    paired = start.join(end, on="question_id", how="inner", suffix="_end").sort("topic", "question_id")
    rows = []
    for topic in sorted(questions["topic"].unique().to_list()):
        group = paired.filter(pl.col("topic") == topic)
        n = group.height
        if n >= 2:
            rng = np.random.default_rng([seed, _stable_seed(topic), _stable_seed("magnitude")])
            lows, highs, p = paired_bootstrap(group.select(PROB_COLUMNS).to_numpy(),
                                              group.select([f"{c}_end" for c in PROB_COLUMNS]).to_numpy(),
                                              resamples=resamples, confidence=confidence, rng=rng)
        for j, stance in enumerate(STANCES):
            if n >= 2:
                rec = {"magnitude_ci_low": float(lows[j]), "magnitude_ci_high": float(highs[j]),
                       "magnitude_p_value": float(p[j]), "significant": bool(lows[j] > 0 or highs[j] < 0)}
            elif n == 1:
                d = float(group[f"{PROB_COLUMNS[j]}_end"][0] - group[PROB_COLUMNS[j]][0])
                rec = {"magnitude_ci_low": d, "magnitude_ci_high": d, "magnitude_p_value": None, "significant": False}
            else:
                rec = {"magnitude_ci_low": None, "magnitude_ci_high": None, "magnitude_p_value": None,
                       "significant": None}
            rows.append({"topic": topic, "stance": stance, **rec, "paired_questions": n})
    return pl.DataFrame(rows, schema=SIGNIFICANCE_SCHEMA)


def with_significance(drift_table: pl.DataFrame, significance: pl.DataFrame) -> pl.DataFrame:
    """The drift table with the significance columns after its own (row order kept)."""
    out = drift_table.join(significance, on=["topic", "stance"], how="left", maintain_order="left")
    # a missing magnitude has nothing to be significant about
    return out.with_columns(pl.when(pl.col("magnitude").is_null()).then(None)
                            .otherwise(pl.col("significant")).alias("significant"))


def largest_significant_drifts(drift_table: pl.DataFrame, n: int = 8) -> pl.DataFrame:
    """The ``n`` largest drifts (by |magnitude|) among those whose CI excludes 0.

    Works on one run's drift.csv and on the study's long table alike (a ``run`` column,
    when present, takes part in the tie-break so the order is stable).
    """
    if "significant" not in drift_table.columns:
        raise ValueError("the drift table has no 'significant' column (built before drift significance?)")
    keys = [c for c in ("run", "topic", "stance") if c in drift_table.columns]
    return (drift_table.filter(pl.col("significant").fill_null(False))
            .with_columns(pl.col("magnitude").abs().alias("abs_magnitude"))
            .sort(["abs_magnitude", *keys], descending=[True, *[False] * len(keys)])
            .head(n).drop("abs_magnitude"))
