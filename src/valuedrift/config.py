"""Load and check a study config before any job runs.

Errors name the offending key (``runs[2].every``) and say what is wrong, so a typo
fails in a second instead of after an hour of training.
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml


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


def did_you_mean(name: Any, options) -> str:
    """' (did you mean 'x'?)' for the closest of ``options``, or ''."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_JSON_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "object": "a mapping (key: value)", "array": "a list", "null": "null"}


def _json_type(value: Any) -> str:
    for name, t in (("boolean", bool), ("integer", int), ("number", float), ("string", str), ("array", list),
                    ("object", dict)):
        if isinstance(value, t):
            return name
    return "null" if value is None else type(value).__name__


def _describe(error: jsonschema.ValidationError) -> str:
    """One schema violation as a sentence naming the key and suggesting the fix."""
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"in '{key}'" if error.absolute_path else "at the top level"
        close = {u: difflib.get_close_matches(str(u), allowed, n=1, cutoff=0.6) for u in unknown}
        guesses = [f"{c[0]!r}" + (f" for {u!r}" if len(unknown) > 1 else "") for u, c in close.items() if c]
        guess = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
        return (f"unknown config key {', '.join(repr(u) for u in unknown)} {where}{guess}; "
                f"allowed keys: {', '.join(allowed)}")
    if error.validator == "required":
        return f"config key '{key}' is missing a required entry: {error.message}"
    if error.validator == "enum":
        options = ", ".join(repr(o) for o in error.validator_value)
        return (f"config key '{key}': {error.instance!r} is not a valid choice{did_you_mean(error.instance, error.validator_value)}; "
                f"choose one of {options}")
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        want = " or ".join(_JSON_TYPES.get(w, w) for w in wanted)
        hint = ""
        if isinstance(error.instance, str) and any(w in ("integer", "number") for w in wanted):
            hint = "; write the number without quotes"
        return (f"config key '{key}': {error.message} (expected {want}, got "
                f"{_JSON_TYPES.get(_json_type(error.instance), 'a value')}{hint})")
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
        if name == "external":
            problems.append("config key 'models.external': the name 'external' is reserved (results/models/external/ holds imported trajectories)")
    _check_models(config, workdir, problems)
    for name, ds in config["datasets"].items():
        if ds["source"] in ("jsonl", "parquet"):
            need_file(f"datasets.{name}.path", ds.get("path"))
    if config["questions"]["source"] == "file":
        need_file("questions.path", config["questions"].get("path"))
    else:
        _check_vprism(config, need_file, problems)

    if not config["runs"] and not config["trajectories"]:
        problems.append("config key 'runs': a study needs at least one run (or a trajectory in 'trajectories')")
    for name, spec in config["trajectories"].items():
        for i, c in enumerate(spec.get("checkpoints") or []):
            if c.get("adapter") and c.get("base") is None:
                problems.append(f"config key 'trajectories.{name}.checkpoints[{i}].base' is required for an adapter")
        uses_adapters = any(c.get("adapter") for c in spec.get("checkpoints") or []) or \
            (spec.get("discover") or {}).get("adapter_base")
        if uses_adapters and importlib.util.find_spec("peft") is None:
            problems.append(f"config key 'trajectories.{name}': LoRA adapters need peft, which is not installed "
                            f"(pip install 'valuedrift[lora]')")
    sft_runs = {}
    for i, run in enumerate(config["runs"]):
        key = f"runs[{i}]"
        if run["base"] not in config["models"]:
            problems.append(f"config key '{key}.base': unknown model {run['base']!r}{did_you_mean(run['base'], config['models'])}; models: {', '.join(config['models'])}")
        _check_dataset(config, f"{key}.sft", run["sft"], "sft", problems)
        if "algorithm" in run:
            if run["algorithm"] not in ALGORITHMS:
                problems.append(f"config key '{key}.algorithm': unknown algorithm {run['algorithm']!r}{did_you_mean(run['algorithm'], ALGORITHMS)}; known: {', '.join(ALGORITHMS)}")
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

    _check_seeds(config, problems)
    _check_overrides_and_sweeps(config, problems)
    _check_resources(config, workdir, problems)
    _check_lora(config, problems)
    _check_controlled(config, problems)

    judge = config["judge"]
    if judge["backend"] in ("local", "vllm") and not judge.get("model"):
        problems.append("config key 'judge.model' is required (a key of 'models' or a model folder)")
    if judge["backend"] == "openai" and not judge.get("base_url"):
        problems.append("config key 'judge.base_url' is required for the openai judge")
    _check_names(config, problems)
    _check_checkpoint_intervals(config, problems)
    _check_local_model_folders(config, workdir, problems)
    _check_judge_settings(config, workdir, problems)
    from .judge_specs import check_config as check_judges

    check_judges(config, need_file, problems)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


# Keys each model source needs (besides `source`).
MODEL_SOURCE_KEYS = {"hub": ("name",), "local": ("path",), "gguf": ("path",), "gguf-package": ("package", "file")}


