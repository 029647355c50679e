"""Seed variance: the same study repeated over seeds, summarised per topic and stance.

Input: one drift table (valuedrift.metrics.drift, with the significance columns of
valuedrift.significance when present) or one trajectory table per seed. Output:

* drift across seeds: per topic and stance, the mean, standard deviation (ddof = 1),
  minimum and maximum over seeds of the drift magnitude and the drift time, the number
  of seeds with a magnitude, how many of them are significant, and
  ``exceeds_seed_spread``: the mean magnitude lies more than two across-seed standard
  deviations from 0 (|mean| > 2 sd; with fewer than two seeds there is no spread: null).
  "Two standard deviations" is a plain rule, not a test: with 3-5 seeds a t-interval
  would be so wide that it says little more than the per-seed bootstrap already does.
* trajectory across seeds: per step, topic and stance, the mean, sd, min and max of v(T)
  over seeds (the report's seed bands).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import polars as pl

from .topics import STANCES

SEED_SPREAD_FACTOR = 2.0

DRIFT_ACROSS_SEEDS_SCHEMA = {
    "topic": pl.String, "stance": pl.String, "n_seeds": pl.Int64,
    "magnitude_mean": pl.Float64, "magnitude_sd": pl.Float64, "magnitude_min": pl.Float64,
    "magnitude_max": pl.Float64, "drift_time_mean": pl.Float64, "drift_time_sd": pl.Float64,
    "significant_seeds": pl.Int64, "exceeds_seed_spread": pl.Boolean}


def _stacked(tables_by_seed: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    if not tables_by_seed:
        raise ValueError("no seeds: give at least one table")
    return pl.concat([t.with_columns(pl.lit(seed, dtype=pl.Int64).alias("seed")) for seed, t in tables_by_seed.items()],
                     how="diagonal_relaxed")


def drift_across_seeds(drift_by_seed: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """The drift table summarised over seeds (one row per topic and stance, stances in S order)."""
    stacked = _stacked(drift_by_seed)
    if "significant" not in stacked.columns:
        stacked = stacked.with_columns(pl.lit(None, dtype=pl.Boolean).alias("significant"))
    out = (stacked.group_by("topic", "stance").agg(
        pl.col("magnitude").count().alias("n_seeds"),
        pl.col("magnitude").mean().alias("magnitude_mean"), pl.col("magnitude").std().alias("magnitude_sd"),
        pl.col("magnitude").min().alias("magnitude_min"), pl.col("magnitude").max().alias("magnitude_max"),
        pl.col("drift_time").mean().alias("drift_time_mean"), pl.col("drift_time").std().alias("drift_time_sd"),
        pl.col("significant").fill_null(False).sum().cast(pl.Int64).alias("significant_seeds"))
        .with_columns(pl.when(pl.col("n_seeds") >= 2)
                      .then(pl.col("magnitude_mean").abs() > SEED_SPREAD_FACTOR * pl.col("magnitude_sd"))
                      .otherwise(None).alias("exceeds_seed_spread"))
        .with_columns(pl.col("stance").replace_strict({s: i for i, s in enumerate(STANCES)}, return_dtype=pl.Int64)
                      .alias("_order"))
        .sort("topic", "_order").drop("_order"))
    return out.select(list(DRIFT_ACROSS_SEEDS_SCHEMA)).cast(DRIFT_ACROSS_SEEDS_SCHEMA)


def trajectory_across_seeds(trajectory_by_seed: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """v(T) per step, topic and stance over seeds: mean, sd, min, max and the number of seeds with a value."""
    stacked = _stacked(trajectory_by_seed)
    return (stacked.group_by("step", "topic", "stance").agg(
        pl.col("mean").count().alias("n_seeds"), pl.col("mean").mean().alias("mean"),
        pl.col("mean").std().alias("sd"), pl.col("mean").min().alias("min"), pl.col("mean").max().alias("max"))
        .sort("step", "topic", "stance"))


def write_seed_tables(*, drift: Mapping[int, str], trajectory: Mapping[int, str], drift_output: str,
                      trajectory_output: str) -> None:
    """File-in, file-out: per-seed drift.csv and trajectory.parquet -> the two across-seed tables."""
    from . import tables

    if sorted(drift) != sorted(trajectory):
        raise ValueError(f"seeds with a drift table {sorted(drift)} differ from those with a trajectory {sorted(trajectory)}")
    tables.write(drift_across_seeds({int(s): tables.read(p, "drift") for s, p in drift.items()}),
                 drift_output, "drift_across_seeds")
    tables.write(trajectory_across_seeds({int(s): tables.read(p, "trajectory") for s, p in trajectory.items()}),
                 trajectory_output, "trajectory_across_seeds")


# --- the seed-band figure ----------------------------------------------------------------

SEED_BAND_NOTE = "lines: v(T) per stance, mean over seeds; bands: the seeds' range (min to max)"


def seed_bands_chart(across: pl.DataFrame, title: str, options: dict | None = None):
    """Small multiples over topics: the across-seed mean of v(T) per stance, banded by the
    lowest and highest seed (valuedrift.report.figures' look and options)."""
    import altair as alt

    from .report.figures import _colour, figure_options

    opts = figure_options(options)
    x = alt.X("step:Q", title="training step", axis=alt.Axis(tickMinStep=1, grid=False))
    band = alt.Chart().mark_area(opacity=opts["ci_band_opacity"]).encode(
        x=x, y=alt.Y("min:Q", title="v(T)", scale=alt.Scale(domain=[0, 1])), y2="max:Q", color=_colour())
    line = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.6).encode(
        x=x, y=alt.Y("mean:Q"), color=_colour(),
        tooltip=["topic:N", "stance:N", "step:Q", alt.Tooltip("mean:Q", title="mean v(T)", format=".3f"),
                 alt.Tooltip("sd:Q", title="sd over seeds", format=".3f"),
                 alt.Tooltip("min:Q", format=".3f"), alt.Tooltip("max:Q", format=".3f"),
                 alt.Tooltip("n_seeds:Q", title="seeds")])
    return (alt.layer(band, line, data=across.sort("topic", "stance", "step"))
            .properties(width=opts["panel_width"], height=opts["panel_height"])
            .facet(facet=alt.Facet("topic:N", title=None, header=alt.Header(labelFontSize=11, labelFontWeight="bold")),
                   columns=opts["columns"])
            .properties(title=alt.Title(title, subtitle=SEED_BAND_NOTE, anchor="start")))


