"""Drift significance: the paired bootstrap of the drift magnitude on hand-built and simulated cases."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from valuedrift import metrics, pipeline, significance, tables


def questions(n_per_topic: dict[str, int]) -> pl.DataFrame:
    ids = [(f"{t}{i}", t) for t, n in n_per_topic.items() for i in range(n)]
    return pl.DataFrame({"question_id": [q for q, _ in ids], "category": ["C"] * len(ids),
                         "topic": [t for _, t in ids], "question": ["?"] * len(ids)})


def stances(support: dict[str, float | None]) -> pl.DataFrame:
    """One response per question; p_support given, the rest split evenly over neutral and oppose."""
    rows = [{"question_id": q, "sample": 0, "p_support": s, "p_neutral": None if s is None else (1 - s) / 2,
             "p_oppose": None if s is None else (1 - s) / 2, "option_mass": None if s is None else 1.0,
             "scorable": s is not None} for q, s in support.items()]
    return pl.DataFrame(rows, schema={"question_id": pl.String, "sample": pl.Int64, "p_support": pl.Float64,
                                      "p_neutral": pl.Float64, "p_oppose": pl.Float64,
                                      "option_mass": pl.Float64, "scorable": pl.Boolean})


def row(table: pl.DataFrame, topic: str, stance: str) -> dict:
    return table.filter((pl.col("topic") == topic) & (pl.col("stance") == stance)).row(0, named=True)


# --- hand-built cases -------------------------------------------------------------------

def test_every_question_moving_the_same_way_is_significant_and_a_constant_shift_has_a_point_ci():
    qs = questions({"alpha": 5})
    start = {f"alpha{i}": p for i, p in enumerate([0.1, 0.3, 0.5, 0.7, 0.2])}
    end = {q: p + 0.2 for q, p in start.items()}  # very different questions, the same +0.2 each
    sig = significance.magnitude_significance(stances(start), stances(end), qs, resamples=2000, seed=0)
    sup = row(sig, "alpha", "support")
    # every paired difference is 0.2, so every resampled mean difference is 0.2
    assert sup["magnitude_ci_low"] == pytest.approx(0.2) and sup["magnitude_ci_high"] == pytest.approx(0.2)
    assert sup["significant"] and sup["magnitude_p_value"] == pytest.approx(2 / 2001)
    assert sup["paired_questions"] == 5
    # neutral and oppose each drop by 0.1 per question
    assert row(sig, "alpha", "oppose")["magnitude_ci_high"] == pytest.approx(-0.1)
    assert row(sig, "alpha", "oppose")["significant"]


def test_pairing_matters_two_questions_swapping_their_stances_is_no_drift():
    # unpaired, start and end look alike; paired, each question moved by +-0.8
    qs = questions({"alpha": 2})
    sig = significance.magnitude_significance(stances({"alpha0": 0.1, "alpha1": 0.9}),
                                              stances({"alpha0": 0.9, "alpha1": 0.1}), qs, resamples=4000, seed=0)
    sup = row(sig, "alpha", "support")
    # resampled mean differences: +0.8 (1/4), 0 (1/2), -0.8 (1/4): the CI spans both questions' moves
    assert sup["magnitude_ci_low"] == pytest.approx(-0.8) and sup["magnitude_ci_high"] == pytest.approx(0.8)
    assert not sup["significant"] and sup["magnitude_p_value"] == 1.0


def test_no_change_is_not_significant_with_p_one():
    qs = questions({"alpha": 4})
    same = stances({f"alpha{i}": 0.1 * i for i in range(4)})
    sup = row(significance.magnitude_significance(same, same, qs, resamples=500), "alpha", "support")
    assert (sup["magnitude_ci_low"], sup["magnitude_ci_high"], sup["magnitude_p_value"]) == (0.0, 0.0, 1.0)
    assert not sup["significant"]


def test_only_questions_scorable_at_both_ends_are_paired():
    qs = questions({"alpha": 3, "beta": 2})
    start = stances({"alpha0": 0.2, "alpha1": 0.4, "alpha2": None, "beta0": 0.5, "beta1": None})
    end = stances({"alpha0": 0.5, "alpha1": 0.7, "alpha2": 0.9, "beta0": 0.6, "beta1": 0.6})
    sig = significance.magnitude_significance(start, end, qs, resamples=500)
    alpha = row(sig, "alpha", "support")
    assert alpha["paired_questions"] == 2 and alpha["magnitude_ci_low"] == pytest.approx(0.3)
    # one paired question: the CI is its difference, no p-value, never significant
    beta = row(sig, "beta", "support")
    assert beta["paired_questions"] == 1 and beta["magnitude_ci_low"] == beta["magnitude_ci_high"] == pytest.approx(0.1)
    assert beta["magnitude_p_value"] is None and beta["significant"] is False


def test_seeded_and_independent_of_other_topics():
    qs = questions({"alpha": 6, "beta": 6})
    rng = np.random.default_rng(1)
    start = stances({q: float(rng.uniform(0.2, 0.6)) for q in qs["question_id"]})
    end = stances({q: float(rng.uniform(0.3, 0.7)) for q in qs["question_id"]})
    first = significance.magnitude_significance(start, end, qs, resamples=300, seed=5)
    assert first.equals(significance.magnitude_significance(start, end, qs, resamples=300, seed=5))
    assert not first.equals(significance.magnitude_significance(start, end, qs, resamples=300, seed=6))
    alpha_only = significance.magnitude_significance(start, end, qs.filter(pl.col("topic") == "alpha"),
                                                     resamples=300, seed=5)
    assert alpha_only.equals(first.filter(pl.col("topic") == "alpha"))


# --- simulations: detection at the stated confidence ---------------------------------------

def simulate(delta: float, *, confidence: float, simulations: int = 600, n_questions: int = 40,
             resamples: int = 1000, paired: bool = True) -> float:
    """Fraction of simulated studies whose magnitude CI excludes 0.

    Each question has its own stance level (uniform on [0.2, 0.8]: between-question sd 0.17,
    far larger than the drift) and moves by ``delta`` plus noise (sd 0.05 at either end).
    ``paired=False`` resamples start and end questions independently, for comparison.
    """
    rng = np.random.default_rng(12345)
    alpha = (1 - confidence) / 2
    hits = 0
    for _ in range(simulations):
        level = rng.uniform(0.2, 0.8, size=(n_questions, 1))
        start = level + rng.normal(0, 0.05, size=(n_questions, 1))
        end = level + delta + rng.normal(0, 0.05, size=(n_questions, 1))
        if paired:
            low, high, _ = significance.paired_bootstrap(start, end, resamples=resamples, confidence=confidence,
                                                         rng=rng)
        else:
            boot = (end[rng.integers(0, n_questions, (resamples, n_questions))].mean(axis=1)
                    - start[rng.integers(0, n_questions, (resamples, n_questions))].mean(axis=1))
            low, high = np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0)
        hits += bool(low[0] > 0 or high[0] < 0)
    return hits / simulations


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_null_drift_is_called_significant_at_about_one_minus_confidence(confidence):
    alpha = 1 - confidence
    rate = simulate(0.0, confidence=confidence, simulations=2000)
    # 2000 simulations: binomial sd of the rate ~0.005 (alpha 0.05) / ~0.007 (0.1); the percentile
    # bootstrap of 40 questions runs slightly liberal (measured 0.054 / 0.106), hence the wider upper side
    assert alpha - 0.015 <= rate <= alpha + 0.025, rate


def test_true_drift_is_detected():
    # per-question difference sd = 0.05 * sqrt(2) ~ 0.071, standard error over 40 questions ~ 0.011:
    # a drift of 0.04 is 3.6 standard errors, detected with probability ~ 0.95 at confidence 0.95
    # (measured 0.96 / 0.95 over 2000 simulations)
    assert simulate(0.04, confidence=0.95) >= 0.9
    assert simulate(-0.04, confidence=0.95) >= 0.9
    # unpaired (start and end resampled independently) the same drift is swamped by the
    # between-question spread (s.e. of the difference ~0.04; measured 0.002): pairing is what finds it
    assert simulate(0.04, confidence=0.95, simulations=200, paired=False) <= 0.3


# --- the drift table and the ranking --------------------------------------------------------

def write_stances(path, support):
    tables.write(stances(support), path, "stances")
    return str(path)


def test_drift_table_gains_the_significance_columns(tmp_path):
    qs = questions({"alpha": 6, "beta": 6})
    tables.write(qs, tmp_path / "q.parquet", "questions")
    s0 = {**{f"alpha{i}": 0.2 + 0.1 * i for i in range(6)}, **{f"beta{i}": 0.3 + 0.05 * i for i in range(6)}}
    s2 = {**{q: p + 0.05 for q, p in s0.items() if q.startswith("alpha")},
          **{f"beta{i}": 0.3 + 0.05 * ((i + 3) % 6) for i in range(6)}}  # beta: the same values, reshuffled
    s4 = {**s2, **{q: p + 0.25 for q, p in s0.items() if q.startswith("alpha")}}
    paths_ = {step: write_stances(tmp_path / f"s{step}.parquet", s) for step, s in [(0, s0), (2, s2), (4, s4)]}
    pipeline.trajectory(stances=paths_, questions=str(tmp_path / "q.parquet"), output=str(tmp_path / "t.parquet"),
                        resamples=300, confidence=0.95, seed=0)
    pipeline.drift(trajectory=str(tmp_path / "t.parquet"), output=str(tmp_path / "drift.csv"), start=paths_[0],
                   end=paths_[4], questions=str(tmp_path / "q.parquet"), resamples=1000, confidence=0.95, seed=0)
    d = tables.read(tmp_path / "drift.csv", "drift")
    assert d.columns[-5:] == significance.SIGNIFICANCE_COLUMNS
    alpha, beta = row(d, "alpha", "support"), row(d, "beta", "support")
    assert alpha["magnitude"] == pytest.approx(0.25) and alpha["significant"]
    assert alpha["magnitude_ci_low"] == pytest.approx(0.25) and alpha["magnitude_ci_high"] == pytest.approx(0.25)
    # beta's topic mean is unchanged (magnitude 0), its questions only swapped stances
    assert beta["magnitude"] == pytest.approx(0.0, abs=1e-12) and not beta["significant"]
    assert beta["magnitude_ci_low"] < 0 < beta["magnitude_ci_high"]
    # the drift columns are those of metrics.drift, untouched
    plain = metrics.drift(tables.read(tmp_path / "t.parquet", "trajectory"))
    assert d["magnitude"].to_list() == pytest.approx(plain["magnitude"].to_list())
    ranked = significance.largest_significant_drifts(d, n=3)
    assert ranked["topic"].to_list() == ["alpha"] * 3
    assert ranked["stance"].to_list()[0] == "support"  # |0.25| beats neutral's and oppose's |-0.125|


def test_largest_drifts_rank_only_significant_ones():
    d = pl.DataFrame({"run": ["r1", "r1", "r2", "r2"], "topic": ["a", "b", "a", "b"], "stance": ["support"] * 4,
                      "magnitude": [0.5, -0.3, 0.2, None], "significant": [False, True, True, None]})
    ranked = significance.largest_significant_drifts(d, n=5)
    assert ranked.select("run", "topic").rows() == [("r1", "b"), ("r2", "a")]
    with pytest.raises(ValueError, match="significant"):
        significance.largest_significant_drifts(d.drop("significant"))
