"""Synthetic value-aligned preference data: the controlled experiment of the paper
(Section 6.1, Appendix E).

1. ``retrieve_prompts``: per category, the prompts of the source preference datasets
   (UltraFeedback and HH-RLHF in the paper) most similar to that category's evaluation
   questions. The paper does not state its rule; ours (docs/controlled.md): a prompt's
   score for a category is its highest cosine similarity to any question of the category;
   it joins the category it scores highest on, if that score is >= ``min_similarity``; each
   category keeps its ``per_category`` highest-scoring prompts. Duplicate prompts count once.
2. ``generate_responses``: one support and one oppose response per prompt, with the system
   prompt of Figure 10 and the category's value of Table 4, through the shared cached LLM
   client (``valuedrift.llm``). Refusals, empty, truncated and failed generations are
   detected, counted and dropped with their pair; so is a pair of two identical responses.
3. ``aligned_dataset``: the kept pairs as a preference dataset, support-aligned (the
   support response chosen) or oppose-aligned (the oppose response chosen), in the shape
   the training rules read (``datasets.to_frame``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import polars as pl

from . import prompts as prompt_files
from .llm import ChatRequest, LLMClient

log = logging.getLogger("valuedrift")

ALIGNMENTS = ("support", "oppose")

# Table 4: category -> the value of the support and of the oppose system prompt. The paper's
# table gives "support climate change action" for *both* climate stances, which would make
# every climate pair agree; we take it for a typo and use "oppose climate change action"
# (config synthetic.values overrides any entry).
TABLE4_VALUES: dict[str, dict[str, str]] = {
    "Discussions on Abortion": {"support": "support abortion", "oppose": "oppose abortion"},
    "Climate Change Opinions": {"support": "support climate change action", "oppose": "oppose climate change action"},
    "Election and Political Discussions": {
        "support": "support democracy, fair elections, and accountable governance",
        "oppose": "oppose democracy and support for authoritarian governance"},
    "Economic and Social Policy": {"support": "support progressive economic and social policies",
                                   "oppose": "oppose progressive economic and social policies"},
    "Work and Attitudes": {"support": "support work-life balance and fair labor rights",
                           "oppose": "oppose work-life balance and fair labor rights"},
    "Religion and Spirituality Beliefs": {"support": "support religion and spirituality beliefs",
                                          "oppose": "oppose religion and spirituality beliefs"},
    "Family and Relationship Values": {
        "support": "support inclusive and diverse family and relationship values, including non-traditional "
                   "relationships, and individual well-being",
        "oppose": "support traditional family structures and opposition to non-traditional relationships or lifestyles"},
    "Ethics of Death and Penalty": {"support": "support death penalty", "oppose": "oppose death penalty"},
    "Immigration Policies": {"support": "support immigration", "oppose": "oppose immigration"},
    "Race and Racism": {"support": "support racism", "oppose": "oppose racism"},
    "Gender and LGBTQ+ Identity": {"support": "support gender equality and lgbtq+ rights",
                                   "oppose": "oppose gender equality and lgbtq+ rights"},
}

MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


class SyntheticError(ValueError):
    """Bad input to the synthetic-data stages, naming the file, row or config key."""


def write_parquet(df: pl.DataFrame, path: str | os.PathLike) -> None:
    """Atomic parquet write (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.write_parquet(tmp)
    os.replace(tmp, path)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


# 1. Retrieval -------------------------------------------------------------------------

def user_text(messages: Sequence[dict[str, str]]) -> str:
    """The user turns of a conversation: what a prompt is about (embedded for retrieval)."""
    return "\n".join(m["content"] for m in messages if m["role"] == "user").strip()


def category_scores(prompt_vectors: np.ndarray, question_vectors: np.ndarray, question_categories: Sequence[str],
                    categories: Sequence[str], *, chunk: int = 8192) -> np.ndarray:
    """(prompts x categories): each prompt's highest cosine similarity to a question of each
    category. Vectors must be unit length (``vprism.embed.embed`` makes them so)."""
    cats = np.asarray(question_categories)
    members = [np.flatnonzero(cats == c) for c in categories]
    empty = [c for c, m in zip(categories, members) if not len(m)]
    if empty:
        raise SyntheticError(f"no questions for categories {empty}")
    out = np.empty((len(prompt_vectors), len(categories)), dtype=np.float32)
    for start in range(0, len(prompt_vectors), chunk):  # bounded memory for 10^5 prompts x 550 questions
        sims = prompt_vectors[start:start + chunk] @ question_vectors.T
        for j, m in enumerate(members):
            out[start:start + chunk, j] = sims[:, m].max(axis=1)
    return out


def select_prompts(scores: np.ndarray, categories: Sequence[str], *, min_similarity: float,
                   per_category: int | None) -> list[tuple[int, str, float]]:
    """The retrieval rule: (prompt index, category, score) of every kept prompt.

    A prompt joins the category it scores highest on (ties: the category listed first), if
    that score is >= ``min_similarity``; a category keeps its ``per_category`` best prompts
    (ties: the lower prompt index), or all of them when None. Ordered by category, then rank.
    """
    if not len(scores):
        return []
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(len(scores)), best]
    kept = []
    for j, category in enumerate(categories):
        idx = np.flatnonzero((best == j) & (best_score >= min_similarity))
        idx = idx[np.lexsort((idx, -best_score[idx]))]
        if per_category is not None:
            idx = idx[:per_category]
        kept += [(int(i), category, float(best_score[i])) for i in idx]
    return kept


