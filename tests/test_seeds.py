"""Seed variance summaries on hand-built drift and trajectory tables."""

from __future__ import annotations

import math

import polars as pl
import pytest

from valuedrift import seeds


def drift_table(rows):
    """rows: (topic, stance, magnitude, drift_time, significant)."""
    return pl.DataFrame([{"topic": t, "stance": s, "magnitude": m, "drift_time": d, "significant": sig}
                         for t, s, m, d, sig in rows],
                        schema={"topic": pl.String, "stance": pl.String, "magnitude": pl.Float64,
                                "drift_time": pl.Float64, "significant": pl.Boolean})


def test_drift_across_seeds_means_spreads_and_the_two_sd_rule():
    by_seed = {
        0: drift_table([("a", "oppose", 0.30, 0.2, True), ("a", "support", 0.10, 0.5, True), ("b", "support", 0.0, 1.0, False)]),
        1: drift_table([("a", "oppose", 0.34, 0.4, True), ("a", "support", -0.10, 0.5, False), ("b", "support", None, None, None)]),
        2: drift_table([("a", "oppose", 0.32, 0.6, True), ("a", "support", 0.06, 0.5, True), ("b", "support", 0.02, 1.0, False)]),
    }
    out = seeds.drift_across_seeds(by_seed)
    assert out.select("topic", "stance").rows() == [("a", "support"), ("a", "oppose"), ("b", "support")]
    oppose = out.row(1, named=True)
    assert oppose["n_seeds"] == 3 and oppose["magnitude_mean"] == pytest.approx(0.32)
    assert oppose["magnitude_sd"] == pytest.approx(0.02)  # sample sd of 0.30, 0.34, 0.32
    assert (oppose["magnitude_min"], oppose["magnitude_max"]) == pytest.approx((0.30, 0.34))
    assert oppose["drift_time_mean"] == pytest.approx(0.4) and oppose["drift_time_sd"] == pytest.approx(0.2)
    assert oppose["significant_seeds"] == 3 and oppose["exceeds_seed_spread"] is True  # 0.32 > 2 * 0.02
    support = out.row(0, named=True)
    # mean 0.02, sd ~0.106: seeds disagree on the sign; two of three seeds were significant on their own
    assert support["magnitude_mean"] == pytest.approx(0.02) and support["exceeds_seed_spread"] is False
    assert support["significant_seeds"] == 2
    b = out.row(2, named=True)
    assert b["n_seeds"] == 2 and b["magnitude_mean"] == pytest.approx(0.01)  # the missing seed is left out
    assert b["magnitude_sd"] == pytest.approx(math.sqrt(0.0002))


def test_one_seed_has_no_spread_and_tables_without_significance_work():
    out = seeds.drift_across_seeds({7: drift_table([("a", "support", 0.2, 0.1, None)]).drop("significant")})
    row = out.row(0, named=True)
    assert row["n_seeds"] == 1 and row["magnitude_sd"] is None and row["exceeds_seed_spread"] is None
    assert row["significant_seeds"] == 0
    with pytest.raises(ValueError, match="no seeds"):
        seeds.drift_across_seeds({})


def test_trajectory_seed_bands():
    def traj(values):
        return pl.DataFrame({"step": [0, 2], "topic": ["a", "a"], "stance": ["support", "support"], "mean": values})

    out = seeds.trajectory_across_seeds({0: traj([0.2, 0.5]), 1: traj([0.4, 0.7]), 2: traj([0.3, None])})
    assert out["step"].to_list() == [0, 2]
    assert out["mean"].to_list() == pytest.approx([0.3, 0.6]) and out["n_seeds"].to_list() == [3, 2]
    assert out["min"].to_list() == pytest.approx([0.2, 0.5]) and out["max"].to_list() == pytest.approx([0.4, 0.7])
    assert out["sd"].to_list() == pytest.approx([0.1, math.sqrt(0.02)])


def test_seed_tables_from_files(tmp_path):
    from valuedrift import tables

    drift, traj = {}, {}
    for seed, m in [(1, 0.3), (2, 0.34)]:
        d = drift_table([("a", "support", m, 0.5, True)])
        full = d.with_columns(*[pl.lit(v).alias(c) for c, v in [
            ("start", 0.2), ("end", 0.2 + m), ("extremum", 0.2 + m), ("extremum_kind", "max")]],
            pl.lit(4, dtype=pl.Int64).alias("extremum_step"), pl.lit(None, dtype=pl.Float64).alias("ci_low"),
            pl.lit(None, dtype=pl.Float64).alias("ci_high"), pl.lit(4, dtype=pl.Int64).alias("reached_step"),
            pl.lit(4, dtype=pl.Int64).alias("total_steps"))
        tables.write(full, tmp_path / f"d{seed}.csv", "drift")
        t = pl.DataFrame({"step": [0, 4], "topic": ["a", "a"], "stance": ["support"] * 2, "mean": [0.2, 0.2 + m],
                          "ci_low": [0.1, 0.1], "ci_high": [0.9, 0.9], "n_questions": [2, 2]})
        tables.write(t, tmp_path / f"t{seed}.parquet", "trajectory")
        drift[seed], traj[seed] = str(tmp_path / f"d{seed}.csv"), str(tmp_path / f"t{seed}.parquet")
    seeds.write_seed_tables(drift=drift, trajectory=traj, drift_output=str(tmp_path / "out.csv"),
                            trajectory_output=str(tmp_path / "out.parquet"))
    out = tables.read(tmp_path / "out.csv", "drift_across_seeds").row(0, named=True)
    assert out["n_seeds"] == 2 and out["magnitude_mean"] == pytest.approx(0.32) and out["exceeds_seed_spread"]
    bands = tables.read(tmp_path / "out.parquet", "trajectory_across_seeds")
    assert bands.filter(pl.col("step") == 4)["max"].item() == pytest.approx(0.54)
    with pytest.raises(ValueError, match="differ"):
        seeds.write_seed_tables(drift=drift, trajectory={1: traj[1]}, drift_output="x", trajectory_output="y")
