"""Stage 2: each prompt becomes a minimally changed natural question (paper, App. A.1).

The instruction is package data (``prompts/vprism_rephrase.txt``). A failed call or an
empty answer drops that prompt (counted, never replaced by a made-up question). An answer
that is not a minimal change of the prompt -- it keeps fewer than ``min_overlap`` of the
prompt's content words (a weak model that echoes the instruction's example, answers the
prompt instead, ...) -- is not used: the original prompt stands (status ``fallback``,
counted and logged). Two prompts that rephrase to the same question keep the first.
``keep_questions: true`` passes prompts that already end in "?" through unchanged (fewer
calls; the paper rephrases every prompt, hence the default false).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import polars as pl

from .. import prompts
from ..llm import LLMClient
from .ask import ask, first_line

log = logging.getLogger("valuedrift")


_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("the and for are but not you your with this that what which who how why does did can could would "
                  "should will about from have has was were they them their there think tell please".split())


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOP}


def overlap(prompt: str, question: str) -> float:
    """Share of the prompt's content words that the question keeps (1 when it has none)."""
    words = content_words(prompt)
    return len(words & content_words(question)) / len(words) if words else 1.0


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
        if not q:
            questions[i], status[i] = None, "empty"
        elif overlap(texts[i], q) < settings["min_overlap"]:
            status[i] = "fallback"
        else:
            questions[i], status[i] = q, "rephrased"
    out = df.with_columns(pl.Series("question", questions, dtype=pl.String), pl.Series("_status", status))
    counts = {s: status.count(s) for s in ("rephrased", "kept", "fallback", "error", "empty")}
    if counts["fallback"]:
        log.warning("rephrase: %d of %d answers were no minimal change of their prompt (overlap < %s); "
                    "kept those prompts as they are", counts["fallback"], len(todo), settings["min_overlap"])
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
