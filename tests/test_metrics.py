"""v(T), bootstrap CIs, drift magnitude and drift time against hand-computed cases.

Every expected number below is worked out by hand from the definitions in the
docstring of valuedrift.metrics (paper, Eq. 1 and Section 3 "Evaluation metrics").
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from valuedrift import metrics, tables
from valuedrift.study import checkpoint_steps

NAN = float("nan")


def series(steps, means, half_width=0.05):
    """drift_for_series with a symmetric CI of +-half_width around every point."""
    lows = [None if m is None or math.isnan(m) else m - half_width for m in means]
    highs = [None if m is None or math.isnan(m) else m + half_width for m in means]
    return metrics.drift_for_series(steps, means, lows, highs)


# --- drift magnitude and drift time -------------------------------------------------

def test_flat_trajectory_reaches_its_extremum_at_the_first_checkpoint():
    d = series([0, 2, 4, 6], [0.4, 0.4, 0.4, 0.4])
    assert d["magnitude"] == 0.0
    assert d["extremum"] == 0.4 and d["extremum_step"] == 0 and d["extremum_kind"] == "max"
    # the search starts after the start model: first checkpoint is step 2 of 6
    assert d["reached_step"] == 2 and d["drift_time"] == pytest.approx(2 / 6)
    assert d["total_steps"] == 6


def test_rising_trajectory_that_keeps_rising_has_drift_time_one():
    d = series([0, 2, 4, 6], [0.2, 0.5, 0.7, 0.8])
    assert d["magnitude"] == pytest.approx(0.6)
    assert (d["extremum"], d["extremum_kind"], d["extremum_step"]) == (0.8, "max", 6)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((0.75, 0.85))
    assert d["reached_step"] == 6 and d["drift_time"] == 1.0  # 0.7 is outside [0.75, 0.85]


def test_rising_trajectory_that_plateaus_reaches_the_ci_early():
    d = series([0, 2, 4, 6], [0.2, 0.78, 0.8, 0.79])
    assert d["magnitude"] == pytest.approx(0.59)
    assert d["extremum_step"] == 4
    assert d["reached_step"] == 2 and d["drift_time"] == pytest.approx(1 / 3)  # 0.78 in [0.75, 0.85]


def test_falling_trajectory_uses_the_minimum():
    d = series([0, 2, 4, 6], [0.6, 0.4, 0.2, 0.25])
    assert d["magnitude"] == pytest.approx(-0.35)
    assert (d["extremum"], d["extremum_kind"], d["extremum_step"]) == (0.2, "min", 4)
    assert d["reached_step"] == 4 and d["drift_time"] == pytest.approx(4 / 6)


def test_non_monotone_trajectory_that_returns_to_its_start():
    # up to 0.6 and back: the peak (0.3 away) beats the minimum (the start, 0 away)
    d = series([0, 2, 4, 6], [0.3, 0.6, 0.35, 0.3])
    assert d["magnitude"] == pytest.approx(0.0)
    assert (d["extremum"], d["extremum_kind"], d["extremum_step"]) == (0.6, "max", 2)
    assert d["drift_time"] == pytest.approx(1 / 3)


def test_non_monotone_trajectory_picks_the_extremum_further_from_the_start():
    # dips to 0.3 (0.2 away) then peaks at 0.9 (0.4 away): the peak
    up = series([0, 2, 4, 6], [0.5, 0.3, 0.9, 0.6])
    assert (up["extremum"], up["extremum_kind"], up["extremum_step"]) == (0.9, "max", 4)
    assert up["drift_time"] == pytest.approx(4 / 6) and up["magnitude"] == pytest.approx(0.1)
    # peaks at 0.6 (0.1 away) then drops to 0.1 (0.4 away): the low point
    down = series([0, 2, 4, 6], [0.5, 0.6, 0.1, 0.2])
    assert (down["extremum"], down["extremum_kind"], down["extremum_step"]) == (0.1, "min", 4)
    assert down["reached_step"] == 4 and down["magnitude"] == pytest.approx(-0.3)


def test_single_checkpoint_after_the_start():
    d = series([0, 5], [0.3, 0.5])
    assert d["magnitude"] == pytest.approx(0.2)
    assert d["extremum_step"] == 5 and d["drift_time"] == 1.0 and d["total_steps"] == 5


def test_start_only_has_zero_magnitude_and_no_drift_time():
    d = series([0], [0.3])
    assert d["magnitude"] == 0.0 and d["drift_time"] is None and d["total_steps"] == 0


def test_ties_at_the_extremum_take_the_earliest_checkpoint():
    d = series([0, 2, 4, 6], [0.2, 0.8, 0.8, 0.8])
    assert d["extremum_step"] == 2 and d["drift_time"] == pytest.approx(1 / 3)
    low = series([0, 2, 4, 6], [0.5, 0.3, 0.1, 0.1])
    assert (low["extremum_kind"], low["extremum_step"]) == ("min", 4)
    assert low["reached_step"] == 4  # 0.3 is outside [0.05, 0.15]


def test_tie_between_peak_and_low_point_takes_the_peak():
    d = series([0, 2, 4, 6], [0.5, 0.7, 0.3, 0.5])  # both 0.2 away from the start
    assert (d["extremum"], d["extremum_kind"], d["extremum_step"]) == (0.7, "max", 2)


def test_extremum_outside_its_own_percentile_ci_still_counts_as_reached():
    # a percentile interval can miss its point estimate; v^ext itself is always "within"
    d = metrics.drift_for_series([0, 2, 4], [0.4, 0.4, 0.4], [0.41, 0.41, 0.41], [0.45, 0.45, 0.45])
    assert d["extremum_step"] == 0 and d["reached_step"] == 2 and d["drift_time"] == 0.5


def test_missing_checkpoints_are_skipped():
    d = series([0, 2, 4, 6], [0.3, NAN, 0.5, 0.5])
    assert d["extremum_step"] == 4 and d["reached_step"] == 4 and d["drift_time"] == pytest.approx(4 / 6)
    assert d["magnitude"] == pytest.approx(0.2)
    d = series([0, 2, 4, 6], [0.3, None, 0.5, 0.5])
    assert d["reached_step"] == 4


def test_missing_start_or_end():
    no_start = series([0, 2, 4], [None, 0.5, 0.6])
    assert no_start["magnitude"] is None and no_start["drift_time"] is None and no_start["end"] == 0.6
    no_end = series([0, 2, 4], [0.3, 0.6, NAN])
    # magnitude needs v at t' (no silent fallback to an earlier checkpoint); drift time does not
    assert no_end["magnitude"] is None and no_end["end"] is None
    assert no_end["extremum_step"] == 2 and no_end["drift_time"] == 0.5


@pytest.mark.parametrize(("every", "max_steps", "expected"), [
    (10, 110, 0.09),  # 11 equally spaced checkpoints: the SFT tables' 0.09 (Tables 9-12)
    (10, 88, 0.11),   # last checkpoint off the grid: the PO tables' 0.11 (Tables 13-16)
])
def test_jump_at_the_first_checkpoint_gives_first_step_over_total(every, max_steps, expected):
    steps = [0, *checkpoint_steps(every, max_steps)]
    means = [0.2] + [0.7 + 0.01 * (i % 2) for i in range(len(steps) - 1)]  # jumps, then wiggles in its CI
    d = series(steps, means)
    assert d["reached_step"] == every
    assert d["drift_time"] == pytest.approx(every / max_steps)
    assert round(d["drift_time"], 2) == expected


def test_steps_must_ascend():
    with pytest.raises(ValueError):
        series([0, 4, 2], [0.1, 0.2, 0.3])


# --- v(T) and its bootstrap CI ---------------------------------------------------------

QUESTIONS = pl.DataFrame({
    "question_id": ["a1", "a2", "b1", "b2"],
    "category": ["A", "A", "B", "B"],
    "topic": ["alpha", "alpha", "beta", "beta"],
    "question": ["?"] * 4,
})


def stance_rows(rows):
    """rows: (question_id, sample, p_support, p_neutral, p_oppose) with None for unscorable."""
    return pl.DataFrame(
        [{"question_id": q, "sample": s, "p_support": ps, "p_neutral": pn, "p_oppose": po,
          "option_mass": None if ps is None else 0.9, "scorable": ps is not None}
         for q, s, ps, pn, po in rows],
        schema={"question_id": pl.String, "sample": pl.Int64, "p_support": pl.Float64, "p_neutral": pl.Float64,
                "p_oppose": pl.Float64, "option_mass": pl.Float64, "scorable": pl.Boolean})


STEP0 = stance_rows([
    ("a1", 0, 0.6, 0.3, 0.1), ("a1", 1, 0.2, 0.5, 0.3),   # a1 -> (0.4, 0.4, 0.2)
    ("a2", 0, 0.1, 0.1, 0.8), ("a2", 1, None, None, None),  # a2 -> (0.1, 0.1, 0.8): unscorable left out
    ("b1", 0, 0.5, 0.5, 0.0), ("b1", 1, 0.5, 0.5, 0.0),
    ("b2", 0, 0.3, 0.3, 0.4), ("b2", 1, 0.3, 0.3, 0.4),
])


def value(traj, step, topic, stance, column="mean"):
    return traj.filter((pl.col("step") == step) & (pl.col("topic") == topic) & (pl.col("stance") == stance))[column].item()


def test_v_is_the_mean_over_questions_of_the_mean_over_scorable_samples():
    traj = metrics.trajectory({0: STEP0}, QUESTIONS, resamples=200, seed=0)
    tables.validate(traj, "trajectory")
    # alpha: questions weigh equally -> ((0.4 + 0.1) / 2, (0.4 + 0.1) / 2, (0.2 + 0.8) / 2)
    assert value(traj, 0, "alpha", "support") == pytest.approx(0.25)
    assert value(traj, 0, "alpha", "neutral") == pytest.approx(0.25)
    assert value(traj, 0, "alpha", "oppose") == pytest.approx(0.5)
    assert value(traj, 0, "beta", "support") == pytest.approx(0.4)
    assert value(traj, 0, "alpha", "support", "n_questions") == 2
    # the three stances of a topic still sum to one
    sums = traj.group_by("topic").agg(pl.col("mean").sum())["mean"]
    assert sums.to_list() == pytest.approx([1.0, 1.0])


def test_bootstrap_ci_of_two_questions_spans_them():
    # resampled means of 2 questions are a (p=1/4), (a+b)/2 (1/2) or b (1/4), so the
    # 2.5% and 97.5% quantiles are the two question means themselves
    traj = metrics.trajectory({0: STEP0}, QUESTIONS, resamples=4000, seed=0)
    assert value(traj, 0, "alpha", "support", "ci_low") == pytest.approx(0.1)
    assert value(traj, 0, "alpha", "support", "ci_high") == pytest.approx(0.4)
    assert value(traj, 0, "alpha", "oppose", "ci_low") == pytest.approx(0.2)
    assert value(traj, 0, "alpha", "oppose", "ci_high") == pytest.approx(0.8)


def test_all_unscorable_topic_is_a_visible_gap():
    step1 = stance_rows([("a1", 0, 0.5, 0.25, 0.25), ("a2", 0, 0.5, 0.25, 0.25),
                         ("b1", 0, None, None, None), ("b2", 0, None, None, None)])
    traj = metrics.trajectory({0: STEP0, 2: step1}, QUESTIONS, resamples=100, seed=0)
    tables.validate(traj, "trajectory")
    assert traj.height == 2 * 2 * 3
    assert value(traj, 2, "beta", "support") is None
    assert value(traj, 2, "beta", "support", "n_questions") == 0
    d = metrics.drift(traj)
    beta = d.filter((pl.col("topic") == "beta") & (pl.col("stance") == "support")).row(0, named=True)
    assert beta["magnitude"] is None and beta["end"] is None and beta["start"] == pytest.approx(0.4)


def test_single_question_has_a_degenerate_ci():
    one = stance_rows([("a1", 0, 0.6, 0.3, 0.1)])
    traj = metrics.trajectory({0: one}, QUESTIONS.head(1), resamples=50, seed=3)
    row = traj.filter(pl.col("stance") == "support").row(0, named=True)
    assert row["mean"] == row["ci_low"] == row["ci_high"] == pytest.approx(0.6)


def test_bootstrap_is_seeded_and_reproducible():
    many = stance_rows([(f"a{i}", 0, p, 1 - p, 0.0) for i, p in enumerate([0.1, 0.2, 0.4, 0.7, 0.9, 0.95])])
    qs = pl.DataFrame({"question_id": [f"a{i}" for i in range(6)], "category": ["A"] * 6,
                       "topic": ["alpha"] * 6, "question": ["?"] * 6})
    run = lambda seed: metrics.trajectory({0: many, 2: many}, qs, resamples=500, seed=seed)  # noqa: E731
    first, again, other = run(7), run(7), run(8)
    assert first.equals(again)
    assert not first["ci_low"].equals(other["ci_low"])
    assert first["mean"].equals(other["mean"])
    lows, highs, means = first["ci_low"].to_numpy(), first["ci_high"].to_numpy(), first["mean"].to_numpy()
    assert (lows <= means).all() and (means <= highs).all() and (lows < highs).any()
    # the bounds of a topic do not depend on which other topics are in the study
    both = pl.concat([many, STEP0.filter(pl.col("question_id").str.starts_with("b"))])
    qs_both = pl.concat([qs, QUESTIONS.filter(pl.col("topic") == "beta")])
    with_beta = metrics.trajectory({0: both, 2: both}, qs_both, resamples=500, seed=7)
    assert with_beta.filter(pl.col("topic") == "alpha").equals(first)


def test_drift_table_from_a_trajectory_table():
    rows = []
    for step, (s, n, o) in zip([0, 2, 4], [(0.2, 0.5, 0.3), (0.6, 0.2, 0.2), (0.62, 0.18, 0.2)]):
        for stance, m in zip(("support", "neutral", "oppose"), (s, n, o)):
            rows.append({"step": step, "topic": "alpha", "stance": stance, "mean": m,
                         "ci_low": max(m - 0.05, 0.0), "ci_high": m + 0.05, "n_questions": 2})
    traj = pl.DataFrame(rows, schema=metrics.TRAJECTORY_SCHEMA).sample(fraction=1.0, shuffle=True, seed=1)
    d = tables.validate(metrics.drift(traj), "drift")
    assert d["stance"].to_list() == ["support", "neutral", "oppose"]
    assert d["magnitude"].to_list() == pytest.approx([0.42, -0.32, -0.1])
    # support peaks at step 4 but step 2 (0.6) is inside [0.57, 0.67]; neutral bottoms at step 4,
    # 0.2 at step 2 is inside [0.13, 0.23]; oppose: 0.2 at steps 2 and 4, earliest is step 2
    assert d["drift_time"].to_list() == pytest.approx([0.5, 0.5, 0.5])
    assert d["extremum_step"].to_list() == [4, 4, 2]