def retrieve_prompts(*, questions: str, sources: dict[str, str], output: str, stats: str,
                     settings: dict[str, Any], embed_fn: Callable[[list[str]], np.ndarray] | None = None) -> None:
    """Retrieved prompts (one row each: prompt_id, source, row, category, topic, similarity,
    prompt) from the prepared preference datasets ``sources`` (name -> parquet)."""
    from . import tables
    from .vprism import embed as embedding

    qs = tables.read(questions, "questions")
    categories = sorted(qs["category"].unique().to_list())
    topics = dict(zip(qs["category"], qs["topic"]))
    records, seen, duplicates = [], set(), 0
    for name, path in sources.items():
        df = pl.read_parquet(path)
        if "prompt" not in df.columns:
            raise SyntheticError(f"{path}: synthetic.sources must be preference datasets (no 'prompt' column)")
        for row, prompt in enumerate(df["prompt"].to_list()):
            text = user_text(prompt)
            if not text or text in seen:
                duplicates += bool(text)
                continue
            seen.add(text)
            records.append({"prompt_id": f"{name}:{row}", "source": name, "row": row, "prompt": prompt, "text": text})
    if not records:
        raise SyntheticError(f"no prompts in synthetic.sources {list(sources)}")
    if embed_fn is None:
        model = embedding.load_model(settings["embedder"])  # once, for the prompts and the questions
        embed_fn = lambda texts: embedding.embed(texts, settings["embedder"], model)  # noqa: E731
    prompt_vectors = embed_fn([r["text"] for r in records])
    question_vectors = embed_fn(qs["question"].to_list())
    scores = category_scores(prompt_vectors, question_vectors, qs["category"].to_list(), categories)
    kept = select_prompts(scores, categories, min_similarity=settings["min_similarity"],
                          per_category=settings["per_category"])
    table = pl.DataFrame(
        [{**{k: records[i][k] for k in ("prompt_id", "source", "row", "prompt")}, "category": c, "topic": topics[c],
          "similarity": s} for i, c, s in kept],
        schema={"prompt_id": pl.String, "source": pl.String, "row": pl.Int64, "prompt": MESSAGES,
                "category": pl.String, "topic": pl.String, "similarity": pl.Float64})
    write_parquet(table, output)
    per_cat = {c: int(n) for c, n in table.group_by("category").len().iter_rows()}
    write_json({"prompts": len(records), "duplicates_dropped": duplicates, "retrieved": len(table),
                "min_similarity": settings["min_similarity"], "per_category": settings["per_category"],
                "by_category": {c: per_cat.get(c, 0) for c in categories},
                "by_source": {n: int(table.filter(pl.col("source") == n).height) for n in sources}}, stats)
    short = [c for c in categories if per_cat.get(c, 0) == 0]
    if short:
        log.warning("synthetic retrieval: no prompt reached min_similarity %.2f for %s", settings["min_similarity"], short)
    log.info("retrieved %d of %d prompts over %d categories -> %s", len(table), len(records), len(per_cat), output)


