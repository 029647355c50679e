"""Load and check a study config before any job runs.

Errors name the offending key (``runs[2].every``) and say what is wrong, so a typo
fails in a second instead of after an hour of training.
"""

from __future__ import annotations

import copy
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .paths import Run

ALGORITHMS_NEEDING_REWARD_MODEL = {"ppo"}


class ConfigError(ValueError):
    """A config problem, reported with the key it concerns."""


def schema_path() -> Path:
    return Path(str(files("valuedrift").joinpath("schemas/config.schema.yaml")))


def schema() -> dict[str, Any]:
    return yaml.safe_load(schema_path().read_text())


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"in '{key}'" if error.absolute_path else "at the top level"
        return (f"unknown config key {', '.join(repr(u) for u in unknown)} {where}; "
                f"allowed keys: {', '.join(allowed)}")
    if error.validator == "required":
        return f"config key '{key}' is missing a required entry: {error.message}"
    return f"config key '{key}': {error.message}"


def _fill_defaults(instance: Any, node: dict[str, Any]) -> None:
    """Set schema defaults in place (objects only, recursively), like snakemake.utils.validate."""
    if not isinstance(instance, dict):
        return
    for name, sub in node.get("properties", {}).items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub)


def validate(config: dict[str, Any], workdir: str | Path = ".") -> dict[str, Any]:
    """Validate ``config`` (in place, filling defaults) and return it.

    Raises ConfigError for schema violations, references to unknown models or
    datasets, PO runs without their SFT run, and input files that do not exist.
    """
    from .training.registry import ALGORITHMS  # late: keeps `import valuedrift.config` light

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.message))
    if errors:
        raise ConfigError("\n".join(_describe(e) for e in errors))
    _fill_defaults(config, schema())

    workdir = Path(workdir)
    problems: list[str] = []

    def need_file(key: str, value: str | None) -> None:
        if not value:
            problems.append(f"config key '{key}' is required here")
        elif not (workdir / value).exists():
            problems.append(f"config key '{key}': file not found: {value}")

    for name, model in config["models"].items():
        if name == "reward":
            problems.append("config key 'models.reward': the name 'reward' is reserved (results/models/reward/ holds reward models)")
        src = model["source"]
        if src == "local":
            need_file(f"models.{name}.path", model.get("path"))
        elif src == "hub" and not model.get("name"):
            problems.append(f"config key 'models.{name}.name' is required for source 'hub'")
        elif src == "gguf-package" and not (model.get("package") and model.get("file")):
            problems.append(f"config keys 'models.{name}.package' and '.file' are required for source 'gguf-package'")
    for name, ds in config["datasets"].items():
        if ds["source"] in ("jsonl", "parquet"):
            need_file(f"datasets.{name}.path", ds.get("path"))
    if config["questions"]["source"] == "file":
        need_file("questions.path", config["questions"].get("path"))
    else:
        _check_vprism(config, need_file, problems)

    sft_runs = {}
    for i, run in enumerate(config["runs"]):
        key = f"runs[{i}]"
        if run["base"] not in config["models"]:
            problems.append(f"config key '{key}.base': unknown model {run['base']!r}; models: {', '.join(config['models'])}")
        _check_dataset(config, f"{key}.sft", run["sft"], "sft", problems)
        if "algorithm" in run:
            if run["algorithm"] not in ALGORITHMS:
                problems.append(f"config key '{key}.algorithm': unknown algorithm {run['algorithm']!r}; known: {', '.join(ALGORITHMS)}")
            if "preference" not in run:
                problems.append(f"config key '{key}.preference' is required for a preference-optimization run")
            else:
                _check_dataset(config, f"{key}.preference", run["preference"], "preference", problems)
        elif "preference" in run:
            problems.append(f"config key '{key}.preference' given without '{key}.algorithm'")
        else:
            ident = (run["base"], run["sft"])
            if ident in sft_runs:
                problems.append(f"config key '{key}': duplicate SFT run of {run['base']} on {run['sft']} (also runs[{sft_runs[ident]}])")
            sft_runs[ident] = i
    for i, run in enumerate(config["runs"]):
        if "algorithm" in run and (run["base"], run["sft"]) not in sft_runs:
            problems.append(f"config key 'runs[{i}]': PO run needs an SFT run with base {run['base']!r} and sft {run['sft']!r} in 'runs'")

    _check_resources(config, workdir, problems)
    _check_lora(config, problems)

    judge = config["judge"]
    if judge["backend"] in ("local", "vllm") and not judge.get("model"):
        problems.append("config key 'judge.model' is required (a key of 'models' or a model folder)")
    if judge["backend"] == "openai" and not judge.get("base_url"):
        problems.append("config key 'judge.base_url' is required for the openai judge")
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def _check_vprism(config, need_file, problems) -> None:
    """The V-PRISM builder's block: prompt files exist, every LLM stage has a model."""
    vp = config["questions"]["vprism"]
    if config["questions"].get("per_category") is not None:
        problems.append("config key 'questions.per_category' is for source 'file'; "
                        "the builder samples questions.vprism.sample.per_category")
    if vp["prompts"]["source"] == "file":
        paths = vp["prompts"].get("path")
        for i, p in enumerate([paths] if isinstance(paths, str) else paths or [None]):
            need_file("questions.vprism.prompts.path" + (f"[{i}]" if isinstance(paths, list) else ""), p)
    stages = ["rephrase", "name", "filter"] + (["select"] if vp["select"]["method"] == "llm" else [])
    for stage in stages:
        llm = {**vp["llm"], **vp[stage]["llm"]}
        if not (llm.get("model") or llm.get("model_dir")):
            problems.append(f"config key 'questions.vprism.llm.model' (or questions.vprism.{stage}.llm.model) "
                            f"is required: the {stage} stage calls an LLM")


