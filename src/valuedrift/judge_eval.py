"""How good a stance judge is, measured on the project's authored validation set.

``data/judge/validation.jsonl``: responses with known stances (support / neutral /
oppose towards the category's topic; balanced per topic), one JSON object a line:
``{"id", "category", "question", "response", "stance", "style"}``. No judge is trained
or calibrated on it (the classifier trains on ``data/judge/train.jsonl``, disjoint).

``score_validation`` runs a judge over it and writes the per-item probabilities, the
metrics (accuracy, macro-F1, confusion matrix, expected calibration error, overall and
per topic, beside chance) as JSON and a per-topic CSV. An LLM judge with calibration
``contextual`` or ``auto`` is scored with and without contextual calibration; ``auto``
keeps it only where it raises validation accuracy (the metrics name the variant used,
and the study's judge job reads that choice). ``check_floor`` fails the study for a
judge below ``judge_validation.min_macro_f1`` unless the config accepts it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from .topics import STANCES, topic_for

log = logging.getLogger("valuedrift")

ITEM_KEYS = ("id", "category", "question", "response", "stance")
ECE_BINS = 10


class JudgeBelowFloor(RuntimeError):
    """A judge's validation macro-F1 is below the configured floor."""


def read_items(path: str | Path) -> pl.DataFrame:
    """A labelled stance file (validation or train), checked line by line; adds ``topic``."""
    rows, ids = [], set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not JSON: {err}") from None
        missing = [k for k in ITEM_KEYS if not isinstance(rec.get(k), str) or not rec[k].strip()]
        if missing:
            raise ValueError(f"{path}:{n}: missing or empty {', '.join(missing)}")
        if rec["stance"] not in STANCES:
            raise ValueError(f"{path}:{n}: stance {rec['stance']!r} is not one of {', '.join(STANCES)}")
        if rec["id"] in ids:
            raise ValueError(f"{path}:{n}: duplicate id {rec['id']!r}")
        try:
            topic = topic_for(rec["category"])
        except KeyError as err:
            raise ValueError(f"{path}:{n}: {err.args[0]}") from None
        ids.add(rec["id"])
        rows.append({"id": rec["id"], "category": rec["category"], "topic": topic, "question": rec["question"],
                     "response": rec["response"], "stance": rec["stance"], "style": rec.get("style") or ""})
    if not rows:
        raise ValueError(f"{path}: no items")
    return pl.DataFrame(rows)


# -- metrics ------------------------------------------------------------------------------

def _probs(table: pl.DataFrame) -> np.ndarray:
    """n x 3 probabilities (NaN rows: unscorable)."""
    return table.select([pl.col(f"p_{s}").cast(pl.Float64).fill_null(float("nan")) for s in STANCES]).to_numpy()


def chance_levels(truth: Sequence[str]) -> dict[str, float]:
    """A judge guessing uniformly at random (expected accuracy and macro-F1), and always the majority stance."""
    n = len(truth)
    share = {s: sum(t == s for t in truth) / n for s in STANCES}
    k = len(STANCES)
    f1 = [2 * share[s] / k / (share[s] + 1 / k) for s in STANCES]
    return {"chance_accuracy": 1 / k, "chance_macro_f1": float(np.mean(f1)),
            "majority_accuracy": max(share.values())}