def chat_format_uses(config) -> dict[str, str]:
    """Models that will be used in chat format, with why: trained (SFT formats its data with
    the chat template; its checkpoints are prompted with it), prompt_format chat, or a V-PRISM
    LLM stage (which prompts through the chat template)."""
    uses: dict[str, str] = {}
    for name, model in config["models"].items():
        if model.get("prompt_format") == "chat":
            uses[name] = f"models.{name}.prompt_format is chat"
    for i, run in enumerate(config["runs"]):
        if run["base"] in config["models"] and "algorithm" not in run:
            uses.setdefault(run["base"], f"it is trained (runs[{i}])")
    if config["questions"].get("source") == "vprism":
        from .vprism.ask import llm_settings

        vp = config["questions"].get("vprism") or {}
        for stage in ("rephrase", "name", "filter", "select"):
            model = llm_settings(vp, stage).get("model")
            if model in config["models"]:
                uses.setdefault(model, f"the V-PRISM {stage} stage prompts it")
    return uses


def _check_models(config, workdir, problems) -> None:
    """Each model's weights are where its config says; a model used in chat format has a chat
    template (its own, read cheaply from its files, or models.<name>.chat_template). A hub model
    not in the local cache cannot be inspected here: its import job checks it, before training."""
    from . import models as vd_models

    chat_uses = chat_format_uses(config)
    for name, model in config["models"].items():
        key = f"models.{name}"
        missing = [k for k in MODEL_SOURCE_KEYS[model["source"]] if not model.get(k)]
        if missing:
            problems.append(f"config key{'s' if len(missing) > 1 else ''} {' and '.join(repr(f'{key}.{k}') for k in missing)} "
                            f"{'are' if len(missing) > 1 else 'is'} required for source {model['source']!r}")
            continue
        try:
            weights = vd_models.resolve_weights(name, model, workdir)
            if model.get("chat_template"):
                vd_models.chat_template_text(model["chat_template"], workdir, f"{key}.chat_template")
                continue
            if name in chat_uses and vd_models.has_chat_template(weights) is False:
                problems.append(f"config key '{key}.chat_template' is required: model {name!r} has no chat template "
                                f"({weights.location}) and {chat_uses[name]}; set it to a Jinja template file or "
                                f"one of the built-in templates: {', '.join(vd_models.BUILTIN_TEMPLATES)}")
        except vd_models.WeightsNotFound as err:
            folder = Path(workdir) / model["path"] if model["source"] == "local" and model.get("path") else None
            if folder is not None and folder.is_dir() and not any(folder.iterdir()):
                continue  # an empty folder (e.g. still being copied) is refused by its import job, the first job
            problems.append(str(err))
        except (OSError, ValueError) as err:  # an unreadable header: the file is not what the config says
            problems.append(f"config key '{key}': cannot read the model's files: {err}")


def _check_vprism(config, need_file, problems) -> None:
    """The V-PRISM builder's block: prompt files exist, every LLM stage has a model."""
    from .vprism.ask import llm_settings

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
        llm = llm_settings(vp, stage)
        if not (llm.get("model") or llm.get("model_dir")):
            problems.append(f"config key 'questions.vprism.llm.model' (or questions.vprism.{stage}.llm.model) "
                            f"is required: the {stage} stage calls an LLM")


def _check_seeds(config, problems) -> None:
    """A PO run lists seeds only when its SFT run has none (a seeded SFT run's PO runs follow
    its seeds), and a seeded run's training seed is its seed, not an override."""
    seeded_sft = {(r["base"], r["sft"]): f"runs[{i}].seeds" if r.get("seeds") else "seeds"
                  for i, r in enumerate(config["runs"])
                  if "algorithm" not in r and (r.get("seeds") or config.get("seeds"))}
    for i, run in enumerate(config["runs"]):
        if "algorithm" in run and run.get("seeds") and (run["base"], run["sft"]) in seeded_sft:
            problems.append(f"config key 'runs[{i}].seeds': its SFT run ({run['base']} on {run['sft']}) is already "
                            f"repeated over seeds ({seeded_sft[(run['base'], run['sft'])]}), and each seed's PO run "
                            f"starts from that seed's SFT model; drop runs[{i}].seeds")
        seeded = run.get("seeds") or (run["base"], run["sft"]) in seeded_sft
        if seeded and "seed" in (run.get("overrides") or {}):
            problems.append(f"config key 'runs[{i}].overrides.seed': the run is repeated over seeds, each training "
                            f"with its own seed; drop the override")


