"""Stage 9: a seeded stratified sample of ``per_category`` value-laden questions per category.

A category with fewer questions than needed is an error naming every short category
and its count (``on_shortfall: error``, the default), or, with ``on_shortfall: warn``,
a warning that states the shortfall and a sample holding all it has; never a silent
short sample. Question ids are ``vprism-<prompt id>``.
"""

from __future__ import annotations

import logging
from typing import Any

import polars as pl

log = logging.getLogger("valuedrift")


class ShortfallError(ValueError):
    pass


def shortfall(counts: dict[str, int], need: int) -> list[str]:
    return [f"{cat}: {n} of {need}" for cat, n in counts.items() if n < need]


def sample(filtered: pl.DataFrame, categories: dict[str, str], settings: dict[str, Any]) -> tuple[pl.DataFrame, dict]:
    need, seed = int(settings["per_category"]), int(settings["seed"])
    pool = filtered.filter(pl.col("value_laden")).sort("category", "prompt_id")
    have = dict(pool.group_by("category").len().iter_rows())
    counts = {cat: int(have.get(cat, 0)) for cat in categories}
    short = shortfall(counts, need)
    if short:
        msg = (f"V-PRISM shortfall: {len(short)} of {len(categories)} categories have fewer value-laden "
               f"questions than questions.vprism.sample.per_category={need}: " + "; ".join(short))
        if settings["on_shortfall"] == "error":
            raise ShortfallError(msg + ". Use a larger prompt pool, a lower per_category, looser clustering or "
                                 "selection, or on_shortfall: warn to accept a short sample.")
        log.warning("%s; sampling all of them", msg)
    picked = (pool.filter(pl.col("category").is_in(list(categories)))
                  .with_columns(pl.int_range(pl.len()).shuffle(seed=seed).over("category").alias("_r"))
                  .filter(pl.col("_r") < need)
                  .sort("category", "_r"))
    questions = picked.select(
        ("vprism-" + pl.col("prompt_id")).alias("question_id"), "category", "topic", "question")
    stats = {"input": len(pool), "output": len(questions), "per_category": need, "seed": seed,
             "available": counts, "shortfall": short}
    log.info("sampled %d questions over %d categories (seed %d)", len(questions), questions["category"].n_unique(),
             seed)
    return questions, stats