def classification_metrics(truth: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, confusion matrix and ECE of argmax stances against the truth.

    An unscorable item (NaN probabilities) counts as wrong (its true class missed) and is
    counted in the confusion matrix's ``unscorable`` column; ECE is over scorable items."""
    truth = list(truth)
    n = len(truth)
    scorable = ~np.isnan(probs).any(axis=1)
    pred = [STANCES[int(np.argmax(p))] if ok else None for p, ok in zip(probs, scorable)]
    confusion = {t: {**{p: 0 for p in STANCES}, "unscorable": 0} for t in STANCES}
    for t, p in zip(truth, pred):
        confusion[t][p or "unscorable"] += 1
    f1s = {}
    for s in STANCES:
        tp = confusion[s][s]
        predicted = sum(confusion[t][s] for t in STANCES)
        actual = sum(confusion[s].values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1s[s] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    present = [s for s in STANCES if any(t == s for t in truth)]
    correct = sum(t == p for t, p in zip(truth, pred))
    return {"n": n, "scorable": int(scorable.sum()), "accuracy": correct / n if n else math.nan,
            "macro_f1": float(np.mean([f1s[s] for s in present])) if present else math.nan,
            "f1": f1s, "ece": expected_calibration_error(truth, probs),
            "mean_probabilities": {s: float(np.nanmean(probs[:, k])) if scorable.any() else None
                                   for k, s in enumerate(STANCES)},
            "confusion": confusion, **chance_levels(truth)}


def expected_calibration_error(truth: Sequence[str], probs: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    ok = ~np.isnan(probs).any(axis=1)
    if not ok.any():
        return None
    p = probs[ok]
    conf = p.max(axis=1)
    correct = np.array([STANCES[int(np.argmax(row))] == t for row, t in zip(p, np.array(truth, dtype=object)[ok])])
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    return float(sum(abs(correct[which == b].mean() - conf[which == b].mean()) * (which == b).sum()
                     for b in range(bins) if (which == b).any()) / len(conf))


def metrics_by_topic(items: pl.DataFrame, scored: pl.DataFrame) -> dict[str, Any]:
    """Overall and per-topic metrics of a scored item table (columns p_*, joined on id)."""
    table = items.join(scored, on="id", how="left")
    out = {"overall": classification_metrics(table["stance"].to_list(), _probs(table)), "per_topic": {}}
    for topic in sorted(table["topic"].unique().to_list()):
        part = table.filter(pl.col("topic") == topic)
        out["per_topic"][topic] = classification_metrics(part["stance"].to_list(), _probs(part))
    return out


def per_topic_frame(metrics: dict[str, Any]) -> pl.DataFrame:
    """One row per topic (and ``all``): n, accuracy, macro-F1, ECE, chance."""
    keys = ("n", "scorable", "accuracy", "macro_f1", "ece", "chance_accuracy", "chance_macro_f1")
    rows = [{"topic": "all", **{k: metrics["overall"][k] for k in keys}}]
    rows += [{"topic": t, **{k: m[k] for k in keys}} for t, m in metrics["per_topic"].items()]
    return pl.DataFrame(rows, schema={"topic": pl.String, "n": pl.Int64, "scorable": pl.Int64, "accuracy": pl.Float64,
                                      "macro_f1": pl.Float64, "ece": pl.Float64, "chance_accuracy": pl.Float64,
                                      "chance_macro_f1": pl.Float64})


# -- scoring a judge ----------------------------------------------------------------------

def score_items(judge, items: pl.DataFrame, *, calibration: str = "none", min_option_mass: float = 0.0
                ) -> dict[str, pl.DataFrame]:
    """Scored item tables by variant: ``raw`` always; ``calibrated`` too when calibration
    is ``contextual`` or ``auto`` (columns id, p_*, option_mass, scorable)."""
    from .judge import item_logprobs, stance_row

    qs, rs, ts = items["question"].to_list(), items["response"].to_list(), items["topic"].to_list()
    lps = item_logprobs(judge, qs, rs, ts)
    variants = {"raw": [stance_row(lp, min_option_mass=min_option_mass) for lp in lps]}
    if calibration in ("contextual", "auto"):
        from .calibration import content_free_logprobs

        cf = content_free_logprobs(judge, qs, ts)
        variants["calibrated"] = [stance_row(lp, cf.get(t), min_option_mass=min_option_mass)
                                  for lp, t in zip(lps, ts)]
    schema = {"id": pl.String, **{f"p_{s}": pl.Float64 for s in STANCES}, "option_mass": pl.Float64,
              "scorable": pl.Boolean}
    return {name: pl.DataFrame([{"id": i, **r} for i, r in zip(items["id"], rows)], schema=schema)
            for name, rows in variants.items()}


def choose_variant(calibration: str, metrics: dict[str, dict]) -> str:
    """none -> raw; contextual -> calibrated; auto -> calibrated only if it raises accuracy."""
    if calibration == "contextual":
        return "calibrated"
    if calibration == "auto" and "calibrated" in metrics:
        better = metrics["calibrated"]["overall"]["accuracy"] > metrics["raw"]["overall"]["accuracy"]
        return "calibrated" if better else "raw"
    return "raw"


def score_validation(*, name: str, spec: dict[str, Any], judge_kwargs: dict[str, Any], validation: str,
                     items_out: str, metrics_out: str, per_topic_out: str) -> dict[str, Any]:
    """Score judge ``name`` (config ``spec``) on the validation file; write items, metrics, per-topic CSV."""
    from .judge import make_judge
    from .judge_specs import describe

    items = read_items(validation)
    judge = make_judge(spec["backend"], **judge_kwargs)
    calibration = spec.get("calibration", "none")
    t0 = time.perf_counter()
    scored = score_items(judge, items, calibration=calibration, min_option_mass=spec.get("min_option_mass", 0.0))
    seconds = time.perf_counter() - t0
    variants = {v: metrics_by_topic(items, table) for v, table in scored.items()}
    used = choose_variant(calibration, variants)
    result = {"judge": name, "description": describe(spec), "validation_file": str(validation),
              "calibration": calibration, "variant_used": used, "calibration_used": used == "calibrated",
              **variants[used],
              "variants": {v: {k: m["overall"][k] for k in ("accuracy", "macro_f1", "ece")} for v, m in variants.items()},
              "option_mass": mass_summary(scored["raw"]["option_mass"]),
              "seconds": round(seconds, 2), "accounting": getattr(judge, "accounting", lambda: {})()}
    wide = items.select("id", "topic", "stance", "style")
    for v, table in scored.items():
        wide = wide.join(table.rename({c: f"{c}_{v}" for c in table.columns if c != "id"}), on="id", how="left")
    _write_parquet(wide, items_out)
    _write_text(metrics_out, json.dumps(result, indent=2))
    _write_csv(per_topic_frame(variants[used]), per_topic_out)
    o = result["overall"]
    log.info("judge %s on %s: accuracy %.3f, macro-F1 %.3f (chance %.3f), %s, %.1f s", name, validation,
             o["accuracy"], o["macro_f1"], o["chance_macro_f1"], used, seconds)
    return result


def mass_summary(mass: pl.Series, floor: float | None = None) -> dict[str, Any]:
    """Distribution of the option mass (quantiles; share below ``floor``)."""
    values = mass.drop_nulls().cast(pl.Float64).to_numpy()
    if not len(values):
        return {"n": 0}
    q = np.quantile(values, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1])
    out = {"n": int(len(values)), "mean": float(values.mean()),
           **{k: float(v) for k, v in zip(("min", "p05", "p25", "median", "p75", "p95", "max"), q)}}
    if floor is not None:
        out["below_floor"] = float((values < floor).mean())
    return out


# -- the floor ----------------------------------------------------------------------------

def check_floor(*, name: str, metrics: str, output: str, min_macro_f1: float, accept_below_floor) -> None:
    """Write ``output`` if judge ``name`` reaches the floor or is accepted below it; else raise."""
    result = json.loads(Path(metrics).read_text())
    f1 = result["overall"]["macro_f1"]
    accepted = accept_below_floor is True or (isinstance(accept_below_floor, list) and name in accept_below_floor)
    passes = f1 >= min_macro_f1
    if not passes and not accepted:
        raise JudgeBelowFloor(
            f"judge {name!r} ({result['description']}) reaches macro-F1 {f1:.3f} (accuracy "
            f"{result['overall']['accuracy']:.3f}; chance {result['overall']['chance_macro_f1']:.3f}) on "
            f"{result['validation_file']}, below judge_validation.min_macro_f1 = {min_macro_f1}. Its stances "
            f"cannot be trusted: use a better judge, or accept this one explicitly with "
            f"judge_validation.accept_below_floor: [{name}]")
    _write_text(output, json.dumps({"judge": name, "macro_f1": f1, "min_macro_f1": min_macro_f1,
                                    "passes": passes, "accepted_below_floor": not passes}, indent=2))
    if not passes:
        log.warning("judge %s is below the macro-F1 floor (%.3f < %s) and accepted by the config", name, f1,
                    min_macro_f1)


# -- atomic writers -------------------------------------------------------------------------

def _tmp(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp")


def _write_text(path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text)
    tmp.replace(path)


def _write_parquet(frame: pl.DataFrame, path) -> None:
    tmp = _tmp(path)
    frame.write_parquet(tmp)
    tmp.replace(path)


def _write_csv(frame: pl.DataFrame, path) -> None:
    tmp = _tmp(path)
    frame.write_csv(tmp)
    tmp.replace(path)
