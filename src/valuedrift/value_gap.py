"""Value gap of preference data (paper Appendix K.3-K.4, Figure 20).

Per preference pair (a retrieved datapoint and its topic, ``dataset_stance``), the value
gap is the Euclidean distance between the stance vectors (p_support, p_neutral, p_oppose)
of its chosen and its rejected reply: 0 when both take the same stance, sqrt(2) ~ 1.414
when each puts all its mass on a different stance. A pair with an unscorable side has none.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import polars as pl

from .dataset_stance import write_parquet_or_csv
from .topics import STANCES

MAX_GAP = math.sqrt(2.0)
PROBS = [f"p_{s}" for s in STANCES]


def euclidean(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)))


def pair_gaps(stances: pl.DataFrame) -> pl.DataFrame:
    """row, topic, gap (and both stance vectors) per pair whose two replies were scored."""
    sides = {role: stances.filter((pl.col("role") == role) & pl.col("scorable"))
             .select("row", "topic", *[pl.col(p).alias(f"{role}_{p}") for p in PROBS])
             for role in ("chosen", "rejected")}
    pairs = sides["chosen"].join(sides["rejected"], on=["row", "topic"], how="inner")
    gap = sum((pl.col(f"chosen_{p}") - pl.col(f"rejected_{p}")) ** 2 for p in PROBS).sqrt()
    return pairs.with_columns(gap.alias("gap")).sort("topic", "row")


def write_gaps(stances: str, output: str) -> None:
    df = pl.read_parquet(stances)
    if not (df["role"] == "chosen").any() and len(df):
        raise ValueError(f"{stances}: not a preference dataset's stances (no chosen replies)")
    write_parquet_or_csv(pair_gaps(df), output)


def summary_table(gaps: dict[str, pl.DataFrame], *, large: float = 0.5) -> pl.DataFrame:
    """Per dataset: pairs, mean, standard deviation, quartiles, and the share of pairs whose gap exceeds ``large``."""
    rows = []
    for name, df in gaps.items():
        g = df["gap"].to_numpy()
        stats = {"mean": g.mean(), "std": g.std(ddof=1) if len(g) > 1 else 0.0, "q25": np.quantile(g, 0.25),
                 "median": np.median(g), "q75": np.quantile(g, 0.75), "max": g.max(),
                 f"share_above_{large:g}": (g > large).mean()} if len(g) else {}
        rows.append({"dataset": name, "pairs": len(g), **{k: float(v) for k, v in stats.items()}})
    cols = ["mean", "std", "q25", "median", "q75", "max", f"share_above_{large:g}"]
    return pl.DataFrame(rows, schema={"dataset": pl.String, "pairs": pl.Int64, **{c: pl.Float64 for c in cols}})


def summary(gaps: dict[str, str], output: str) -> None:
    write_parquet_or_csv(summary_table({name: pl.read_parquet(p) for name, p in gaps.items()}), output)


def histogram_chart(gaps: dict[str, pl.DataFrame], *, bins: int = 20,
                    title: str = "Value gap of preference pairs (App. K.3-K.4)"):
    """Figure 20: per dataset, the histogram of gaps over [0, sqrt(2)] (share of its pairs)."""
    import altair as alt

    edges = np.linspace(0.0, MAX_GAP, bins + 1)
    rows = []
    for name, df in gaps.items():
        counts, _ = np.histogram(np.clip(df["gap"].to_numpy(), 0, MAX_GAP), bins=edges)
        total = max(int(counts.sum()), 1)
        rows += [{"dataset": name, "lo": float(lo), "hi": float(hi), "pairs": int(c), "share": c / total}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    data = pl.DataFrame(rows, schema={"dataset": pl.String, "lo": pl.Float64, "hi": pl.Float64,
                                      "pairs": pl.Int64, "share": pl.Float64})
    return (alt.Chart(data.to_pandas()).mark_bar()
            .encode(x=alt.X("lo:Q", bin="binned", title="Euclidean distance, chosen vs rejected stance",
                            scale=alt.Scale(domain=[0, MAX_GAP])),
                    x2="hi:Q", y=alt.Y("share:Q", title="share of pairs", axis=alt.Axis(format="%")),
                    tooltip=["dataset:N", alt.Tooltip("lo:Q", format=".2f"), alt.Tooltip("hi:Q", format=".2f"),
                             "pairs:Q", alt.Tooltip("share:Q", format=".1%")])
            .properties(width=220, height=150)
            .facet(column=alt.Column("dataset:N", title=None))
            .properties(title=title))


def histogram_figure(gaps: dict[str, str], *, html: str, png: str) -> None:
    from .report.figures import save_chart

    save_chart(histogram_chart({name: pl.read_parquet(p) for name, p in gaps.items()}), html_path=html,
               png_path=png, title="Value gap of preference pairs")


def write_summary(gaps: dict[str, str], *, table: str, html: str, png: str) -> None:
    """The value-gap summary (csv) and the Figure 20 histograms (html, png)."""
    summary(gaps, table)
    histogram_figure(gaps, html=html, png=png)