# 2. Generation and the checks on what came back ---------------------------------------

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
# Phrases that mean the model would not answer, or would not take the value's side. Looked
# for in the first characters of a response only: an argued answer may quote them later.
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"^\W*(?:i'?m|i am)\s+(?:really\s+|very\s+|so\s+)?sorry\b",
    r"^\W*(?:i\s+)?apologi[sz]e\b",
    r"^\W*(?:sorry|unfortunately)\b[^.]{0,60}\b(?:can(?:no|')t|can not|unable|not able|won't|will not)\b",
    r"\bi\s+(?:can(?:no|')t|can not|won'?t|will not|must decline to|have to decline to|(?:am|'m)\s+(?:unable|not able|not comfortable|not going)\s+to)"
    r"\s+(?:help|assist|provide|comply|fulfil+|create|generate|write|produce|engage|answer|do that|do this|support|"
    r"promote|endorse|advocate|take|express|share|adopt|role-?play|pretend|continue)\b",
    r"\bas an ai\b[^.]{0,80}\b(?:do not|don't|cannot|can't|can not)\s+(?:have|hold|express|share|take|form)\s+"
    r"(?:any\s+)?(?:personal\s+)?(?:opinions?|beliefs?|views?|stances?|sides?|values?|preferences?)\b",
    r"\b(?:i\s+)?(?:must|have to|need to)\s+(?:respectfully\s+)?decline\b",
    r"\bagainst my (?:programming|guidelines|principles|policies)\b",
)
REFUSAL_HEAD_CHARS = 300


def check_response(text: str | None, finish_reason: str | None, error: str | None = None, *,
                   refusal: Sequence[re.Pattern] | None = None, head_chars: int = REFUSAL_HEAD_CHARS) -> str:
    """``ok``, or why a generation is dropped: ``failed`` (the call failed for good),
    ``empty``, ``truncated`` (stopped by the token limit), ``refusal``."""
    if error is not None:
        return "failed"
    if text is None or not text.strip():
        return "empty"
    if finish_reason == "length":
        return "truncated"
    head = text.strip()[:head_chars].lower().translate(_APOSTROPHES)
    if any(p.search(head) for p in (refusal if refusal is not None else compiled_refusals())):
        return "refusal"
    return "ok"


def compiled_refusals(extra: Sequence[str] = ()) -> list[re.Pattern]:
    return [re.compile(p, re.IGNORECASE) for p in (*REFUSAL_PATTERNS, *extra)]


def system_prompt(value: str) -> str:
    """Figure 10 with its one field, {value}, filled in (App. E: only the value is substituted)."""
    return prompt_files.load("synthetic_system").format(value=value)


def values_for(settings: dict[str, Any]) -> dict[str, dict[str, str]]:
    values = {c: dict(v) for c, v in TABLE4_VALUES.items()}
    for category, override in (settings.get("values") or {}).items():
        values.setdefault(category, {}).update(override)
    return values


def requests_for(prompts: pl.DataFrame, settings: dict[str, Any]) -> list[tuple[str, str, ChatRequest]]:
    """(prompt_id, stance, request) per prompt and stance, support first."""
    values = values_for(settings)
    missing = sorted({c for c in prompts["category"] if any(s not in values.get(c, {}) for s in ALIGNMENTS)})
    if missing:
        raise SyntheticError(f"config key 'synthetic.values' has no support/oppose value for categories {missing}")
    out = []
    for rec in prompts.iter_rows(named=True):
        turns = tuple((m["role"], m["content"]) for m in rec["prompt"] if m["role"] != "system")
        for stance in ALIGNMENTS:
            messages = (("system", system_prompt(values[rec["category"]][stance])), *turns)
            out.append((rec["prompt_id"], stance, ChatRequest(messages=messages, max_tokens=settings["max_tokens"],
                                                              temperature=settings["temperature"],
                                                              seed=settings.get("seed"))))
    return out


