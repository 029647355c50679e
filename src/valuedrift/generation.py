"""Sampling responses to the evaluation questions: one interface, several backends.

Both backends return the same table (schemas/generations.schema.yaml): one row per
(question, sample) with the exact prompt text, the response and its token count.
Prompting follows the paper (Section 3): models after SFT get their chat template;
base models get the question with "Response:" appended (``base_prompt_template``).
Both backends tokenize a prompt the same way (``chat.encode_prompt``: the tokenizer's
special tokens, never a second BOS) and stop an answer at the EOS or the chat
template's end-of-turn token (``chat.end_of_turn_ids``), whichever comes first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from .backends import get_model, register_model
from .chat import CHAT_TEMPLATE_KWARGS, encode_prompt, end_of_turn_ids


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
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS)
    if prompt_format == "plain":
        return base_template.format(question=question)
    raise ValueError(f"unknown prompt_format {prompt_format!r} (chat or plain)")


class Generator(Protocol):
    def generate(self, prompts: list[str], sampling: SamplingSettings) -> list[list[tuple[str, int]]]:
        """For every prompt, ``sampling.samples`` (response, n_tokens) pairs."""


@register_model("generation", "transformers")
class TransformersGenerator:
    """CPU and fallback backend: batched, left-padded, length-sorted, seeded sampling.

    Our own decode loop around the model's forward, not ``model.generate``: each prompt
    is prefilled once and its KV cache repeated for its samples (``generate`` prefills
    every sample), finished rows leave the batch, and tokens are drawn by inverse-CDF
    sampling, exactly from softmax(logits / T) (torch.multinomial draws one exponential
    per vocabulary entry). Greedy decoding (T = 0) equals ``model.generate`` (tested).
    Each batch has its own generator seeded with (seed, index of its first prompt), so
    results do not depend on which batches ran before (a resumed run samples the same).
    """

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "auto", batch_size: int = 32):
        from .models import load_causal_lm
        from .precision import choose

        self.precision = choose(dtype)  # auto: by the machine's capability (valuedrift.precision)
        self.model, self.tokenizer = load_causal_lm(model_dir, dtype=self.precision.dtype)
        self.batch_size = batch_size
        # the EOS ids and the chat template's end-of-turn token (a base model's generation
        # config knows only its EOS; its SFT checkpoints end turns with the template's token)
        self.eos_ids = end_of_turn_ids(self.tokenizer, _as_list(self.model.generation_config.eos_token_id))

    def generate(self, prompts, sampling):
        import torch
        from tqdm.auto import tqdm

        tok = self.tokenizer
        ids = [encode_prompt(tok, p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (-len(ids[i]), i))
        results: list[list[tuple[str, int]]] = [[] for _ in prompts]
        with torch.inference_mode(), tqdm(total=len(prompts), desc="generating", unit="prompt") as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                enc = left_padded([ids[i] for i in batch], tok.pad_token_id, self.model.device)
                rng = torch.Generator().manual_seed(sampling.seed * 1_000_003 + start)
                for row, seq in enumerate(self._decode(enc, sampling, rng)):
                    results[batch[row // sampling.samples]].append((tok.decode(seq, skip_special_tokens=True), len(seq)))
                bar.update(len(batch))
        return results

    def _decode(self, enc, sampling: SamplingSettings, rng) -> list[list[int]]:
        """Token ids (end-of-sequence excluded) of ``sampling.samples`` continuations per prompt."""
        import torch

        model, k = self.model, sampling.samples
        mask = enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
        out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        cache = out.past_key_values
        cache.batch_repeat_interleave(k)
        mask = mask.repeat_interleave(k, 0)
        logits = out.logits[:, -1].repeat_interleave(k, 0)
        position = positions[:, -1].repeat_interleave(k, 0) + 1
        rows = torch.arange(mask.shape[0])  # which output row each batch row is (on the CPU)
        eos = torch.tensor(self.eos_ids, device=mask.device)
        tokens: list[list[int]] = [[] for _ in range(mask.shape[0])]
        for _ in range(sampling.max_new_tokens):
            # one uniform per output row per step, finished or not: a row's draws never
            # depend on which other rows have finished
            # (drawn on the CPU: the same numbers whatever device the model runs on)
            uniforms = torch.rand(len(tokens), generator=rng)[rows].to(logits.device)
            nxt = sample_next(logits, sampling.temperature, sampling.top_p, uniforms)
            finished = torch.isin(nxt, eos)
            for r, t, f in zip(rows.tolist(), nxt.tolist(), finished.tolist()):
                if not f:
                    tokens[r].append(t)
            if finished.all():
                break
            if finished.any():  # finished rows leave the batch (and the KV cache)
                keep = (~finished).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, nxt, mask, position = rows[keep.cpu()], nxt[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position[:, None],
                        past_key_values=cache, use_cache=True)
            logits, position = out.logits[:, -1], position + 1
        return tokens


def left_padded(id_lists: list[list[int]], pad_id: int, device) -> dict:
    """A batch of token id lists, left-padded, with its attention mask."""
    import torch

    width = max(map(len, id_lists))
    input_ids = torch.tensor([[pad_id] * (width - len(t)) + t for t in id_lists], device=device)
    mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in id_lists], device=device)
    return {"input_ids": input_ids, "attention_mask": mask}


def sample_next(logits, temperature: float, top_p: float, uniforms):
    """One token per row from softmax(logits / temperature), nucleus-truncated at ``top_p``,
    by inverse-CDF sampling with the row's uniform number in [0, 1); greedy at temperature 0."""
    import torch

    if not temperature:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    ids = None
    if top_p < 1.0:
        probs, ids = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the most likely token always)
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= top_p, 0.0)
    cdf = probs.cumsum(-1)
    u = uniforms.reshape(-1, 1).to(cdf.dtype) * cdf[:, -1:]
    picked = torch.searchsorted(cdf, u, right=True).clamp(max=probs.shape[-1] - 1)
    return (picked if ids is None else ids.gather(-1, picked)).squeeze(1)


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_generator(backend: str, model_dir: str | os.PathLike, **kwargs) -> Generator:
    """The generator registered as ``backend`` (valuedrift.backends)."""
    return get_model("generation", backend)(model_dir, **kwargs)


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
