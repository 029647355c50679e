"""What workflow/rules/vprism.smk asks of a config (kept here so the rules hold no code).

Each rule's params are only the part of ``questions.vprism`` its stage reads, so a
changed setting reruns that stage and the ones downstream of it, nothing upstream.
"""

from __future__ import annotations

from typing import Any

from .. import paths
from ..study import canonical, result_settings
from ..study import job_settings as with_execution_settings
from . import artifact
from .ask import llm_settings as merged_llm_settings

STAGES = ("load", "rephrase", "embed", "cluster", "name", "select", "filter", "sample")


def _vp(config: dict[str, Any]) -> dict[str, Any]:
    return config["questions"].get("vprism", {})


def llm_settings(config: dict[str, Any], stage: str, *, resolve_models: bool = True) -> dict[str, Any]:
    """The stage's LLM client settings; a key of ``models`` as model means its imported base model."""
    cfg = merged_llm_settings(_vp(config), stage)
    if resolve_models and cfg.get("model") in config["models"] and not cfg.get("base_url"):
        cfg["model"] = paths.model_dir(paths.base_model_key(cfg["model"]))
    return cfg


def llm_model_input(config: dict[str, Any], stage: str) -> list[str]:
    """The imported base model a local LLM stage reads (none for an API or a model folder)."""
    model = llm_settings(config, stage, resolve_models=False).get("model")
    return [paths.model_dir(paths.base_model_key(model))] if model in config["models"] else []


def uses_llm(config: dict[str, Any], stage: str) -> bool:
    return stage != "select" or _vp(config)["select"]["method"] == "llm"


def uses_local_model(config: dict[str, Any], stage: str) -> bool:
    """Whether a stage runs an LLM on this machine (a GPU job on a cluster), not an API or no LLM."""
    if not uses_llm(config, stage):
        return False
    cfg = llm_settings(config, stage, resolve_models=False)
    return (cfg.get("backend") or ("openai" if cfg.get("base_url") else "transformers")) != "openai"


def params(config: dict[str, Any], *blocks: str, llm: str | None = None) -> dict[str, Any]:
    """The blocks of questions.vprism a rule depends on (its rerun trigger, canonical), with its
    stage's result-changing LLM settings; :func:`job_settings` adds back how the LLM runs."""
    vp = _vp(config)
    out = {b: vp[b] for b in blocks if b in vp}
    if llm and uses_llm(config, llm):
        out["llm"] = result_settings(llm_settings(config, llm), "llm")
        out[llm] = {**out.get(llm, {}), "llm": {}}
    return canonical(out)


def job_settings(vp_params: dict[str, Any], config: dict[str, Any], stage: str) -> dict[str, Any]:
    """A stage's params plus its LLM's execution settings (batch size, concurrency, ...), which
    are no rerun trigger and so are read from the config by the job itself."""
    if "llm" not in vp_params:
        return vp_params
    return {**vp_params, "llm": with_execution_settings(vp_params["llm"], llm_settings(config, stage), "llm")}


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
