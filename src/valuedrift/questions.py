"""Evaluation questions: a user's own file, or the V-PRISM builder's output.

A question file (JSONL, CSV or Parquet) needs ``question_id``, ``category`` and
``question``; ``topic`` is filled in from the paper's category -> topic mapping
(Table 3) when absent.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from . import tables
from .topics import CATEGORY_TOPICS


class QuestionError(ValueError):
    pass


def read_question_file(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    df = tables.read_user_file(path, "question", QuestionError)
    missing = [c for c in ("question_id", "category", "question") if c not in df.columns]
    if missing:
        raise QuestionError(f"{path}: missing column(s) {missing}; has {df.columns}")
    if "topic" not in df.columns:
        unknown = sorted(set(df["category"].to_list()) - set(CATEGORY_TOPICS))
        if unknown:
            raise QuestionError(f"{path}: categories {unknown} have no topic; add a 'topic' column "
                                f"or use the paper's categories: {sorted(CATEGORY_TOPICS)}")
        df = df.with_columns(pl.col("category").replace_strict(CATEGORY_TOPICS).alias("topic"))
    df = df.select("question_id", "category", "topic", "question").with_columns(
        pl.col("question_id").cast(pl.String), pl.col("question").str.strip_chars())
    return tables.validate(df, "questions", path)


def sample_per_category(df: pl.DataFrame, per_category: int | None, seed: int = 0) -> pl.DataFrame:
    """Seeded stratified sample; a category with too few questions is an error, not a short sample."""
    if not per_category:
        return df
    counts = df.group_by("category").len()
    short = counts.filter(pl.col("len") < per_category)
    if not short.is_empty():
        detail = ", ".join(f"{c}: {n}" for c, n in short.iter_rows())
        raise QuestionError(f"fewer than {per_category} questions in: {detail}")
    return (df.with_columns(pl.int_range(pl.len()).shuffle(seed=seed).over("category").alias("_r"))
              .filter(pl.col("_r") < per_category).drop("_r").sort("category", "question_id"))
