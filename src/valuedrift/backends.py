"""One registry for everything that calls a model, in the style of lm-evaluation-harness.

A backend registers under a kind and a name; a config's ``backend`` key is looked up here:

* ``generation``: samples answers (``transformers``, ``vllm``);
* ``judge``: stance probabilities of answers (``local``, ``openai``, ``classifier``);
* ``llm``: chat completions for the LLM stages (V-PRISM, ...) (``transformers``, ``openai``).

Registering is a decorator on the class or factory; the modules that hold backends are
imported on first lookup (none imports an optional engine such as vLLM at import time).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

KINDS = ("generation", "judge", "llm")
# where the backends of each kind live (imported on first lookup)
_MODULES = {
    "generation": ("valuedrift.generation", "valuedrift.vllm_backend"),
    "judge": ("valuedrift.judge", "valuedrift.openai_judge", "valuedrift.classifier_judge", "valuedrift.vllm_backend"),
    "llm": ("valuedrift.llm",),
}
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}


def register_model(kind: str, *names: str):
    """Register the decorated class or factory as backend ``names`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown backend kind {kind!r}; kinds: {', '.join(KINDS)}")

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            known = _REGISTRY[kind].get(name)
            if known is not None and known is not factory:
                raise ValueError(f"{kind} backend {name!r} is registered twice ({known} and {factory})")
            _REGISTRY[kind][name] = factory
        return factory

    return decorate


def _load(kind: str) -> None:
    for module in _MODULES[kind]:
        importlib.import_module(module)


def get_model(kind: str, name: str) -> Callable[..., Any]:
    """The class or factory registered as backend ``name`` of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown backend kind {kind!r}; kinds: {', '.join(KINDS)}")
    if name not in _REGISTRY[kind]:
        _load(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise ValueError(f"unknown {kind} backend {name!r}; known: {', '.join(names(kind))}") from None


def names(kind: str) -> list[str]:
    _load(kind)
    return sorted(_REGISTRY[kind])
