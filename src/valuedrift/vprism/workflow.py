"""What workflow/rules/vprism.smk asks of a config (kept here so the rules hold no code).

Each rule's params are only the part of ``questions.vprism`` its stage reads, so a
changed setting reruns that stage and the ones downstream of it, nothing upstream.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import paths
from . import artifact

STAGES = ("load", "rephrase", "embed", "cluster", "name", "select", "filter", "sample")


def _vp(config: dict[str, Any]) -> dict[str, Any]:
    return config["questions"].get("vprism", {})


def llm_settings(config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The stage's LLM client settings; a key of ``models`` as model means its imported base model."""
    vp = _vp(config)
    cfg = {**vp.get("llm", {}), **vp.get(stage, {}).get("llm", {})}
    if cfg.get("model") in config["models"] and not cfg.get("base_url"):
        cfg["model"] = paths.model_dir(paths.base_model_key(cfg["model"]))
    return cfg


def llm_model_input(config: dict[str, Any], stage: str) -> list[str]:
    """The imported base model a local LLM stage reads (none for an API or a model folder)."""
    vp = _vp(config)
    model = {**vp.get("llm", {}), **vp.get(stage, {}).get("llm", {})}.get("model")
    return [paths.model_dir(paths.base_model_key(model))] if model in config["models"] else []


def uses_llm(config: dict[str, Any], stage: str) -> bool:
    return stage != "select" or _vp(config)["select"]["method"] == "llm"


def params(config: dict[str, Any], *blocks: str, llm: str | None = None) -> dict[str, Any]:
    """The blocks of questions.vprism a rule depends on, its stage's LLM settings resolved."""
    vp = _vp(config)
    out = {b: copy.deepcopy(vp[b]) for b in blocks if b in vp}
    if llm and uses_llm(config, llm):
        out["llm"] = llm_settings(config, llm)
        out.setdefault(llm, {})["llm"] = {}
    return out


def prompt_files(config: dict[str, Any]) -> list[str]:
    spec = _vp(config)["prompts"]
    if spec["source"] != "file":
        return []
    path = spec.get("path")
    return [path] if isinstance(path, str) else list(path or [])


def stats_files() -> list[str]:
    return [artifact(f"stats/{s}.json") for s in STAGES]


def report_inputs(config: dict[str, Any]) -> list[str]:
    """The cluster report files for the HTML report (none when questions come from a file)."""
    if config["questions"]["source"] != "vprism":
        return []
    return [artifact(n) for n in ("cluster_report.json", "cluster_scatter.html", "cluster_scatter.png")]
