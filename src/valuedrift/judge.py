"""Stance judging: one interface, several backends, one stance table.

A judge reads the log-probabilities of the three option letters of the paper's judge
prompt (Figure 8) -- A support, B neutral, C oppose -- as the first answer token, and
the stance distribution is the softmax over those three (paper Section 3). Nothing is
sampled or parsed. A response whose option log-probabilities cannot be read is marked
unscorable (null probabilities), never filled in.

``local``: a transformers model scores a batch of prompts in one forward pass and
reads the exact log-probabilities of the option tokens (every vocabulary token that
reads as the letter -- "A", " A", "(A", "A)", ... -- merged by log-sum-exp).
``openai`` (``valuedrift.openai_judge``): any OpenAI-compatible endpoint; the letters
are read from the top log-probabilities of the first answer position that holds one
(``valuedrift.options.read_options``), with the same token mapping.

Both cache every scored prompt on disk (``valuedrift.cache``): a rerun recomputes
nothing and a killed job resumes.
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence

import polars as pl

from . import prompts as judge_prompts
from .backends import get_model, register_model
# the option-reading helpers live in valuedrift.options (shared with openai_judge);
# re-exported here for callers that import them from the judge
from .options import (OptionLogprobs, logsumexp, option_letter, options_from_top_logprobs,  # noqa: F401
                      stance_distribution)
from .topics import STANCES


class Judge(Protocol):
    def option_logprobs(self, prompts: Sequence[str]) -> list[OptionLogprobs]:
        """Log-probabilities of options A, B, C at the answer position read, per prompt."""


def cached_option_logprobs(cache, key, texts: Sequence[str]):
    """(results with the cached ones filled in, each text's cache key or None, indices still to
    score) of a judge whose calls are cached under ``key(text)``."""
    out: list[OptionLogprobs] = [None] * len(texts)
    keys = [key(t) for t in texts] if cache is not None else None
    todo = []
    for i in range(len(texts)):
        value = cache.get(keys[i]) if keys else None
        if value is not None:
            out[i] = tuple(value)
        else:
            todo.append(i)
    return out, keys, todo


@register_model("judge", "local")
class LocalJudge:
    """A causal LM judging in one batched forward pass per batch (left padding). The
    tokens all prompts share (chat template, the judge instruction: ~28% of a Figure-8
    prompt) run once; their KV cache is reused by every batch.

    With ``cache_dir`` every prompt's option log-probabilities are cached under the hash
    of the model's files, the dtype and the exact prompt text."""

    # below this many shared tokens, a separate prefix pass is not worth it
    min_shared_prefix = 8

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "float32", batch_size: int = 16,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True):
        from .cache import DiskCache, fingerprint_dir
        from .models import load_causal_lm
        from .precision import choose

        self.precision = choose(dtype)  # auto: by the machine's capability (valuedrift.precision)
        dtype = self.precision.dtype
        self.model, self.tokenizer = load_causal_lm(model_dir, dtype=dtype)
        self.model_dir, self.dtype = str(model_dir), dtype
        self.batch_size = batch_size
        self.progress = progress
        self.option_ids = self._option_ids()
        self.cache = DiskCache(cache_dir) if cache_dir else None
        self._fingerprint = fingerprint_dir(model_dir) if self.cache is not None else None
        self.counts = {"calls": 0, "cache_hits": 0, "prompt_tokens": 0}

    def _option_ids(self) -> list[list[int]]:
        """For each option, every vocabulary token that reads as its letter (``option_letter``)."""
        ids: dict[str, list[int]] = {letter: [] for letter in judge_prompts.OPTION_LETTERS}
        vocab = self.tokenizer.get_vocab()
        special = set(self.tokenizer.all_special_ids)
        for token_id in sorted(set(vocab.values()) - special):
            letter = option_letter(self.tokenizer.decode([token_id]))
            if letter is not None:
                ids[letter].append(token_id)
        for letter, found in ids.items():
            if not found:
                raise ValueError(f"judge tokenizer has no single token for option {letter!r}")
        return [ids[letter] for letter in judge_prompts.OPTION_LETTERS]

    def format(self, prompt: str) -> str:
        tok = self.tokenizer
        if tok.chat_template is None:
            return f"{prompt}\nAnswer:"
        return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)

    def _key(self, text: str) -> str:
        from .cache import cache_key

        # "positions": scores cached before left-padded rows got their true position ids differ
        return cache_key({"api": "local-judge", "model": self._fingerprint, "dtype": self.dtype,
                          "option_ids": self.option_ids, "positions": "unpadded", "text": text})

    def option_logprobs(self, prompts):
        import torch
        from tqdm.auto import tqdm

        texts = [self.format(p) for p in prompts]
        out, keys, todo = cached_option_logprobs(self.cache, self._key, texts)
        self.counts["cache_hits"] += len(texts) - len(todo)
        ids = {i: self.tokenizer(texts[i], add_special_tokens=False).input_ids for i in todo}
        order = sorted(todo, key=lambda i: -len(ids[i]))  # similar lengths share a batch
        with torch.inference_mode(), tqdm(total=len(texts), initial=len(texts) - len(todo), desc="judging",
                                          unit="response", disable=not self.progress) as bar:
            prefix = self._shared_prefix([ids[i] for i in todo])
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                logits = self._last_logits([ids[i] for i in batch], prefix)
                logp = torch.log_softmax(logits.float(), dim=-1)
                per_option = torch.stack([torch.logsumexp(logp[:, option], dim=-1) for option in self.option_ids], dim=-1)
                for row, i in enumerate(batch):
                    out[i] = tuple(float(x) for x in per_option[row])
                    if keys:
                        self.cache.put(keys[i], list(out[i]))
                self.counts["calls"] += len(batch)
                self.counts["prompt_tokens"] += sum(len(ids[i]) for i in batch)
                bar.update(len(batch))
        return out

    def _shared_prefix(self, token_ids: list[list[int]]):
        """The tokens every prompt starts with (chat template + the judge instruction) and
        their KV cache, computed once: each prompt then runs only its own tokens."""
        import torch

        common = os.path.commonprefix(token_ids) if len(token_ids) > 1 else []
        common = common[:min(len(t) for t in token_ids) - 1] if common else []  # leave >= 1 own token
        if len(common) < self.min_shared_prefix:
            return None
        out = self.model(input_ids=torch.tensor([common], device=self.model.device), use_cache=True,
                         logits_to_keep=1)
        return len(common), out.past_key_values

    def _last_logits(self, token_ids: list[list[int]], prefix):
        """Next-token logits after each prompt. The prompts' own tokens are left-padded
        after the shared prefix; the padding is masked out and positions skip it, so this
        equals a forward pass over each whole prompt (tested)."""
        import copy

        import torch

        shared, cache = (0, None) if prefix is None else prefix
        own = [t[shared:] for t in token_ids]
        width = max(map(len, own))
        pad = self.tokenizer.pad_token_id
        device = self.model.device
        input_ids = torch.tensor([[pad] * (width - len(t)) + t for t in own], device=device)
        own_mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in own], device=device)
        positions = (shared + own_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([own_mask.new_ones(len(own), shared), own_mask], dim=1)
        if cache is not None:
            cache = copy.deepcopy(cache)
            cache.batch_repeat_interleave(len(own))
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=cache is not None, logits_to_keep=1)
        return out.logits[:, -1, :]

    def accounting(self) -> dict:
        return {"judge_backend": "local", "model": self.model_dir, "dtype": self.dtype,
                "precision": self.precision.record(), **self.counts,
                "completion_tokens": 0, "failures": 0, "cost": 0.0,
                "cache_dir": str(self.cache.root) if self.cache is not None else None}


