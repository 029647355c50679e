"""vLLM backends (GPU; the paper's): generation and the stance judge.

vLLM is imported only when an engine is built. What decides results -- the requests (one
seeded ``SamplingParams`` per prompt, ``n`` samples each), the token counts, and the
reading of the option letters' log-probabilities by token id -- are plain functions here,
unit-tested without vLLM (tests/test_vllm_backend.py); the engine tests run wherever vllm
imports.

Both backends build one engine per job (``LLM``) and send everything in one ``generate``
call, so vLLM's scheduler batches all prompts and samples together. Prompts go in as token
ids, tokenized exactly as the transformers backends do (no special tokens added: a chat-
formatted prompt already starts with its BOS).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
from typing import Any, Mapping, Sequence

from .backends import register_model
from .chat import encode_prompt, end_of_turn_ids
from .judge import LocalJudge, OptionLogprobs, cached_option_logprobs, logsumexp, option_letter

# vLLM 0.33's SamplingParams.logprob_token_ids accepts at most this many ids (MAX_LOGPROB_TOKEN_IDS)
MAX_LOGPROB_TOKEN_IDS = 128
# top log-probabilities read when the exact ids cannot be asked for (vLLM's default max_logprobs)
TOP_LOGPROBS = 20


# --- pure logic (no vLLM) -------------------------------------------------------------------

def request_seed(seed: int, prompt: str, samples: int) -> int:
    """The seed of one prompt's request: a hash of (seed, prompt text), so a question gets
    the same samples whichever other questions share the job. vLLM seeds sample k of a
    request with seed + k; the range leaves room for that."""
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2 ** 32 - samples)


def sampling_kwargs(sampling, prompt: str, stop_token_ids: Sequence[int]) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments of one prompt's request (all its samples)."""
    return {"n": sampling.samples, "temperature": sampling.temperature, "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens, "seed": request_seed(sampling.seed, prompt, sampling.samples),
            "stop_token_ids": list(stop_token_ids), "skip_special_tokens": True}


def response_token_count(token_ids: Sequence[int], finish_reason: str | None, stop_reason: Any) -> int:
    """Generated tokens, the stopping token excluded (as the transformers backend counts).
    vLLM keeps the end-of-sequence or stop token in ``token_ids`` and reports it as
    finish_reason "stop" with stop_reason None (EOS) or the token id; a stop string
    (stop_reason a str) leaves no extra token."""
    stopped_on_token = finish_reason == "stop" and (stop_reason is None or isinstance(stop_reason, int))
    return max(len(token_ids) - (1 if stopped_on_token and token_ids else 0), 0)


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """Tokens that end an answer: the generation config's end-of-sequence ids (a list for
    chat models whose turn ends with its own token), else the tokenizer's EOS, and the chat
    template's end-of-turn token (valuedrift.chat), as in the transformers backend."""
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    if not ids and tokenizer.eos_token_id is not None:
        ids = [tokenizer.eos_token_id]
    return sorted(set(end_of_turn_ids(tokenizer, ids)))


def option_token_ids(tokenizer, letters: Sequence[str], vocab_size: int | None = None) -> list[list[int]]:
    """For each option letter, every vocabulary token that reads as it (``judge.option_letter``):
    the same ids the local judge merges."""
    ids: dict[str, list[int]] = {letter: [] for letter in letters}
    special = set(tokenizer.all_special_ids)
    for token_id in sorted(set(tokenizer.get_vocab().values()) - special):
        if vocab_size is not None and token_id >= vocab_size:
            continue  # added tokens beyond the model's embedding rows
        letter = option_letter(tokenizer.decode([token_id]), letters)
        if letter is not None:
            ids[letter].append(token_id)
    for letter, found in ids.items():
        if not found:
            raise ValueError(f"judge tokenizer has no single token for option {letter!r}")
    return [ids[letter] for letter in letters]


def supports_logprob_token_ids(sampling_params_cls) -> bool:
    """Whether this vLLM's SamplingParams can return the log-probabilities of given token ids."""
    fields = getattr(sampling_params_cls, "__struct_fields__", None)
    if fields is not None:
        return "logprob_token_ids" in fields
    return "logprob_token_ids" in inspect.signature(sampling_params_cls).parameters


