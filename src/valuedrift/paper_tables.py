"""The paper's drift tables, built for whatever runs a config holds.

* SFT tables (paper, Tables 9-12): one per base model; rows = metric (drift magnitude,
  drift time) x topic; columns = SFT dataset x stance.
* PO tables (paper, Tables 1 and 13-16): one per SFT model; rows = metric x topic;
  columns = preference data x algorithm x stance.
* Aligned tables (paper, Tables 13-16 exactly): the PO runs of an SFT model on the synthetic
  value-aligned data only, columns = alignment (oppose, support) x algorithm x stance.

Each is written as CSV (full precision, one flat column per group and stance, e.g.
``demo-support/dpo/support``), Markdown and LaTeX (rounded; booktabs + multirow).
A column level with a single value in a table (one preference dataset, say) is
named in the caption instead of above every column, as in Table 1.

All tables come from one long table of every run's drift.csv (``study_drift``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from . import atomic, tables
from .study import Run, algorithm_name
from .topics import STANCES

METRICS: dict[str, str] = {"magnitude": "drift magnitude", "drift_time": "drift time"}

# --- the study's long drift table ------------------------------------------------------

def study_drift(drift_tables: dict[str, pl.DataFrame], runs: Iterable[Run]) -> pl.DataFrame:
    """Every run's drift table stacked, run order kept, with the run's identity in front."""
    frames = []
    for run in runs:
        d = drift_tables[run.model_path]
        frames.append(d.select(*[pl.lit(v, dtype=pl.String).alias(k) for k, v in run.identity.items()], pl.all()))
    if not frames:
        raise ValueError("no runs")
    return pl.concat(frames, how="diagonal_relaxed")  # a seeded run's identity adds its seed


def write_study_drift(drift_files: list[str], runs: list[Run], output: str) -> None:
    """The study's long drift table from each run's drift.csv (``drift_files``, in the order of ``runs``)."""
    drift_tables = {r.model_path: tables.read(f, "drift") for r, f in zip(runs, drift_files, strict=True)}
    tables.write(study_drift(drift_tables, runs), output, "study_drift")


# --- a table in the paper's shape ------------------------------------------------------

@dataclass(frozen=True)
class PaperTable:
    """Rows metric x topic; columns (group, stance), groups named by one or more levels."""

    caption: str
    label: str
    levels: tuple[str, ...]                    # e.g. ("preference data", "algorithm")
    groups: tuple[tuple[str, ...], ...]        # display names per group and level
    keys: tuple[tuple[str, ...], ...]          # raw keys per group and level (CSV column names)
    data: pl.DataFrame                         # metric, topic, then one column per (group, stance)

    @property
    def value_columns(self) -> list[str]:
        return [column_name(k, s) for k in self.keys for s in STANCES]

    def shown_levels(self) -> list[int]:
        """Levels that vary across groups (always at least the innermost one)."""
        shown = [i for i in range(len(self.levels)) if len({g[i] for g in self.groups}) > 1]
        return shown or [len(self.levels) - 1]

    def full_caption(self) -> str:
        fixed = [f"{self.levels[i]}: {self.groups[0][i]}" for i in range(len(self.levels))
                 if i not in self.shown_levels()]
        return self.caption + (f" ({'; '.join(fixed)})" if fixed else "")

    def header_rows(self) -> list[list[tuple[str, int]]]:
        """Header rows above the stance row: (label, span in groups) runs of equal values."""
        rows = []
        for depth, level in enumerate(self.shown_levels()):
            outer = self.shown_levels()[:depth + 1]
            spans: list[tuple[str, int]] = []
            prev = None
            for g in self.groups:
                ident = tuple(g[i] for i in outer)
                if ident == prev:
                    spans[-1] = (spans[-1][0], spans[-1][1] + 1)
                else:
                    spans.append((g[level], 1))
                prev = ident
            rows.append(spans)
        return rows

    def formatted(self, decimals: int) -> list[list[str]]:
        out = []
        for row in self.data.iter_rows(named=True):
            out.append([row["metric"], row["topic"], *[fmt(row[c], decimals) for c in self.value_columns]])
        return out

    # -- renderers --

    def to_markdown(self, decimals: int = 2) -> str:
        shown = self.shown_levels()
        heads = [" / ".join([*(g[i] for i in shown), s]) for g in self.groups for s in STANCES]
        lines = [f"**{self.full_caption()}**", "",
                 "| metric | topic | " + " | ".join(heads) + " |",
                 "|---|---|" + "---:|" * len(heads)]
        previous = None
        for cells in self.formatted(decimals):
            metric = cells[0] if cells[0] != previous else ""
            previous = cells[0]
            lines.append("| " + " | ".join([metric, *(c.replace("|", "\\|") for c in cells[1:])]) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self, decimals: int = 2) -> str:
        n = len(self.value_columns)
        lines = ["% requires \\usepackage{booktabs,multirow}", "\\begin{table}[t]", "\\centering", "\\small",
                 f"\\caption{{{latex_escape(self.full_caption())}}}", f"\\label{{{self.label}}}",
                 "\\resizebox{\\linewidth}{!}{%" if n > 9 else "{%",
                 f"\\begin{{tabular}}{{ll{'r' * n}}}", "\\toprule"]
        for spans in self.header_rows():
            cells, rules, col = [], [], 3
            for label, span in spans:
                width = span * len(STANCES)
                cells.append(f"\\multicolumn{{{width}}}{{c}}{{{latex_escape(label)}}}")
                rules.append(f"\\cmidrule(lr){{{col}-{col + width - 1}}}")
                col += width
            lines.append(" & & " + " & ".join(cells) + " \\\\")
            lines.append("".join(rules))
        lines.append("Metric & Topic & " + " & ".join(s for _ in self.groups for s in STANCES) + " \\\\")
        lines.append("\\midrule")
        rows = self.formatted(decimals)
        for i, metric in enumerate(METRICS.values()):
            block = [r for r in rows if r[0] == metric]
            if i:
                lines.append("\\midrule")
            for j, cells in enumerate(block):
                first = f"\\multirow{{{len(block)}}}{{*}}{{{latex_escape(metric)}}}" if j == 0 else ""
                values = [c if c != "" else "--" for c in cells[2:]]
                lines.append(" & ".join([first, latex_escape(cells[1]), *values]) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}}", "\\end{table}"]
        return "\n".join(lines) + "\n"


def column_name(keys: tuple[str, ...], stance: str) -> str:
    return "/".join([*keys, stance])


def fmt(value: float | None, decimals: int) -> str:
    if value is None:
        return ""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def latex_escape(text: str) -> str:
    out = text.replace("\\", "\\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    return out.replace("~", "\\textasciitilde{}").replace("^", "\\textasciicircum{}")


def _build(study: pl.DataFrame, *, key_columns: list[str], levels: tuple[str, ...], caption: str,
           label: str, display) -> PaperTable:
    if "seed" in study.columns and study["seed"].null_count() < study.height:  # runs repeated over seeds
        study = study.with_columns(pl.col("seed").cast(pl.String).fill_null("none"))
        key_columns, levels = [*key_columns, "seed"], (*levels, "seed")
    groups_df = study.select(key_columns).unique(maintain_order=True)
    keys = tuple(tuple(r) for r in groups_df.iter_rows())
    topics = sorted(study["topic"].unique().to_list())
    keyed = study.with_columns(pl.concat_str([*key_columns, "stance"], separator="/").alias("column"))
    columns = [column_name(k, s) for k in keys for s in STANCES]
    frames = []
    for metric, metric_label in METRICS.items():
        wide = keyed.pivot(on="column", index="topic", values=metric, aggregate_function=None)
        wide = pl.DataFrame({"topic": topics}).join(wide, on="topic", how="left")
        wide = wide.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in columns if c not in wide.columns])
        frames.append(wide.select(pl.lit(metric_label).alias("metric"), "topic",
                                  *[pl.col(c).cast(pl.Float64) for c in columns]))
    return PaperTable(caption=caption, label=label, levels=levels,
                      groups=tuple(tuple(display(level, k) for level, k in zip(key_columns, g)) for g in keys),
                      keys=keys, data=pl.concat(frames))


def _display(level: str, key: str) -> str:
    """A key as its column header: an algorithm by its name, with a run's overrides (``dpo-beta0.5``: DPO (beta0.5))."""
    if level == "seed":
        return f"seed {key}"
    if level != "algorithm":
        return key
    algorithm, _, variant = key.partition("-")
    return algorithm_name(algorithm) + (f" ({variant})" if variant else "")


