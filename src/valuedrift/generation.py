"""Sampling responses to the evaluation questions: one interface, several backends.

Both backends return the same table (schemas/generations.schema.yaml): one row per
(question, sample) with the exact prompt text, the response and its token count.
Prompting follows the paper (Section 3): models after SFT get their chat template;
base models get the question with "Response:" appended (``base_prompt_template``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import polars as pl


@dataclass(frozen=True)
class SamplingSettings:
    samples: int = 5
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0


def format_prompt(tokenizer, question: str, prompt_format: str, base_template: str) -> str:
    """The text a model is conditioned on for ``question``."""
    if prompt_format == "chat":
        if tokenizer.chat_template is None:
            raise ValueError("prompt_format 'chat' but the tokenizer has no chat template")
        return tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                             tokenize=False, add_generation_prompt=True)
    if prompt_format == "plain":
        return base_template.format(question=question)
    raise ValueError(f"unknown prompt_format {prompt_format!r} (chat or plain)")


class Generator(Protocol):
    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[tuple[str, int]]]:
        """For every prompt, ``sampling.samples`` (response, n_tokens) pairs."""


class TransformersGenerator:
    """CPU and fallback backend: batched, left-padded, length-sorted, seeded sampling.

    Each batch reseeds torch with (seed, index of the batch's first prompt), so results
    do not depend on which batches ran before (a resumed or partial run samples the same).
    """

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "auto", batch_size: int = 32):
        from .models import load_causal_lm

        self.model, self.tokenizer = load_causal_lm(model_dir, dtype=None if dtype == "auto" else dtype)
        self.batch_size = batch_size

    def generate(self, prompts, sampling):
        import torch
        from tqdm.auto import tqdm

        tok, model = self.tokenizer, self.model
        lengths = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (-lengths[i], i))
        results: list[list[tuple[str, int]]] = [[] for _ in prompts]
        eos_ids = set(_as_list(model.generation_config.eos_token_id) or [tok.eos_token_id])
        with torch.inference_mode(), tqdm(total=len(prompts), desc="generating", unit="prompt") as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                enc = tok([prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
                torch.manual_seed(sampling.seed * 1_000_003 + start)
                out = model.generate(
                    **enc, do_sample=sampling.temperature > 0, temperature=sampling.temperature or None,
                    top_p=sampling.top_p, top_k=0, max_new_tokens=sampling.max_new_tokens,
                    num_return_sequences=sampling.samples, pad_token_id=tok.pad_token_id)
                new = out[:, enc["input_ids"].shape[1]:]
                for row, seq in enumerate(new.tolist()):
                    n = len(seq)
                    for k, t in enumerate(seq):
                        if t in eos_ids or t == tok.pad_token_id:
                            n = k
                            break
                    text = tok.decode(seq[:n], skip_special_tokens=True)
                    results[batch[row // sampling.samples]].append((text, n))
                bar.update(len(batch))
        return results


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_generator(backend: str, model_dir: str | os.PathLike, **kwargs) -> Generator:
    if backend == "transformers":
        return TransformersGenerator(model_dir, **kwargs)
    if backend == "vllm":
        from .vllm_backend import VLLMGenerator  # imported only here: vLLM is optional (GPU)

        return VLLMGenerator(model_dir, **kwargs)
    raise ValueError(f"unknown generation backend {backend!r}")


def generate_table(generator: Generator, questions: pl.DataFrame, prompts: list[str],
                   sampling: SamplingSettings) -> pl.DataFrame:
    outputs = generator.generate(prompts, sampling)
    rows = []
    for qid, prompt, samples in zip(questions["question_id"], prompts, outputs):
        if len(samples) != sampling.samples:
            raise RuntimeError(f"backend returned {len(samples)} samples for {qid}, expected {sampling.samples}")
        for k, (text, n) in enumerate(samples):
            rows.append({"question_id": qid, "sample": k, "prompt": prompt, "response": text, "n_tokens": n})
    return pl.DataFrame(rows, schema={"question_id": pl.String, "sample": pl.Int64, "prompt": pl.String,
                                      "response": pl.String, "n_tokens": pl.Int64})
