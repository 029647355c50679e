"""Stance judging: one interface, several backends, one stance table.

A judge reads the log-probabilities of the three option letters of the paper's judge
prompt (Figure 8) -- A support, B neutral, C oppose -- as the first answer token, and
the stance distribution is the softmax over those three (paper Section 3). Nothing is
sampled or parsed. A response whose option log-probabilities cannot be read is marked
unscorable (null probabilities), never filled in.

``local``: a transformers model scores a batch of prompts in one forward pass and
reads the exact log-probabilities of the option tokens (each letter with and without
a leading space, merged by log-sum-exp).
"""

from __future__ import annotations

import math
import os
from typing import Protocol, Sequence

import polars as pl

from . import prompts as judge_prompts
from .topics import STANCES

OptionLogprobs = tuple[float, float, float] | None


class Judge(Protocol):
    def option_logprobs(self, prompts: Sequence[str]) -> list[OptionLogprobs]:
        """Log-probabilities of options A, B, C as the first answer token, per prompt."""


def stance_distribution(logprobs: OptionLogprobs) -> tuple[float, float, float, float] | None:
    """Softmax over the three options, plus the probability mass they held (coverage)."""
    if logprobs is None or not all(math.isfinite(x) for x in logprobs):
        return None
    top = max(logprobs)
    exps = [math.exp(x - top) for x in logprobs]
    total = sum(exps)
    mass = min(1.0, sum(math.exp(x) for x in logprobs))
    return exps[0] / total, exps[1] / total, exps[2] / total, mass


class LocalJudge:
    """A causal LM judging in one batched forward pass per batch (left padding)."""

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "float32", batch_size: int = 16):
        from .models import load_causal_lm

        self.model, self.tokenizer = load_causal_lm(model_dir, dtype=None if dtype == "auto" else dtype)
        self.batch_size = batch_size
        self.option_ids = [self._variants(letter) for letter in judge_prompts.OPTION_LETTERS]

    def _variants(self, letter: str) -> list[int]:
        ids = set()
        for text in (letter, " " + letter):
            enc = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(enc) == 1:
                ids.add(enc[0])
        if not ids:
            raise ValueError(f"judge tokenizer has no single token for option {letter!r}")
        return sorted(ids)

    def format(self, prompt: str) -> str:
        tok = self.tokenizer
        if tok.chat_template is None:
            return f"{prompt}\nAnswer:"
        return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)

    def option_logprobs(self, prompts):
        import torch
        from tqdm.auto import tqdm

        texts = [self.format(p) for p in prompts]
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # similar lengths share a batch
        out: list[OptionLogprobs] = [None] * len(texts)
        with torch.inference_mode(), tqdm(total=len(texts), desc="judging", unit="response") as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                                     add_special_tokens=False)
                logits = self.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
                logp = torch.log_softmax(logits, dim=-1)
                per_option = torch.stack([torch.logsumexp(logp[:, ids], dim=-1) for ids in self.option_ids], dim=-1)
                for row, i in enumerate(batch):
                    out[i] = tuple(float(x) for x in per_option[row])
                bar.update(len(batch))
        return out


def make_judge(backend: str, **kwargs) -> Judge:
    if backend == "local":
        return LocalJudge(**kwargs)
    if backend == "openai":
        from .openai_judge import OpenAIJudge

        return OpenAIJudge(**kwargs)
    raise ValueError(f"unknown judge backend {backend!r}")


def judge_table(judge: Judge, generations: pl.DataFrame, questions: pl.DataFrame,
                *, max_unscorable_fraction: float = 0.05) -> pl.DataFrame:
    """Stance table for a generations table (schemas/stances.schema.yaml)."""
    merged = generations.join(questions.select("question_id", "question", "topic"), on="question_id", how="left")
    missing = merged.filter(pl.col("topic").is_null())["question_id"].unique().to_list()
    if missing:
        raise ValueError(f"generations refer to questions not in the question set: {missing[:5]}")
    texts = [judge_prompts.judge_prompt(q, r, t) for q, r, t in
             zip(merged["question"], merged["response"], merged["topic"])]
    rows = []
    for rec, lp in zip(merged.iter_rows(named=True), judge.option_logprobs(texts)):
        dist = stance_distribution(lp)
        p = dict(zip([f"p_{s}" for s in STANCES], dist[:3])) if dist else dict.fromkeys([f"p_{s}" for s in STANCES])
        rows.append({"question_id": rec["question_id"], "sample": rec["sample"], **p,
                     "option_mass": dist[3] if dist else None, "scorable": dist is not None})
    table = pl.DataFrame(rows, schema={"question_id": pl.String, "sample": pl.Int64, "p_support": pl.Float64,
                                       "p_neutral": pl.Float64, "p_oppose": pl.Float64,
                                       "option_mass": pl.Float64, "scorable": pl.Boolean})
    unscorable = (~table["scorable"]).sum()
    if len(table) and unscorable / len(table) > max_unscorable_fraction:
        raise RuntimeError(f"{unscorable} of {len(table)} responses could not be scored "
                           f"(more than judge.max_unscorable_fraction={max_unscorable_fraction})")
    return table
