"""The ``openai`` judge: any OpenAI-compatible endpoint (GPT-4o in the paper, or a vLLM /
llama.cpp server).

Each response's judge prompt (Figure 8, built by ``judge.judge_table``) is sent as one
user message with temperature 0, logprobs and top_logprobs=20, and a few answer tokens
(``max_tokens``, default 3): the prompt shows "(A) support", so a model may answer "(",
" " or "\n" before the letter. The option log-probabilities are read at the first answer
position whose token is an option letter (``options.read_options``: "A", " A", "(A",
"A)", "\nA", ... merged by log-sum-exp; a missing option gets the smallest listed
log-probability, an upper bound). The position read and the probability mass the three
options held there are accounted; no letter listed at any position, or a call that
failed for good, makes the response unscorable.
Calls are cached, retried and accounted by ``valuedrift.llm.OpenAIChatClient``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from . import prompts as judge_prompts
from .backends import register_model
from .cache import DEFAULT_CACHE_DIR, DiskCache
from .llm import ChatRequest, OpenAIChatClient, user
from .options import OptionLogprobs, OptionReading, read_options


@register_model("judge", "openai")
class OpenAIJudge:
    def __init__(self, *, model: str, base_url: str | None = None, api_key_env: str | None = "OPENAI_API_KEY",
                 top_logprobs: int = 20, concurrency: int = 8, max_retries: int = 6, timeout_s: float = 60.0,
                 price_per_million_prompt_tokens: float = 0.0, price_per_million_completion_tokens: float = 0.0,
                 cache_dir: str | None = DEFAULT_CACHE_DIR, backoff_base_s: float = 1.0,
                 backoff_max_s: float = 60.0, progress: bool = True, max_tokens: int = 3, allow_http: bool = False,
                 cache_namespace: str | None = None):
        self.top_logprobs = top_logprobs
        self.max_tokens = max_tokens  # answer positions searched for the option letter
        self.client = OpenAIChatClient(
            model=model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
            max_retries=max_retries, timeout_s=timeout_s, cache=DiskCache(cache_dir) if cache_dir else None,
            backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
            price_per_million_prompt_tokens=price_per_million_prompt_tokens,
            price_per_million_completion_tokens=price_per_million_completion_tokens,
            progress=progress, desc="judging", allow_http=allow_http, config_key="judge",
            cache_namespace=cache_namespace)
        self.coverage: Counter[str] = Counter()  # options listed per response: "3", "2", "1", "0"
        self.missing: Counter[str] = Counter()  # per option letter: responses where it was not listed
        self.unscorable: Counter[str] = Counter()  # "no_option_listed" / "call_failed"
        self.readings: list[OptionReading | None] = []  # per response judged (None: the call failed)

    def request(self, prompt: str) -> ChatRequest:
        return ChatRequest(messages=user(prompt), max_tokens=self.max_tokens, temperature=0.0,
                           top_logprobs=self.top_logprobs)

    def option_logprobs(self, prompts: Sequence[str]) -> list[OptionLogprobs]:
        results = self.client.complete([self.request(p) for p in prompts])
        out: list[OptionLogprobs] = []
        for res in results:
            if res.error is not None or res.extra.get("top_logprobs") is None:
                self.unscorable["call_failed"] += 1
                self.readings.append(None)
                out.append(None)
                continue
            reading = read_options(answer_positions(res.extra))
            n_letters = len(judge_prompts.OPTION_LETTERS)
            self.coverage[str(n_letters - len(reading.missing))] += 1
            self.missing.update(reading.missing)
            if reading.logprobs is None:
                self.unscorable["no_option_listed"] += 1
            self.readings.append(reading)
            out.append(reading.logprobs)
        return out

    def accounting(self) -> dict[str, Any]:
        """The client's accounting (calls, cache hits, tokens, failures, cost) plus coverage."""
        return {"judge_backend": "openai", **self.client.accounting(), "top_logprobs": self.top_logprobs,
                "options_listed": {k: self.coverage.get(k, 0) for k in ("3", "2", "1", "0")},
                "option_missing": {letter: self.missing.get(letter, 0) for letter in judge_prompts.OPTION_LETTERS},
                "unscorable_reasons": dict(self.unscorable),
                "missing_option_rule": "a missing option gets the smallest listed logprob (an upper bound)",
                "max_tokens": self.max_tokens, **reading_summary(self.readings)}


def answer_positions(extra: dict[str, Any]) -> list:
    """(token, logprob, top pairs) per answer position of a result; a cached result from
    before positions were kept has its first position only."""
    if extra.get("positions"):
        return extra["positions"]
    first = extra.get("first_token") or [None, None]
    return [[first[0], first[1], extra.get("top_logprobs") or []]]


def reading_summary(readings: Sequence[OptionReading | None]) -> dict[str, Any]:
    """Where the letters were read (answer position, and whether the token emitted there
    was a letter) and how much probability the three options held there."""
    done = [r for r in readings if r is not None and r.position is not None]
    masses = sorted(r.mass for r in done)
    return {"option_position": dict(sorted(Counter(str(r.position) for r in done).items())),
            "option_rule": dict(sorted(Counter(r.rule for r in done).items())),
            "option_mass": {"min": masses[0] if masses else None,
                            "median": masses[len(masses) // 2] if masses else None,
                            "below_0.5": sum(m < 0.5 for m in masses)}}
