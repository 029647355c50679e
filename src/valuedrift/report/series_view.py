"""The report's sections for existing checkpoint series and for seed variance.

* "Existing checkpoint series": every bring-your-own trajectory (config ``trajectories``) with
  its drift table (magnitude, paired-bootstrap CI, significance) and v(T) figure, like a
  trained run, and a link to its drill-down page.
* "Seed variance": every run or series repeated over seeds, with its seed bands on v(T) and,
  per topic and stance, whether the mean drift exceeds the spread over seeds.

The views read only the files of the report rule's input ``series`` (``report_inputs``), and
find each series' files by folder and file name, both from ``valuedrift.paths``: a folder with a
drift table is a series, one with an across-seed drift table a seed group. None (no such files):
the page leaves a section out.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from .. import paths, tables
from .sections import Section, register

_ANY = "_"  # a placeholder run, trajectory or seed group: only the file names of its paths are used


def _drift_name() -> str:
    return paths.file_name(paths.drift_table(_ANY))


def _across_names() -> set[str]:
    """The across-seed drift table's name, of an external seed group and of a trained run's."""
    return {paths.file_name(paths.drift_across_seeds_table(_ANY)), paths.file_name(paths.run_drift_across_seeds(_ANY))}


def report_inputs(trajectories: Iterable[Any], external_seed_groups: Iterable[str],
                  run_seed_groups: Iterable[str]) -> list[str]:
    """The files the two sections read: per trajectory its drift table, figure and drill-down
    page; per seed group (external, then trained runs) its across-seed table and seed bands."""
    files = []
    for t in trajectories:
        mp = t.model_path
        files += [paths.drift_table(mp), paths.trajectory_plot(mp, "png"), paths.trajectory_plot(mp, "html"),
                  paths.drilldown_page(mp)]
    for folder, table in [*[(paths.seed_group_dir(g), paths.drift_across_seeds_table(g)) for g in external_seed_groups],
                          *[(paths.run_seeds_dir(g), paths.run_drift_across_seeds(g)) for g in run_seed_groups]]:
        files += [table, paths.seed_bands_plot(folder, "png"), paths.seed_bands_plot(folder, "html")]
    return files


def _folders(files: list[str] | None, markers: set[str]) -> dict[str, dict[str, str]]:
    """Files by folder, then file name: the folders holding a file named one of ``markers``."""
    by_folder: dict[str, dict[str, str]] = defaultdict(dict)
    for f in files or []:
        by_folder[str(Path(f).parent)][paths.file_name(f)] = f
    return {folder: named for folder, named in by_folder.items() if markers & set(named)}


def _name(folder: str, root: str) -> str:
    return os.path.relpath(folder, root)


def _flags(column: pl.Series) -> pl.Series:
    """A yes/no column as booleans: a CSV column with no value at all (one seed: no spread) reads as text."""
    if column.dtype == pl.Boolean:
        return column
    return column.cast(pl.String).str.to_lowercase().replace_strict({"true": True, "false": False}, default=None,
                                                                    return_dtype=pl.Boolean)


def _yes_no(value: bool | None, none: str = "–") -> str:
    return {True: "yes", False: "no"}.get(value, none)


def _fmt(value: float | None, decimals: int) -> str:
    """Fixed decimals; a value too small for them (a tiny model's drift) in scientific notation, not as 0.00."""
    if value is None:
        return "–"
    if value != 0 and abs(value) < 0.5 * 10 ** -decimals:
        return f"{value:.1e}"
    return f"{value:.{decimals}f}"


def _figure(links, named: dict[str, str], plot, caption: str, fig_id: str) -> dict[str, Any] | None:
    """The folder's figure whose paths ``plot(ext)`` gives (only their file names are compared)."""
    png, page = named.get(paths.file_name(plot("png"))), named.get(paths.file_name(plot("html")))
    if png is None or page is None:
        return None
    return {"id": fig_id, "png": links.rel(png), "html": links.rel(page), "caption": caption}


def series_view(files: list[str] | None, links, decimals: int = 2) -> dict[str, Any] | None:
    """Per existing checkpoint series: its drift per topic and stance (CI, significance) and v(T)."""
    drift_name = _drift_name()
    folders = _folders(files, {drift_name})
    if not folders:
        return None
    out = []
    for folder, named in folders.items():
        name = _name(folder, paths.external_drift_root())
        drift = tables.read(named[drift_name], "drift")
        has_ci = "magnitude_ci_low" in drift.columns  # valuedrift.significance's columns
        if has_ci:
            drift = drift.with_columns(_flags(drift["significant"]))
        rows = []
        for r in drift.iter_rows(named=True):
            ci = (f"[{_fmt(r['magnitude_ci_low'], decimals)}, {_fmt(r['magnitude_ci_high'], decimals)}]"
                  if has_ci and r["magnitude_ci_low"] is not None else "–")
            sig = _yes_no(r["significant"]) if has_ci else "–"
            rows.append([r["topic"], r["stance"], _fmt(r["start"], decimals), _fmt(r["end"], decimals),
                         _fmt(r["magnitude"], decimals), ci, sig, _fmt(r["drift_time"], decimals)])
        steps = int(drift["total_steps"].max()) if drift.height else 0
        significant = int(drift["significant"].fill_null(False).sum()) if has_ci else 0
        files_view = [links(f, label) for label, f in (("drift table", named.get(drift_name)),
                                                        ("answers behind the drift (drill-down)",
                                                         named.get(paths.file_name(paths.drilldown_page(_ANY))))) if f]
        out.append({"id": f"series-{name}", "name": name, "steps": steps, "rows": rows,
                    "significant": significant, "tested": drift.drop_nulls("significant").height if has_ci else 0,
                    "files": files_view,
                    "figure": _figure(links, named, lambda ext: paths.trajectory_plot(_ANY, ext), f"v(T) over the checkpoints of {name}",
                                      f"fig-series-{name}")})
    return {"series": out}


def seeds_view(files: list[str] | None, links, decimals: int = 2) -> dict[str, Any] | None:
    """Per seed group: seed bands on v(T), and per topic and stance whether the drift exceeds the seed spread."""
    across_names = _across_names()
    folders = _folders(files, across_names)
    if not folders:
        return None
    groups = []
    for folder, named in folders.items():
        across_file = next(named[n] for n in sorted(across_names) if n in named)
        external = Path(folder).is_relative_to(paths.seed_group_dir(""))
        name = _name(folder, paths.seed_group_dir("") if external else paths.run_seeds_dir(""))
        across = tables.read(across_file, "drift_across_seeds")
        across = across.with_columns(_flags(across["exceeds_seed_spread"]))
        rows = []
        for r in across.iter_rows(named=True):
            exceeds = _yes_no(r["exceeds_seed_spread"], "– (one seed)")
            rows.append([r["topic"], r["stance"], r["n_seeds"], _fmt(r["magnitude_mean"], decimals),
                         _fmt(r["magnitude_sd"], decimals),
                         f"[{_fmt(r['magnitude_min'], decimals)}, {_fmt(r['magnitude_max'], decimals)}]",
                         f"{r['significant_seeds']} of {r['n_seeds']}", exceeds])
        exceeding = int(across["exceeds_seed_spread"].fill_null(False).sum())
        groups.append({"id": f"seeds-{name}", "name": name, "kind": "checkpoint series" if external else "trained run",
                       "n_seeds": int(across["n_seeds"].max()) if across.height else 0, "rows": rows,
                       "exceeding": exceeding, "tested": across.drop_nulls("exceeds_seed_spread").height,
                       "files": [links(across_file, "across-seed drift table")],
                       "figure": _figure(links, named, lambda ext: paths.seed_bands_plot(folder, ext), f"v(T) over seeds: {name}", f"fig-seeds-{name}")})
    return {"groups": groups}


register(Section("series", "Existing checkpoint series", "series_section.html.j2",
                 lambda c: series_view(c.inputs.get("series"), c.links, c.decimals), before="runs"))
register(Section("seeds", "Seed variance", "seeds_section.html.j2",
                 lambda c: seeds_view(c.inputs.get("series"), c.links, c.decimals), before="runs"))