def seed_bands_figure(trajectory_path: str, *, html: str, png: str, title: str, options: dict | None = None) -> None:
    """File-in, file-out: trajectory-across-seeds.parquet -> the seed-band figure (HTML and PNG)."""
    from . import tables
    from .report.figures import save_chart

    chart = seed_bands_chart(tables.read(trajectory_path, "trajectory_across_seeds"), title, options)
    save_chart(chart, html_path=html, png_path=png, options=options, title=title)


# --- what the seed rules ask (workflow/rules/seeds.smk, trajectories.smk) -----------------------

def seed_table_inputs(by_seed: Mapping[int, Any]) -> dict[str, str]:
    """The inputs of a seed group's across-seed tables (``write_seed_tables``, by the script's
    names ``drift_<seed>`` and ``trajectory_<seed>``): each seed's drift table and trajectory.
    ``by_seed``: seed -> its run or trajectory (anything with a ``model_path``), trained runs
    (``Study.seed_groups``) and external trajectories (``trajectories.seed_groups``) alike."""
    from . import paths

    return {f"{kind}_{seed}": path(member.model_path) for seed, member in by_seed.items()
            for kind, path in (("drift", paths.drift_table), ("trajectory", paths.trajectory_file))}


def seed_bands_outputs(seeds_dir: str) -> dict[str, str]:
    """The seed-band figure (html, png) beside a seed group's across-seed tables in ``seeds_dir``."""
    from . import paths

    return {ext: paths.seed_bands_plot(seeds_dir, ext) for ext in ("html", "png")}


def seed_bands_title(group: str, seeds: Iterable[str]) -> str:
    """The seed-band figure's title: the group and its seeds (an external group's by trajectory name)."""
    return f"v(T) over the seeds of {group}: {', '.join(seeds)}"
