"""Table artifacts: every one has a schema (``schemas/<name>.schema.yaml``) and is
validated when written and when read, so a malformed file fails where it is made.

Schemas are JSON-Schema descriptions of one row; validation is done column-wise
(types, nullability, ranges, enums, uniqueness) so it stays fast on large tables.
"""

from __future__ import annotations

import os
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from . import atomic


class TableError(ValueError):
    """A table does not match its schema."""


@cache
def table_schema(name: str) -> dict[str, Any]:
    return yaml.safe_load(files("valuedrift").joinpath(f"schemas/{name}.schema.yaml").read_text())


def _types(spec: dict[str, Any]) -> set[str]:
    if "type" in spec:
        t = spec["type"]
        return set(t if isinstance(t, list) else [t])
    if "enum" in spec:
        return {"string" if isinstance(v, str) else "null" for v in spec["enum"]}
    return set()


def _check_dtype(col: pl.Series, types: set[str]) -> bool:
    dt = col.dtype
    if col.null_count() == len(col) and "null" in types:
        return True
    if dt.is_integer():
        return bool(types & {"integer", "number"})
    if dt.is_float():
        return "number" in types
    if dt == pl.String:
        return "string" in types
    if dt == pl.Boolean:
        return "boolean" in types
    return dt == pl.Null and "null" in types


def validate(df: pl.DataFrame, name: str, source: str | os.PathLike = "<memory>") -> pl.DataFrame:
    """Check ``df`` against schema ``name``; raise TableError naming file, column and row."""
    schema = table_schema(name)
    props: dict[str, Any] = schema["properties"]
    missing = [c for c in schema.get("required", []) if c not in df.columns]
    extra = [c for c in df.columns if c not in props]
    if missing or (extra and schema.get("additionalProperties") is False):
        raise TableError(f"{source}: {name} table has missing columns {missing} / unexpected columns {extra}")
    for column, spec in props.items():
        if column not in df.columns:
            continue
        col = df[column]
        types = _types(spec)
        if types and not _check_dtype(col, types):
            raise TableError(f"{source}: column '{column}' has type {col.dtype}, schema wants {sorted(types)}")
        nulls = col.is_null()
        if col.dtype.is_float():
            nulls = nulls | col.is_nan()
        if "null" not in types and nulls.any():
            row = int(nulls.arg_true()[0])
            raise TableError(f"{source}: column '{column}' row {row} is null/NaN but the schema does not allow it")
        valid = col.filter(~nulls)
        bad = None
        if "minimum" in spec and len(valid) and (valid < spec["minimum"]).any():
            bad = f"below minimum {spec['minimum']}"
        elif "maximum" in spec and len(valid) and (valid > spec["maximum"] + 1e-9).any():
            bad = f"above maximum {spec['maximum']}"
        elif "enum" in spec and not valid.is_in([v for v in spec["enum"] if v is not None]).all():
            bad = f"not one of {spec['enum']}"
        elif spec.get("minLength") and (valid.str.len_chars() < spec["minLength"]).any():
            bad = "empty"
        elif spec.get("unique") and valid.is_duplicated().any():
            bad = f"duplicated ({valid.filter(valid.is_duplicated())[0]!r})"
        if bad:
            raise TableError(f"{source}: column '{column}' has values {bad}")
    return df


def write(df: pl.DataFrame, path: str | os.PathLike, name: str) -> None:
    """Validate, then write atomically (parquet or csv by suffix)."""
    path = Path(path)
    validate(df, name, path)
    (atomic.write_csv if path.suffix == ".csv" else atomic.write_parquet)(df, path)


def read(path: str | os.PathLike, name: str) -> pl.DataFrame:
    path = Path(path)
    try:
        df = pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)
    except FileNotFoundError:
        raise
    except (OSError, pl.exceptions.PolarsError) as err:  # truncated, or not a table at all
        raise TableError(f"{path}: unreadable {name} table ({_short(err)}); delete it and rerun the job "
                         f"that makes it") from None
    return validate(df, name, path)


def _short(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."


def read_user_file(path: str | os.PathLike, what: str, error: type[Exception] = ValueError) -> pl.DataFrame:
    """A user's JSONL, CSV or Parquet file; ``error(...)`` naming the file when it is missing,
    of another type, unreadable or empty."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: {what} file not found")
    suffix = path.suffix
    try:
        if suffix in (".jsonl", ".json"):
            df = pl.read_ndjson(path) if path.stat().st_size else pl.DataFrame()
        elif suffix == ".csv":
            df = pl.read_csv(path) if path.stat().st_size else pl.DataFrame()
        elif suffix == ".parquet":
            df = pl.read_parquet(path)
        else:
            raise error(f"{path}: unsupported {what} file type {suffix!r} (use .jsonl, .csv or .parquet)")
    except pl.exceptions.PolarsError as err:
        raise error(f"{path}: cannot read {what} file: {err}") from None
    if df.is_empty():
        raise error(f"{path}: {what} file is empty")
    return df
