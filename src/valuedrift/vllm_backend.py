"""vLLM generation backend (GPU; the paper's). vllm itself is imported only when an engine starts."""

from __future__ import annotations

import os
from typing import Any

from .chat import encode_prompt, end_of_turn_ids


def request(tokenizer, prompts: list[str], sampling, eos_ids=()) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The prompts as token ids (the same ids the transformers backend uses: no second BOS,
    which vLLM's own tokenisation of a chat-formatted Llama-3 prompt would add) and the
    SamplingParams keywords: the answer stops at the EOS or the template's end-of-turn token."""
    stop = end_of_turn_ids(tokenizer, eos_ids)
    params = dict(n=sampling.samples, temperature=sampling.temperature, top_p=sampling.top_p,
                  max_tokens=sampling.max_new_tokens, seed=sampling.seed, stop_token_ids=stop)
    return [{"prompt_token_ids": encode_prompt(tokenizer, p)} for p in prompts], params


def n_response_tokens(token_ids, finish_reason: str | None, stop_ids) -> int:
    """Tokens of an answer, its closing stop token not counted (as the transformers backend)."""
    ended = finish_reason == "stop" and token_ids and token_ids[-1] in set(stop_ids)
    return len(token_ids) - (1 if ended else 0)

from .backends import register_model


@register_model("generation", "vllm")
class VLLMGenerator:
    """One engine per job for all questions; ``n`` samples per prompt in one request."""

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "auto", batch_size: int = 0, **engine_kwargs):
        from transformers import GenerationConfig
        from vllm import LLM

        self.llm = LLM(model=str(model_dir), dtype=dtype, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        try:
            eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
        except OSError:  # no generation_config.json
            eos = None
        self.eos_ids = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])

    def generate(self, prompts, sampling):
        from vllm import SamplingParams

        token_prompts, kwargs = request(self.tokenizer, prompts, sampling, self.eos_ids)
        outputs = self.llm.generate(token_prompts, SamplingParams(**kwargs), use_tqdm=True)
        stop = kwargs["stop_token_ids"]
        return [[(c.text, n_response_tokens(list(c.token_ids), c.finish_reason, stop)) for c in out.outputs]
                for out in outputs]
