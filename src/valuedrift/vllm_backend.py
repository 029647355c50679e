"""vLLM generation backend (GPU; the paper's). vllm itself is imported only when an engine starts."""

from __future__ import annotations

import os

from .backends import register_model


@register_model("generation", "vllm")
class VLLMGenerator:
    """One engine per job for all questions; ``n`` samples per prompt in one request."""

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "auto", batch_size: int = 0, **engine_kwargs):
        from vllm import LLM

        self.llm = LLM(model=str(model_dir), dtype=dtype, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts, sampling):
        from vllm import SamplingParams

        params = SamplingParams(n=sampling.samples, temperature=sampling.temperature, top_p=sampling.top_p,
                                max_tokens=sampling.max_new_tokens, seed=sampling.seed)
        outputs = self.llm.generate(prompts, params, use_tqdm=True)
        return [[(c.text, len(c.token_ids) - (1 if c.finish_reason == "stop" and c.token_ids
                                               and c.token_ids[-1] == self.tokenizer.eos_token_id else 0))
                 for c in out.outputs] for out in outputs]