def _check_overrides_and_sweeps(config, problems) -> None:
    """Per-run overrides and sweeps name real settings of their algorithm, and no two runs
    (sweep values included) share a path."""
    from .study import runs_of, run_collisions

    trainer_keys = {name: set(block.get("properties", {}))
                    for name, block in schema()["properties"]["training"]["properties"].items() if isinstance(block, dict)}

    def check_key(where: str, algorithm: str | None, key: str) -> None:
        if algorithm is None:
            problems.append(f"config key '{where}': overrides are for PO runs (an SFT run's checkpoints start "
                            f"every PO run of it); set SFT hyperparameters in training.sft")
        elif algorithm in trainer_keys and key not in trainer_keys[algorithm]:
            problems.append(f"config key '{where}': {key!r} is not a setting of training.{algorithm}; "
                            f"settings: {', '.join(sorted(trainer_keys[algorithm]))}")

    for i, run in enumerate(config["runs"]):
        for key in run.get("overrides") or {}:
            check_key(f"runs[{i}].overrides.{key}", run.get("algorithm"), key)
    paths = {}
    for i, run in enumerate(runs_of({**config, "sweeps": []})):
        paths.setdefault(run.model_path, run)
    before = len(problems)
    for j, sweep in enumerate(config.get("sweeps") or []):
        of = paths.get(sweep["of"])
        if of is None:
            problems.append(f"config key 'sweeps[{j}].of': {sweep['of']!r} is not a run; runs: {', '.join(paths)}")
        else:
            check_key(f"sweeps[{j}].key", of.algorithm, sweep["key"])
    if len(problems) > before:
        return
    runs = runs_of(config)
    for first, second, path in run_collisions(runs):
        problems.append(f"config keys '{runs[first].origin}' and '{runs[second].origin}' both write the run {path}: "
                        f"give one other settings or drop it")


def _check_resources(config, workdir, problems) -> None:
    """Cluster requests name configured models; the launcher's accelerate config exists."""
    from .launch import BUILTIN_LAUNCH_CONFIGS

    res = config["resources"]
    for model in res.get("by_model") or {}:
        if model not in config["models"]:
            problems.append(f"config key 'resources.by_model.{model}': unknown model {model!r}{did_you_mean(model, config['models'])}; "
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


def _check_controlled(config, problems) -> None:
    """The synthetic-data and dataset-stance blocks."""
    from . import controlled

    controlled.check(config, problems)


def _check_dataset(config, key, name, kind, problems) -> None:
    ds = config["datasets"].get(name)
    if ds is None:
        problems.append(f"config key '{key}': unknown dataset {name!r}{did_you_mean(name, config['datasets'])}; datasets: {', '.join(config['datasets'])}")
    elif ds["kind"] != kind:
        problems.append(f"config key '{key}': dataset {name!r} is a {ds['kind']} dataset, a {kind} dataset is needed")


def load(path: str | Path, workdir: str | Path = ".") -> dict[str, Any]:
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    try:
        return validate(config, workdir)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


# -- further bad inputs caught before any job runs -----------------------------

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a model/dataset name is a path part


def _check_names(config, problems) -> None:
    for section in ("models", "datasets"):
        for name in config[section]:
            if not SAFE_NAME.match(str(name)):
                problems.append(f"config key '{section}.{name}': a name becomes part of result paths; use letters, "
                                f"digits, '.', '_' and '-' only (no '/', spaces, or a leading '.')")


def _check_checkpoint_intervals(config, problems) -> None:
    for i, run in enumerate(config["runs"]):
        if run["every"] > run["max_steps"]:
            problems.append(f"config key 'runs[{i}].every': the checkpoint interval ({run['every']}) is larger than "
                            f"runs[{i}].max_steps ({run['max_steps']}), so no checkpoint falls inside the run; "
                            f"set every <= max_steps")


def _check_local_model_folders(config, workdir, problems) -> None:
    from .integrity import ModelFolderError, check_model_folder

    for name, model in config["models"].items():
        if model["source"] != "local" or not model.get("path"):
            continue
        folder = Path(workdir) / model["path"]
        # an empty folder is refused by the import job (the first job, seconds); one with
        # files must be a whole safetensors model already here
        if (folder.is_file() and folder.suffix != ".gguf") or (folder.is_dir() and any(folder.iterdir())):  # a .gguf: models.resolve_weights
            try:
                check_model_folder(folder, f"model folder of models.{name}")
            except ModelFolderError as err:
                problems.append(f"config key 'models.{name}.path': {err}")


def _check_judge_settings(config, workdir, problems) -> None:
    from .llm import endpoint_problem

    judge = config["judge"]
    if judge["backend"] == "openai":
        if not judge.get("model"):
            problems.append("config key 'judge.model' is required for the openai judge: the model name the server "
                            "serves (GET <judge.base_url>/models lists them)")
        if judge.get("base_url"):
            problem = endpoint_problem(judge["base_url"], allow_http=judge.get("allow_http", False))
            if problem:
                problems.append(f"config key 'judge.base_url': {problem}")
    elif judge.get("model") and judge["model"] not in config["models"] and not (Path(workdir) / judge["model"]).exists():
        problems.append(f"config key 'judge.model': {judge['model']!r} is neither a key of 'models'"
                        f"{did_you_mean(judge['model'], config['models'])} nor an existing model folder")