def generate_responses(*, prompts: str, responses: str, pairs: str, stats: str, settings: dict[str, Any],
                       client: LLMClient | None = None) -> None:
    """Support and oppose responses to every retrieved prompt; the pairs whose two responses
    both pass ``check_response`` (at most ``max_pairs``, the most similar prompts first)."""
    from .llm import make_client

    table = pl.read_parquet(prompts)
    if table.is_empty():
        raise SyntheticError(f"{prompts}: no retrieved prompts (lower synthetic.min_similarity?)")
    todo = requests_for(table, settings)
    client = client or make_client({**settings["llm"], "desc": "synthetic responses"})
    results = client.complete([r for _, _, r in todo])
    refusal = compiled_refusals(settings.get("refusal_patterns") or ())
    drop = set(settings.get("drop") or ("refusal", "empty", "truncated"))
    rows = []
    for (prompt_id, stance, _), res in zip(todo, results):
        status = check_response(res.text, res.extra.get("finish_reason"), res.error, refusal=refusal)
        rows.append({"prompt_id": prompt_id, "stance": stance, "text": res.text, "status": status,
                     "kept": status == "ok" or (status != "failed" and status not in drop),
                     "finish_reason": res.extra.get("finish_reason"), "completion_tokens": res.completion_tokens,
                     "error": res.error})
    resp = pl.DataFrame(rows, schema={"prompt_id": pl.String, "stance": pl.String, "text": pl.String,
                                      "status": pl.String, "kept": pl.Boolean, "finish_reason": pl.String,
                                      "completion_tokens": pl.Int64, "error": pl.String})
    write_parquet(resp, responses)
    wide = resp.pivot(on="stance", index="prompt_id", values=["text", "kept"])
    both = (table.join(wide, on="prompt_id")
            .filter(pl.col("kept_support") & pl.col("kept_oppose"))
            .rename({"text_support": "support", "text_oppose": "oppose"}))
    # the same text twice carries no preference (and the trainers' loader skips it)
    same = both["support"].str.strip_chars() == both["oppose"].str.strip_chars()
    good = both.filter(~same).sort(["similarity", "prompt_id"], descending=[True, False])
    max_pairs = settings.get("max_pairs")
    good = good.head(max_pairs) if max_pairs else good
    good = good.select("prompt_id", "source", "row", "category", "topic", "similarity", "prompt", "support", "oppose")
    write_parquet(good.sort("category", "prompt_id"), pairs)
    counts = {s: int(n) for s, n in resp.group_by("status").len().iter_rows()}
    by_stance = {st: {s: int(n) for s, n in resp.filter(pl.col("stance") == st).group_by("status").len().iter_rows()}
                 for st in ALIGNMENTS}
    write_json({"prompts": len(table), "generations": len(resp), "status": counts, "status_by_stance": by_stance,
                "dropped_statuses": sorted(drop | {"failed"}), "pairs_with_two_kept_responses": len(both),
                "pairs_identical": int(same.sum()), "pairs": len(good), "max_pairs": max_pairs,
                "pairs_by_category": {c: int(n) for c, n in good.group_by("category").len().sort("category").iter_rows()},
                "llm": getattr(client, "accounting", lambda: {})()}, stats)
    log.info("synthetic: %d prompts, %d generations (%s), %d pairs kept -> %s", len(table), len(resp), counts,
             len(good), pairs)
    if max_pairs and len(good) < max_pairs:
        log.warning("synthetic: %d pairs, fewer than synthetic.max_pairs=%d: runs sized for %d pairs "
                    "(max_steps) may lie beyond their schedule", len(good), max_pairs, max_pairs)


# 3. The two preference datasets --------------------------------------------------------

def aligned_rows(pairs: pl.DataFrame, aligned: str) -> list[dict[str, Any]]:
    """prompt/chosen/rejected rows: the ``aligned`` stance's response is the chosen one."""
    if aligned not in ALIGNMENTS:
        raise SyntheticError(f"aligned must be one of {ALIGNMENTS}, got {aligned!r}")
    other = "oppose" if aligned == "support" else "support"
    return [{"prompt": list(r["prompt"]), "chosen": r[aligned], "rejected": r[other]}
            for r in pairs.iter_rows(named=True)]


def aligned_dataset(*, pairs: str, output: str, aligned: str) -> None:
    """The prepared preference dataset (results/data/<name>.parquet) of a synthetic source."""
    from .datasets import SkipRow, normalise_preference, to_frame

    rows, skipped = [], 0
    for i, row in enumerate(aligned_rows(pl.read_parquet(pairs), aligned), start=1):
        try:
            rows.append(normalise_preference(row, f"{pairs} row {i}"))
        except SkipRow:
            skipped += 1
    if not rows:
        raise SyntheticError(f"{pairs}: no usable pairs for a {aligned}-aligned dataset")
    write_parquet(to_frame(rows, "preference"), output)
    log.info("%s-aligned synthetic dataset: %d pairs (%d identical pairs skipped) -> %s", aligned, len(rows),
             skipped, output)
