"""What the report reads besides tables: training logs out of checkpoints, judge accounting."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import polars as pl

from .. import paths, tables


def _read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def training_log(checkpoints: list[str]) -> pl.DataFrame:
    """(step, metric, value) of every numeric entry the trainer logged in a run's checkpoint folders.

    Each checkpoint's segment file holds the log of the segment that made it; the trainer
    state (``log_history``, the run so far) is the fallback. A later checkpoint's value for a
    step wins.
    """
    values: dict[tuple[int, str], float] = {}
    for folder in checkpoints:
        segment = _read_json(paths.segment_info_in(folder)) or {}
        entries = segment.get("log") or (_read_json(paths.trainer_state_in(folder)) or {}).get("log_history") or []
        for entry in entries:
            step = entry.get("step")
            if step is None:
                continue
            for metric, value in entry.items():
                if metric != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    values[(int(step), metric)] = float(value)
    rows = [{"step": s, "metric": m, "value": v if math.isfinite(v) else None} for (s, m), v in sorted(values.items())]
    return pl.DataFrame(rows, schema={"step": pl.Int64, "metric": pl.String, "value": pl.Float64})


def write_training_log(checkpoints: list[str], output: str) -> None:
    tables.write(training_log(checkpoints), output, "training_log")


ACCOUNTING_ORDER = ["backend", "judge_backend", "responses", "unscorable", "calls", "cache_hits", "prompt_tokens",
                    "completion_tokens", "failures", "cost", "seconds", "mean_option_mass"]
SUMMABLE = {"responses", "unscorable", "calls", "cache_hits", "prompt_tokens", "completion_tokens", "failures",
            "cost", "seconds"}


def judge_accounting(files: dict[str, str]) -> list[dict[str, Any]]:
    """One row per judged model (``files``: model key -> its accounting JSON; missing ones skipped).

    ``judged`` is the model whose responses were judged; the file's ``model`` (the judge) is ``judge_model``.
    """
    rows = []
    for key, path in files.items():
        data = _read_json(path)
        if data is not None:
            fields = {("judge_model" if k == "model" else k): v for k, v in data.items()
                      if not isinstance(v, (dict, list))}
            rows.append({"judged": key, **fields})
    return rows


def accounting_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (a total row last) of the judge accounting section."""
    keys = [k for k in ACCOUNTING_ORDER if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r} - set(keys) - {"judged"})
    body = [[r.get("judged"), *[r.get(k) for k in keys]] for r in rows]
    totals = ["total", *[sum(r.get(k) or 0 for r in rows) if k in SUMMABLE else None for k in keys]]
    return ["judged model", *keys], [*body, totals] if rows else []
