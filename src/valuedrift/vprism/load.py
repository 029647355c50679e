"""Stage 1: the prompt pool (PRISM opening prompts, or a user's own prompt file).

Sources (config ``questions.vprism.prompts``):

  source: hub    ``datasets.load_dataset(name, config, split)``; the paper's pool is
                 HannahRoseKirk/prism-alignment, config ``conversations``, column
                 ``opening_prompt``, id ``conversation_id`` (~8,100 prompts).
  source: file   one or more local JSONL/CSV/Parquet files (``path``: a path or a list).

``text_column`` names the prompt text (a list-of-strings column is exploded, one prompt
per element); ``id_column`` an id (optional: a hash of the text otherwise). Prompts are
whitespace-normalised, empties dropped, duplicates (case-insensitive) dropped keeping the
first; the counts of each are returned and logged.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import polars as pl

from .. import tables

log = logging.getLogger("valuedrift")


class PromptError(ValueError):
    pass


def read_file(path: str | Path) -> pl.DataFrame:
    return tables.read_user_file(path, "prompt", PromptError)


def read_hub(spec: dict[str, Any]) -> pl.DataFrame:
    import datasets

    ds = datasets.load_dataset(spec["name"], spec.get("config"), split=spec.get("split", "train"),
                               revision=spec.get("revision"))
    columns = [c for c in (spec["text_column"], spec.get("id_column")) if c]
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise PromptError(f"{spec['name']}: missing column(s) {missing}; has {ds.column_names}")
    return pl.from_arrow(ds.select_columns(columns).data.table)


def _texts(df: pl.DataFrame, text_column: str, id_column: str | None, where: str) -> pl.DataFrame:
    """Two columns, ``prompt_id`` and ``prompt`` (raw), one row per prompt."""
    missing = [c for c in (text_column, id_column) if c and c not in df.columns]
    if missing:
        raise PromptError(f"{where}: missing column(s) {missing}; has {df.columns} "
                          "(set questions.vprism.prompts.text_column / id_column)")
    col = df[text_column]
    ids = df[id_column].cast(pl.String) if id_column else pl.Series([None] * len(df), dtype=pl.String)
    frame = pl.DataFrame({"prompt_id": ids, "prompt": col})
    if isinstance(col.dtype, pl.List):
        frame = (frame.with_columns(pl.col("prompt").list.eval(pl.int_range(pl.len())).alias("_i"))
                      .explode("prompt", "_i")
                      .with_columns((pl.col("prompt_id") + "-" + pl.col("_i").cast(pl.String)).alias("prompt_id"))
                      .drop("_i"))
    elif col.dtype != pl.String:
        raise PromptError(f"{where}: column {text_column!r} holds {col.dtype}, not text")
    return frame


def normalise(text: str | None) -> str:
    return " ".join((text or "").split())


def text_id(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def load_prompts(spec: dict[str, Any], workdir: str | Path = ".") -> tuple[pl.DataFrame, dict[str, Any]]:
    """The deduplicated prompt pool (``prompt_id``, ``prompt``) and its counts."""
    text_column, id_column = spec["text_column"], spec.get("id_column")
    if spec["source"] == "hub":
        frames = [_texts(read_hub(spec), text_column, id_column, spec["name"])]
        origin = spec["name"]
    else:
        paths = spec.get("path")
        paths = [paths] if isinstance(paths, str) else list(paths or [])
        if not paths:
            raise PromptError("questions.vprism.prompts.path is required for source 'file'")
        frames = []
        for p in paths:
            full = Path(workdir) / p
            frames.append(_texts(read_file(full), text_column, id_column, str(full)))
        origin = ", ".join(map(str, paths))
    raw = pl.concat(frames)
    df = raw.with_columns(pl.col("prompt").map_elements(normalise, return_dtype=pl.String))
    n_raw = len(df)
    df = df.filter(pl.col("prompt").str.len_chars() > 0)
    n_empty = n_raw - len(df)
    df = (df.with_columns(pl.col("prompt").str.to_lowercase().alias("_key"))
            .unique(subset="_key", keep="first", maintain_order=True).drop("_key"))
    n_dupes = n_raw - n_empty - len(df)
    df = df.with_columns(pl.coalesce("prompt_id", pl.col("prompt").map_elements(text_id, return_dtype=pl.String))
                         .alias("prompt_id"))
    clash = df.filter(pl.col("prompt_id").is_duplicated())
    if not clash.is_empty():
        raise PromptError(f"{origin}: id column {id_column!r} repeats for different prompts "
                          f"(e.g. {clash['prompt_id'][0]!r}); ids must be unique")
    if spec.get("max_prompts"):
        df = df.head(int(spec["max_prompts"]))
    if df.is_empty():
        raise PromptError(f"{origin}: no non-empty prompts")
    counts = {"source": origin, "raw": n_raw, "empty": n_empty, "duplicates": n_dupes, "kept": len(df)}
    log.info("prompts from %s: %d raw, %d empty, %d duplicates -> %d kept", origin, n_raw, n_empty, n_dupes, len(df))
    return df, counts
