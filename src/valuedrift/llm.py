"""The shared LLM client: every rule that calls an LLM (V-PRISM rephrasing, naming and
filtering, synthetic data, API judging) goes through it, so every call is cached on
disk (``valuedrift.cache``), retried and accounted the same way.

Contract (implemented by the backends in this module):

    client = make_client(cfg)            # cfg: the config section of the calling stage
    results = client.complete(requests)  # list[ChatRequest] -> list[ChatResult], same order

A result whose call failed for good has ``error`` set and no text/logprobs; callers
record it as such and never make up a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    max_tokens: int = 256
    temperature: float = 0.0
    top_logprobs: int | None = None  # first-token alternatives wanted (logprobs=True)
    seed: int | None = None


@dataclass
class ChatResult:
    text: str | None
    first_token_logprobs: dict[str, float] | None = None  # token text -> logprob (top alternatives)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LLMClient(Protocol):
    model: str

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...


def user(text: str) -> tuple[tuple[str, str], ...]:
    """Messages of a single user turn."""
    return (("user", text),)