def _with_algorithm_part(rows: pl.DataFrame) -> pl.DataFrame:
    """``algorithm`` as the run path's algorithm part (``valuedrift.study.Run.algorithm_part``:
    ``dpo-beta0.5`` for a run with overrides, e.g. a sweep's), so that runs differing only in their
    settings get columns of their own. A PO run's own seed (``dpo-seed1``) is left out: the table's
    seed level names it (``_build``), once."""
    leaf = pl.col("run").str.split("/").list.last()
    part = leaf.str.slice(0, leaf.str.len_chars() - pl.col("preference").str.len_chars() - 1)
    if "seed" in rows.columns:
        suffix = pl.lit("-seed") + pl.col("seed").cast(pl.String)
        part = (pl.when(pl.col("seed").is_not_null() & part.str.ends_with(suffix))
                .then(part.str.slice(0, part.str.len_chars() - suffix.str.len_chars())).otherwise(part))
    return rows.with_columns(part.alias("algorithm"))


def sft_table(study: pl.DataFrame, base: str) -> PaperTable:
    """Table 9-12 shape: the SFT runs of ``base``, datasets x stances per topic."""
    rows = study.filter((pl.col("phase") == "sft") & (pl.col("base") == base))
    if rows.is_empty():
        raise ValueError(f"no SFT run of {base} in the study")
    return _build(rows, key_columns=["sft"], levels=("SFT data",), display=_display,
                  caption=f"{base} (SFT): drift magnitude and drift time by topic, split by SFT dataset and stance",
                  label=f"tab:drift-sft-{base}")


