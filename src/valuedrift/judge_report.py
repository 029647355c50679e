"""The report's judge sections as plain data, read from the judge-evaluation artifacts.

One function per section; each takes the files it reads (paths from valuedrift.paths)
and returns dicts / polars frames, so the report only lays them out:

- ``validation_section``: per judge, validation accuracy and macro-F1 beside chance, ECE,
  calibration used, and the floor check's verdict (top of the report)
- ``validation_topics``: one judge's per-topic metrics
- ``validation_confusion``: one judge's confusion matrix (true stance x predicted, unscorable)
- ``trained_judge_section``: how a classifier judge was trained; for a distilled one its
  agreement with the teacher on held-out responses and the teacher calls saved
- ``option_mass_section``: the option-mass distribution per judge
- ``panel_section``: agreement per topic and judge pair, and the most disagreed responses
- ``human_review_section``: human-judge agreement per judge
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl


def _json(path) -> dict:
    return json.loads(Path(path).read_text())


def validation_section(metrics: dict[str, str], floor_checks: dict[str, str] | None = None) -> pl.DataFrame:
    """``metrics``/``floor_checks``: judge name -> validation metrics.json / accepted.json."""
    rows = []
    for name, path in metrics.items():
        m = _json(path)
        o = m["overall"]
        floor = _json(floor_checks[name]) if floor_checks and name in floor_checks else {}
        rows.append({"judge": name, "description": m["description"], "n": o["n"], "accuracy": o["accuracy"],
                     "macro_f1": o["macro_f1"], "chance_accuracy": o["chance_accuracy"],
                     "chance_macro_f1": o["chance_macro_f1"], "ece": o["ece"], "calibration": m["calibration"],
                     "calibration_used": m["calibration_used"],
                     "accuracy_raw": m["variants"]["raw"]["accuracy"],
                     "accuracy_calibrated": m["variants"].get("calibrated", {}).get("accuracy"),
                     "min_macro_f1": floor.get("min_macro_f1"), "passes_floor": floor.get("passes"),
                     "accepted_below_floor": floor.get("accepted_below_floor"),
                     "validation_file": m["validation_file"], "seconds": m["seconds"]})
    return pl.DataFrame(rows)


def validation_topics(per_topic_csv: str) -> pl.DataFrame:
    return pl.read_csv(per_topic_csv)


def validation_confusion(metrics: str) -> dict[str, dict[str, int]]:
    """True stance -> predicted stance (and ``unscorable``) -> count, over the whole validation set."""
    return _json(metrics)["overall"]["confusion"]


def trained_judge_section(report: str) -> dict:
    """The classifier's training report (classifier.json), the headline numbers first."""
    r = _json(report)
    keys = (["source", "teacher", "study_responses", "sampled", "held_out", "agreement", "kappa", "teacher_calls",
             "calls_saved", "teacher_cost"] if r["source"] == "distill" else ["source", "train_file", "items"])
    return {"headline": {k: r.get(k) for k in keys}, "chosen": r["chosen"], "train_seconds": r["train_seconds"],
            "cross_validation": pl.DataFrame(r["cross_validation"])}


def option_mass_section(tables: dict[str, str]) -> pl.DataFrame:
    """``tables``: judge name -> option-mass.csv; the ``all`` row of each."""
    frames = [pl.read_csv(path).filter(pl.col("model") == "all").drop("model").with_columns(pl.lit(name).alias("judge"))
              for name, path in tables.items()]
    return pl.concat(frames, how="diagonal_relaxed").select("judge", pl.exclude("judge"))


def panel_section(agreement_csv: str, disagreements_csv: str, *, top: int = 10) -> dict[str, pl.DataFrame]:
    return {"agreement": pl.read_csv(agreement_csv), "disagreements": pl.read_csv(disagreements_csv).head(top)}


def human_review_section(agreement_csv: str) -> pl.DataFrame:
    return pl.read_csv(agreement_csv)