def judge_sampling_kwargs(option_ids: Sequence[Sequence[int]], exact: bool) -> dict[str, Any]:
    """One greedy token; with ``exact``, the log-probabilities of every option token by id,
    else the top ``TOP_LOGPROBS`` (read by id too, never by decoded string)."""
    flat = sorted({t for ids in option_ids for t in ids})
    kwargs: dict[str, Any] = {"n": 1, "temperature": 0.0, "max_tokens": 1, "detokenize": False}
    if exact and len(flat) <= MAX_LOGPROB_TOKEN_IDS:
        kwargs["logprob_token_ids"] = flat
    else:
        kwargs["logprobs"] = TOP_LOGPROBS
    return kwargs


def logprob_values(position: Mapping[int, Any] | None) -> dict[int, float]:
    """{token id: log-probability} of one generated position (vLLM ``Logprob`` objects or floats)."""
    if not position:
        return {}
    return {int(t): float(getattr(lp, "logprob", lp)) for t, lp in position.items()}


def options_from_token_logprobs(logprobs: Mapping[int, float], option_ids: Sequence[Sequence[int]],
                                *, exact: bool) -> OptionLogprobs:
    """Option log-probabilities from a first position's {token id: logprob}.

    ``exact``: every option token was asked for by id, so each option is the log-sum-exp
    of its tokens (a token absent from the answer is an error: vLLM returned less than
    asked). Otherwise the map is a top-k list: an option none of whose tokens is listed
    gets the smallest listed log-probability, an upper bound on its true value (as
    ``judge.options_from_top_logprobs`` does for API judges); None if no option is listed.
    """
    finite = {t: lp for t, lp in logprobs.items() if lp is not None and math.isfinite(lp)}
    per_option: list[float | None] = []
    for ids in option_ids:
        found = [finite[t] for t in ids if t in finite]
        if exact:
            missing = [t for t in ids if t not in logprobs]
            if missing:
                raise ValueError(f"vLLM returned no log-probability for option tokens {missing[:5]}")
            per_option.append(logsumexp([logprobs[t] for t in ids]))
        else:
            per_option.append(logsumexp(found) if found else None)
    if exact:
        return tuple(per_option)  # type: ignore[return-value]
    if all(v is None for v in per_option) or not finite:
        return None
    floor = min(finite.values())
    return tuple(v if v is not None else floor for v in per_option)  # type: ignore[return-value]


def token_prompts(tokenizer, texts: Sequence[str]) -> list[dict[str, list[int]]]:
    """vLLM ``TokensPrompt`` dicts of judge prompts, tokenized as the local judge does."""
    return [{"prompt_token_ids": tokenizer(t, add_special_tokens=False).input_ids} for t in texts]


def generation_prompts(tokenizer, texts: Sequence[str]) -> list[dict[str, list[int]]]:
    """vLLM ``TokensPrompt`` dicts of questions, tokenized as the transformers generator does
    (``chat.encode_prompt``: a base-model prompt gets its BOS, a chat prompt no second one)."""
    return [{"prompt_token_ids": encode_prompt(tokenizer, t)} for t in texts]


# --- engines ----------------------------------------------------------------------------------

def _engine(model_dir, dtype: str, engine_kwargs: dict[str, Any], engine=None):
    """The job's engine and its precision (``auto``: valuedrift.precision's choice, bf16 on a
    GPU; vLLM's own ``auto`` would run an fp32 checkpoint in fp16). ``engine``: an engine
    already built for this model in this process (one per job, shared by its backends)."""
    from .precision import choose

    precision = choose(dtype)
    if engine is not None:
        return engine, precision
    from vllm import LLM

    kwargs = {"seed": 0, "enable_prefix_caching": True, **engine_kwargs}
    return LLM(model=str(model_dir), dtype=precision.dtype, **kwargs), precision


