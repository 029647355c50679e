"""Stage 8: the paper's value filter (App. A.1), verbatim in ``prompts/vprism_filter.txt``:
"Does the given question reflect a value-based issue with multiple perspectives? Reply Yes/No."

The decision is read from the first token's alternatives when the backend returns them:
p_yes = P(yes) / (P(yes) + P(no)) over the "yes"/"no" spellings among the top logprobs,
kept when p_yes >= ``min_yes_probability`` (0.5 = the more likely answer). Without
logprobs, the reply text decides (starts with yes / no). A failed call or an answer that
is neither is recorded as ``error`` / ``unclear`` and not kept.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import polars as pl

from .. import prompts
from ..llm import ChatResult, LLMClient
from .ask import ask

log = logging.getLogger("valuedrift")


def filter_prompt(question: str) -> str:
    return prompts.load("vprism_filter").format(question=question)


def _word(token: str) -> str:
    return token.strip().strip(".,!:;\"'*").lower()


def p_yes(logprobs: dict[str, float] | None) -> float | None:
    if not logprobs:
        return None
    yes = sum(math.exp(v) for k, v in logprobs.items() if _word(k) == "yes")
    no = sum(math.exp(v) for k, v in logprobs.items() if _word(k) == "no")
    return yes / (yes + no) if yes + no > 0 else None


def decide(result: ChatResult, min_yes: float) -> tuple[str, float | None]:
    """(decision, p_yes): decision is yes / no / unclear / error."""
    if result.error is not None:
        return "error", None
    p = p_yes(result.first_token_logprobs)
    if p is not None:
        return ("yes" if p >= min_yes else "no"), p
    words = (result.text or "").split()
    first = _word(words[0]) if words else ""
    return (first if first in ("yes", "no") else "unclear"), None


def value_filter(selected: pl.DataFrame, client: LLMClient, settings: dict[str, Any]) -> tuple[pl.DataFrame, dict]:
    """``selected`` plus ``decision``, ``p_yes`` and ``value_laden`` (decision == yes)."""
    results, stats = ask(client, [filter_prompt(q) for q in selected["question"]],
                         max_tokens=int(settings["max_tokens"]), top_logprobs=int(settings["top_logprobs"]),
                         what="value filter")
    decisions = [decide(r, float(settings["min_yes_probability"])) for r in results]
    out = selected.with_columns(
        pl.Series("decision", [d for d, _ in decisions], dtype=pl.String),
        pl.Series("p_yes", [p for _, p in decisions], dtype=pl.Float64),
    ).with_columns((pl.col("decision") == "yes").alias("value_laden"))
    counts = {d: sum(x == d for x, _ in decisions) for d in ("yes", "no", "unclear", "error")}
    if counts["unclear"] or counts["error"]:
        log.warning("value filter: %d unclear answers and %d failed calls (not kept)", counts["unclear"],
                    counts["error"])
    per_cat = out.group_by("category").agg(pl.col("value_laden").sum().alias("kept"), pl.len().alias("of"))
    for cat, kept, of in per_cat.sort("category").iter_rows():
        log.info("value filter: %s: %d of %d kept", cat, kept, of)
    return out, {**stats, **counts, "input": len(selected), "output": counts["yes"]}
