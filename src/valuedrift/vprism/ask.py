"""LLM calls of the builder, all through the shared cached client (``valuedrift.llm``).

Each LLM stage (rephrase, name, select by LLM, filter) gets its client from the shared
settings ``questions.vprism.llm`` overlaid with the stage's own ``llm`` block, so a user
can e.g. filter with a stronger model than the one that rephrases.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Sequence

from ..llm import ChatRequest, ChatResult, LLMClient, user

log = logging.getLogger("valuedrift")


def llm_settings(vp: dict[str, Any], stage: str) -> dict[str, Any]:
    """The one merge of the shared ``questions.vprism.llm`` with a stage's own ``llm`` block."""
    return {**(vp.get("llm") or {}), **((vp.get(stage) or {}).get("llm") or {})}


def client_for(vp: dict[str, Any], stage: str) -> LLMClient:
    from ..llm import make_client

    return make_client(llm_settings(vp, stage))


def ask(client: LLMClient, prompts: Sequence[str], *, max_tokens: int, top_logprobs: int | None = None,
        what: str = "LLM") -> tuple[list[ChatResult], dict[str, int]]:
    """Greedy single-turn completions, in order, with call accounting."""
    requests = [ChatRequest(messages=user(p), max_tokens=max_tokens, temperature=0.0, top_logprobs=top_logprobs)
                for p in prompts]
    results = client.complete(requests) if requests else []
    if len(results) != len(requests):
        raise RuntimeError(f"{what}: client returned {len(results)} results for {len(requests)} requests")
    stats = {"requests": len(requests), "cached": sum(bool(r.cached) for r in results),
             "errors": sum(r.error is not None for r in results)}
    stats["llm_calls"] = stats["requests"] - stats["cached"]
    log.info("%s: %d requests to %s, %d from cache, %d failed", what, stats["requests"],
             getattr(client, "model", "?"), stats["cached"], stats["errors"])
    return results, stats


_LABEL = re.compile(r"^\s*(?:\*\*)?(?:rephrased\s+question|question|name|cluster\s+name|answer)\s*:\s*(?:\*\*)?\s*",
                    re.IGNORECASE)


def first_line(text: str | None) -> str:
    """The first non-empty line, without a leading label ("Question:") or wrapping quotes."""
    for line in (text or "").splitlines():
        line = _LABEL.sub("", line).strip()
        line = line.strip("\"'“”‘’*` ").strip()
        if line:
            return line
    return ""