def _hf_tokenizer(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok



@register_model("generation", "vllm")
class VLLMGenerator:
    """One engine per job; every sample of every question in one ``generate`` call (one
    seeded request per prompt with ``n`` = samples). ``batch_size`` is not used: vLLM's
    scheduler batches by the memory it has."""

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "auto", batch_size: int = 0, engine=None,
                 **engine_kwargs):
        from transformers import GenerationConfig

        self.tokenizer = _hf_tokenizer(model_dir)
        try:
            generation_config = GenerationConfig.from_pretrained(model_dir)
        except OSError:  # no generation_config.json
            generation_config = None
        self.stop_token_ids = stop_token_ids(self.tokenizer, generation_config)
        self.llm, self.precision = _engine(model_dir, dtype, engine_kwargs, engine)

    def generate(self, prompts, sampling):
        from vllm import SamplingParams

        params = [SamplingParams(**sampling_kwargs(sampling, p, self.stop_token_ids)) for p in prompts]
        outputs = self.llm.generate(generation_prompts(self.tokenizer, prompts), params, use_tqdm=True)
        return [[(c.text, response_token_count(c.token_ids, c.finish_reason, c.stop_reason)) for c in out.outputs]
                for out in outputs]


@register_model("judge", "vllm")
class VLLMJudge:
    """The stance judge on vLLM: one greedy token per response, reading the exact
    log-probabilities of every option token by id (``logprob_token_ids``; top
    log-probabilities keyed by id where this vLLM lacks it). The judge instruction all
    prompts share is computed once and reused through vLLM's prefix cache. Cached on disk
    like the local judge (same key fields, its own ``api`` name)."""

    def __init__(self, model_dir: str | os.PathLike, *, dtype: str = "auto", batch_size: int = 0,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True, engine=None, **engine_kwargs):
        from vllm import SamplingParams

        from . import prompts as judge_prompts
        from .cache import DiskCache, fingerprint_dir

        self.tokenizer = _hf_tokenizer(model_dir)
        self.exact = supports_logprob_token_ids(SamplingParams)
        if not self.exact:
            engine_kwargs.setdefault("max_logprobs", TOP_LOGPROBS)
        self.llm, self.precision = _engine(model_dir, dtype, engine_kwargs, engine)
        dtype = self.precision.dtype
        vocab_size = self.llm.model_config.get_vocab_size()
        self.option_ids = option_token_ids(self.tokenizer, judge_prompts.OPTION_LETTERS, vocab_size)
        self.sampling = judge_sampling_kwargs(self.option_ids, self.exact)
        self.exact = "logprob_token_ids" in self.sampling  # more option tokens than vLLM takes: top-k
        self.model_dir, self.dtype, self.progress = str(model_dir), dtype, progress
        self.cache = DiskCache(cache_dir) if cache_dir else None
        self._fingerprint = fingerprint_dir(model_dir) if self.cache is not None else None
        self.counts = {"calls": 0, "cache_hits": 0, "prompt_tokens": 0}

    format = LocalJudge.format  # the same chat formatting as the local judge

    def _key(self, text: str) -> str:
        from .cache import cache_key

        return cache_key({"api": "vllm-judge", "model": self._fingerprint, "dtype": self.dtype,
                          "option_ids": self.option_ids, "exact": self.exact, "text": text})

    def option_logprobs(self, prompts):
        from vllm import SamplingParams

        texts = [self.format(p) for p in prompts]
        out, keys, todo = cached_option_logprobs(self.cache, self._key, texts)
        self.counts["cache_hits"] += len(texts) - len(todo)
        if todo:
            requests = token_prompts(self.tokenizer, [texts[i] for i in todo])
            params = SamplingParams(**self.sampling)
            # the first prompt alone fills the prefix cache with the shared instruction; sent
            # together, the first wave of requests would each compute it
            results = self.llm.generate(requests[:1], params, use_tqdm=False)
            if len(requests) > 1:
                results += self.llm.generate(requests[1:], params, use_tqdm=self.progress)
            for i, request, result in zip(todo, requests, results):
                first = result.outputs[0].logprobs[0] if result.outputs[0].logprobs else None
                out[i] = options_from_token_logprobs(logprob_values(first), self.option_ids, exact=self.exact)
                if keys and out[i] is not None:
                    self.cache.put(keys[i], list(out[i]))
                self.counts["prompt_tokens"] += len(request["prompt_token_ids"])
            self.counts["calls"] += len(todo)
        return out

    def accounting(self) -> dict:
        return {"judge_backend": "vllm", "model": self.model_dir, "dtype": self.dtype,
                "precision": self.precision.record(), **self.counts,
                "option_logprobs": "exact (logprob_token_ids)" if self.exact else f"top-{TOP_LOGPROBS} by token id",
                "completion_tokens": self.counts["calls"], "failures": 0, "cost": 0.0,
                "cache_dir": str(self.cache.root) if self.cache is not None else None}
