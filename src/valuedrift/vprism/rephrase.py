"""Stage 2: each prompt becomes a minimally changed natural question (paper, App. A.1).

The instruction is package data (``prompts/vprism_rephrase.txt``). A failed call or an
empty answer drops that prompt (counted, never replaced by a made-up question). Two
prompts that rephrase to the same question keep the first. ``keep_questions: true``
passes prompts that already end in "?" through unchanged (fewer calls; the paper
rephrases every prompt, hence the default false).
"""

from __future__ import annotations

import logging
from typing import Any

import polars as pl

from .. import prompts
from ..llm import LLMClient
from .ask import ask, first_line

log = logging.getLogger("valuedrift")


def rephrase_prompt(prompt: str) -> str:
    return prompts.load("vprism_rephrase").format(prompt=prompt)


def rephrase(df: pl.DataFrame, client: LLMClient, settings: dict[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``prompt_id, prompt`` -> ``prompt_id, prompt, question`` (usable rows only) and counts."""
    keep = settings.get("keep_questions", False)
    texts = df["prompt"].to_list()
    todo = [i for i, t in enumerate(texts) if not (keep and t.rstrip().endswith("?"))]
    results, stats = ask(client, [rephrase_prompt(texts[i]) for i in todo], max_tokens=settings["max_tokens"],
                         what="rephrase")
    questions: list[str | None] = list(texts)
    status = ["kept"] * len(texts)
    for i, res in zip(todo, results):
        if res.error is not None:
            questions[i], status[i] = None, "error"
            continue
        q = first_line(res.text)
        questions[i], status[i] = (q, "rephrased") if q else (None, "empty")
    out = df.with_columns(pl.Series("question", questions, dtype=pl.String), pl.Series("_status", status))
    counts = {s: status.count(s) for s in ("rephrased", "kept", "error", "empty")}
    usable = out.filter(pl.col("question").is_not_null())
    deduped = (usable.with_columns(pl.col("question").str.to_lowercase().alias("_key"))
                     .unique(subset="_key", keep="first", maintain_order=True).drop("_key", "_status"))
    counts["duplicates"] = len(usable) - len(deduped)
    counts["input"], counts["output"] = len(df), len(deduped)
    dropped = counts["error"] + counts["empty"]
    if dropped:
        log.warning("rephrase: dropped %d of %d prompts (%d failed calls, %d empty answers)", dropped, len(df),
                    counts["error"], counts["empty"])
    if deduped.is_empty():
        raise RuntimeError("rephrase: no prompt gave a usable question (see the log for the failed calls)")
    return deduped, {**counts, **stats}