def _check_resources(config, workdir, problems) -> None:
    """Cluster requests name configured models; the launcher's accelerate config exists."""
    from .launch import BUILTIN_LAUNCH_CONFIGS

    res = config["resources"]
    for model in res.get("by_model") or {}:
        if model not in config["models"]:
            problems.append(f"config key 'resources.by_model.{model}': unknown model {model!r}; "
                            f"models: {', '.join(config['models'])}")
    launch_config = (res.get("launcher") or {}).get("config", "fsdp")
    if launch_config not in BUILTIN_LAUNCH_CONFIGS and not (Path(workdir) / launch_config).is_file():
        problems.append(f"config key 'resources.launcher.config': {launch_config!r} is neither a built-in "
                        f"accelerate config ({', '.join(BUILTIN_LAUNCH_CONFIGS)}) nor a file")


def _check_lora(config, problems) -> None:
    """LoRA needs peft, which is an extra (valuedrift[lora])."""
    import importlib.util

    for algorithm, settings in config["training"].items():
        if isinstance(settings, dict) and settings.get("lora") and importlib.util.find_spec("peft") is None:
            problems.append(f"config key 'training.{algorithm}.lora': LoRA needs peft, which is not "
                            f"installed (pip install 'valuedrift[lora]')")


def _check_dataset(config, key, name, kind, problems) -> None:
    ds = config["datasets"].get(name)
    if ds is None:
        problems.append(f"config key '{key}': unknown dataset {name!r}; datasets: {', '.join(config['datasets'])}")
    elif ds["kind"] != kind:
        problems.append(f"config key '{key}': dataset {name!r} is a {ds['kind']} dataset, a {kind} dataset is needed")


def runs(config: dict[str, Any]) -> list[Run]:
    """The training phases of a validated config, PO runs linked to their SFT run's end."""
    sft_end = {(r["base"], r["sft"]): r["max_steps"] for r in config["runs"] if "algorithm" not in r}
    return [
        Run(base=r["base"], sft=r["sft"], every=r["every"], max_steps=r["max_steps"],
            algorithm=r.get("algorithm"), preference=r.get("preference"),
            sft_max_steps=None if "algorithm" not in r else sft_end.get((r["base"], r["sft"])))
        for r in config["runs"]
    ]


def run_key(wildcards: dict[str, str]) -> str:
    """The model path of the run a rule's wildcards belong to. A reward model
    (base, sft, preference; no algorithm) belongs to the SFT run it starts from."""
    if "run" in wildcards:
        return wildcards["run"]
    key = f"{wildcards['base']}/sft-{wildcards['sft']}"
    if "algorithm" in wildcards:
        key += f"/{wildcards['algorithm']}-{wildcards['preference']}"
    return key


# run_for is called by input functions once per job (8,868 times when the paper config
# plans): index the runs once per config instead of rebuilding them on every call
# (bench/orchestration.py --profile-planning). Keyed by the runs list itself, held here.
_RUN_INDEX: dict[int, tuple[list, int, dict[str, Run]]] = {}


def _runs_by_path(config: dict[str, Any]) -> dict[str, Run]:
    spec = config["runs"]
    cached = _RUN_INDEX.get(id(spec))
    if cached is None or cached[0] is not spec or cached[1] != len(spec):
        cached = (spec, len(spec), {run.model_path: run for run in runs(config)})
        _RUN_INDEX[id(spec)] = cached
    return cached[2]


def run_for(config: dict[str, Any], wildcards: dict[str, str]) -> Run:
    key = run_key(wildcards)
    by_path = _runs_by_path(config)
    if key not in by_path:
        raise ConfigError(f"{key} is not a run of this config; runs: {', '.join(by_path)}")
    return by_path[key]


def load(path: str | Path, workdir: str | Path = ".") -> dict[str, Any]:
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    try:
        return validate(config, workdir)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