def make_judge(backend: str, **kwargs) -> Judge:
    """The judge registered as ``backend`` (valuedrift.backends)."""
    return get_model("judge", backend)(**kwargs)


def item_logprobs(judge: Judge, questions: Sequence[str], responses: Sequence[str],
                  topics: Sequence[str]) -> list[OptionLogprobs]:
    """Option log-probabilities per (question, response, topic): an LLM judge reads the
    Figure-8 prompt; a judge with ``item_logprobs`` (the classifier) reads the fields."""
    if hasattr(judge, "item_logprobs"):
        return judge.item_logprobs(questions, responses, topics)
    return judge.option_logprobs([judge_prompts.judge_prompt(q, r, t) for q, r, t in zip(questions, responses, topics)])


def stance_row(logprobs: OptionLogprobs, content_free: OptionLogprobs = None, *,
               min_option_mass: float = 0.0) -> dict:
    """p_support/p_neutral/p_oppose, option_mass, scorable of one response. The mass is
    that of the raw scores; below ``min_option_mass`` the response is unscorable (the
    judge barely considered the options), its mass still recorded."""
    from .calibration import calibrate

    raw = stance_distribution(logprobs)
    dist = stance_distribution(calibrate(logprobs, content_free)) if raw and content_free else raw
    keys = [f"p_{s}" for s in STANCES]
    if raw is None or raw[3] < min_option_mass:
        return {**dict.fromkeys(keys), "option_mass": raw[3] if raw else None, "scorable": False}
    return {**dict(zip(keys, dist[:3])), "option_mass": raw[3], "scorable": True}


def judge_table(judge: Judge, generations: pl.DataFrame, questions: pl.DataFrame,
                *, max_unscorable_fraction: float = 0.05, calibration: bool = False,
                min_option_mass: float = 0.0) -> pl.DataFrame:
    """Stance table for a generations table (schemas/stances.schema.yaml).

    ``calibration``: contextual calibration (valuedrift.calibration); ``min_option_mass``:
    the option mass below which a response is unscorable."""
    merged = generations.join(questions.select("question_id", "question", "topic"), on="question_id", how="left")
    missing = merged.filter(pl.col("topic").is_null())["question_id"].unique().to_list()
    if missing:
        raise ValueError(f"generations refer to questions not in the question set: {missing[:5]}")
    qs, rs, ts = merged["question"].to_list(), merged["response"].to_list(), merged["topic"].to_list()
    content_free = {}
    if calibration:
        from .calibration import content_free_logprobs

        content_free = content_free_logprobs(judge, qs, ts)
    rows = []
    for rec, lp, topic in zip(merged.iter_rows(named=True), item_logprobs(judge, qs, rs, ts), ts):
        rows.append({"question_id": rec["question_id"], "sample": rec["sample"],
                     **stance_row(lp, content_free.get(topic), min_option_mass=min_option_mass)})
    table = pl.DataFrame(rows, schema={"question_id": pl.String, "sample": pl.Int64, "p_support": pl.Float64,
                                       "p_neutral": pl.Float64, "p_oppose": pl.Float64,
                                       "option_mass": pl.Float64, "scorable": pl.Boolean})
    unscorable = (~table["scorable"]).sum()
    if len(table) and unscorable / len(table) > max_unscorable_fraction:
        raise RuntimeError(f"{unscorable} of {len(table)} responses could not be scored "
                           f"(more than judge.max_unscorable_fraction={max_unscorable_fraction}"
                           + (f"; judge.min_option_mass={min_option_mass}" if min_option_mass else "") + ")")
    return table