def po_table(study: pl.DataFrame, base: str, sft: str) -> PaperTable:
    """Table 1 / 13-16 shape: the PO runs of ``base`` SFT on ``sft``, (preference, algorithm) x stances."""
    rows = study.filter((pl.col("phase") == "po") & (pl.col("base") == base) & (pl.col("sft") == sft))
    if rows.is_empty():
        raise ValueError(f"no preference-optimization run of {base}/sft-{sft} in the study")
    return _build(_with_algorithm_part(rows), key_columns=["preference", "algorithm"], levels=("preference data", "algorithm"),
                  display=_display, label=f"tab:drift-po-{base}-{sft}",
                  caption=(f"{base} SFT on {sft}, preference optimization: drift magnitude and drift time "
                           "by topic, split by preference data, algorithm and stance"))


ALIGNED = {"oppose": "oppose-aligned", "support": "support-aligned"}  # the paper's column order


def aligned_table(study: pl.DataFrame, base: str, sft: str, runs: dict[str, str]) -> PaperTable:
    """Tables 13-16 shape: PO runs of ``base`` SFT on ``sft`` on the synthetic value-aligned data,
    (alignment, algorithm) x stances; ``runs``: run path -> the stance its data chose (support or
    oppose). Oppose-aligned groups first, as in the paper; algorithms in run order."""
    order = {path: i for i, path in enumerate(runs)}
    rows = study.filter((pl.col("base") == base) & (pl.col("sft") == sft) & pl.col("run").is_in(list(runs)))
    if rows.is_empty():
        raise ValueError(f"no run of {base}/sft-{sft} on synthetic data in the study")
    rows = (rows.with_columns(pl.col("run").replace_strict(runs).alias("aligned"),
                              pl.col("run").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
            .sort(pl.col("aligned").replace_strict({k: i for i, k in enumerate(ALIGNED)}, return_dtype=pl.Int64),
                  "_order", maintain_order=True))
    return _build(rows, key_columns=["aligned", "algorithm"], levels=("synthetic data", "algorithm"),
                  display=lambda level, key: ALIGNED[key] if level == "aligned" else _display(level, key),
                  label=f"tab:drift-aligned-{base}-{sft}",
                  caption=(f"{base} SFT on {sft}, preference optimization on synthetic value-aligned data: drift "
                           "magnitude and drift time by topic, split by alignment (oppose vs support), algorithm "
                           "and stance"))


def build(spec: dict[str, Any], study: pl.DataFrame) -> PaperTable:
    if spec["kind"] == "aligned":
        return aligned_table(study, spec["base"], spec["sft"], spec["runs"])
    return sft_table(study, spec["base"]) if spec["kind"] == "sft" else po_table(study, spec["base"], spec["sft"])


def write_tables(*, study: str, outputs: list[dict[str, Any]], decimals: int = 2) -> None:
    """Write each table as CSV, Markdown and LaTeX. ``outputs``: per table its ``spec``
    (``valuedrift.study.Study.table_specs``) and ``files`` (format -> path)."""
    data = tables.read(study, "study_drift")
    for item in outputs:
        table = build(item["spec"], data)
        for ext, path in item["files"].items():
            if ext == "csv":
                atomic.write_csv(table.data, path)
            else:
                atomic.write_text(path, table.to_markdown(decimals) if ext == "md" else table.to_latex(decimals))
