"""The judges a config names: the primary ``judge`` and the panel ``judges``.

The primary judge's stances feed the drift tables (at ``paths.stances_file``); each
panel judge (``judges: {name: spec}``, the same keys as ``judge``) scores the same
generations into ``results/judges/{name}/stances/``, so adding one reruns nothing of
the primary. The judge-evaluation keys (``calibration``, ``min_option_mass``, ``embedder``,
``train``) have no schema default, so configs that do not use them get no new keys in their
judge jobs' parameters; their defaults live here. The params themselves changed once, though
(``result_settings``): an LLM judge's now hold the prompt's digest (``prompt_sha256``) and no
longer the keys its backend never reads (``max_tokens``/``top_logprobs`` of a local judge), a
distilled classifier's its teacher's result settings, and ``dataset_stance``'s the judge's result
settings, so a study made before rejudges once after upgrading, and never again for an
execution setting.
"""

from __future__ import annotations

import copy
from typing import Any

from . import paths
from .paths import PRIMARY_JUDGE, base_model_key, judge_classifier_file, judge_validation_metrics, model_dir

CALIBRATIONS = ("none", "contextual", "auto")
DEFAULT_EMBEDDER = {"name": "all-MiniLM-L6-v2"}
DEFAULT_TRAIN = {"source": "authored", "path": "data/judge/train.jsonl", "input": "auto", "C": [0.25, 1.0, 4.0],
                 "folds": 5, "seed": 0, "sample": 200, "holdout_fraction": 0.25}
DEFAULT_VALIDATION = {"path": "data/judge/validation.jsonl", "min_macro_f1": 0.5, "accept_below_floor": False,
                      "enabled": False}
LLM_BACKENDS = ("local", "vllm", "openai")
# keys of the judge block that a backend never reads: they must not rerun its jobs
UNUSED_KEYS = {"local": frozenset({"top_logprobs", "max_tokens"}), "vllm": frozenset({"top_logprobs", "max_tokens"}),
               "openai": frozenset({"dtype"}),
               "classifier": frozenset({"model", "dtype", "top_logprobs", "max_tokens"})}


def _schema_defaults() -> dict[str, Any]:
    from .config import schema

    props = schema()["properties"]["judge"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """A judge spec with every default filled in (schema defaults and this module's)."""
    out = {**_schema_defaults(), **copy.deepcopy(spec)}
    out.setdefault("calibration", "none")
    out.setdefault("min_option_mass", 0.0)
    if out["backend"] == "classifier":
        out["embedder"] = {**DEFAULT_EMBEDDER, **(out.get("embedder") or {})}
        out["train"] = {**DEFAULT_TRAIN, **(out.get("train") or {})}
    return out


def panel(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every judge by name, the primary first, defaults filled in."""
    return {PRIMARY_JUDGE: with_defaults(config["judge"]),
            **{name: with_defaults(spec) for name, spec in (config.get("judges") or {}).items()}}


def validation_settings(config: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_VALIDATION, **(config.get("judge_validation") or {})}


def prompt_digest(prompt: str = "judge_stance") -> str:
    """A prompt's hash (default Figure 8, the judge prompt; ``dataset_stance`` is Figure 18): an
    LLM judge's rule params hold it, so editing the prompt reruns exactly the jobs that read it."""
    import hashlib

    from .prompts import load

    return hashlib.sha256(load(prompt).encode()).hexdigest()[:16]


def result_settings(spec: dict[str, Any], prompt: str = "judge_stance") -> dict[str, Any]:
    """What of a judge spec changes its stances, canonical: the rule params of its jobs.

    No execution setting (``study.EXECUTION_KEYS['judge']``: a job reads those from the config,
    ``job_spec``), no key its backend never reads (``max_tokens`` is the openai judge's only),
    and for an LLM judge the digest of the prompt it is asked (``prompt``, a name of
    ``valuedrift.prompts``: Figure 8 unless a stage asks another). A distilled classifier's ``train.teacher`` is a
    judge spec of its own, reduced the same way (its digest included: editing the prompt
    retrains the classifier); an authored classifier never reads a teacher, so has none."""
    from .study import result_settings as block_result_settings

    backend = spec.get("backend", "local")
    out = {k: v for k, v in block_result_settings(spec, "judge").items() if k not in UNUSED_KEYS.get(backend, ())}
    if backend in LLM_BACKENDS:
        out["prompt_sha256"] = prompt_digest(prompt)
    if backend == "classifier" and isinstance(out.get("train"), dict):
        train = {k: v for k, v in out["train"].items() if k != "teacher"}
        teacher = out["train"].get("teacher")
        if train.get("source") == "distill" and isinstance(teacher, dict):
            train["teacher"] = result_settings(with_defaults(teacher))
        out["train"] = train
    return out


def training_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """What of a classifier judge's spec changes the trained classifier: the rule params of
    ``judge_classifier`` (``result_settings``' ``embedder`` and ``train``)."""
    return {k: v for k, v in result_settings(spec).items() if k in ("embedder", "train")}


def job_spec(config: dict[str, Any], name: str, params_spec: dict[str, Any]) -> dict[str, Any]:
    """What a job of judge ``name`` runs with: its rule's params (``result_settings``) plus the
    execution settings of its spec in the config (batch size, cache, endpoint, ...), a
    distilled classifier's teacher's included."""
    from .study import execution_settings

    spec = panel(config)[name]
    out = {**params_spec, **execution_settings(spec, "judge")}
    teacher = (spec.get("train") or {}).get("teacher") if spec["backend"] == "classifier" else None
    if isinstance(teacher, dict) and isinstance((out.get("train") or {}).get("teacher"), dict):
        out["train"] = {**out["train"], "teacher": {**out["train"]["teacher"],
                                                    **execution_settings(with_defaults(teacher), "judge")}}
    return out


def eval_files(config: dict[str, Any]) -> list[str]:
    """Every file of the judge evaluation (the ``judge_eval`` target): per judge its validation
    metrics, per-topic metrics, floor check, option mass and (classifier) training report; the
    panel's agreement with more than one judge; the human review sheet, and its agreement when filled."""
    judges = panel(config)
    out = []
    for name, spec in judges.items():
        out += [paths.judge_validation_metrics(name), paths.judge_validation_topics(name),
                paths.judge_floor_check(name), paths.judge_option_mass(name)]
        if spec["backend"] == "classifier":
            out.append(paths.judge_classifier_report(name))
    if len(judges) > 1:
        out += [paths.panel_agreement(), paths.panel_disagreements()]
    out += [paths.human_review_sheet(), paths.human_review_form()]
    if (config.get("human_review") or {}).get("filled"):
        out.append(paths.human_review_agreement())
    return out


def report_files(config: dict[str, Any]) -> list[str]:
    """What the report's "Judge quality" section reads (valuedrift.report.judges_view): the judge
    evaluation's files (``eval_files``); [] unless ``judge_validation.enabled``."""
    return eval_files(config) if validation_settings(config)["enabled"] else []


def resource_model(config: dict[str, Any], spec: dict[str, Any] | None = None) -> str | None:
    """The base model (a key of ``models``) whose ``resources`` the jobs of judge ``spec`` (default the
    primary judge) ask for: a local/vLLM judge's model, a classifier's LLM embedder; None for an API
    judge or a model folder."""
    spec = config["judge"] if spec is None else spec
    name = spec.get("model") if spec.get("backend", "local") in ("local", "vllm") else \
        (spec.get("embedder") or {}).get("llm") if spec.get("backend") == "classifier" else None
    return name if name in config["models"] else None


def loads_model(spec: dict[str, Any]) -> bool:
    """Whether a judge's jobs load a causal LM (a local/vLLM judge, a classifier on an LLM's hidden
    states): they ask for the model's resources and never run on a cluster's head node."""
    return spec.get("backend", "local") in ("local", "vllm") or bool((spec.get("embedder") or {}).get("llm"))


def runs_locally(config: dict[str, Any]) -> bool:
    """Whether the primary judge's jobs load a model on this machine (so ask for memory)."""
    return loads_model(config["judge"])


def describe(spec: dict[str, Any]) -> str:
    """A judge in words, for reports and errors: 'local smollm2-135m, calibrated (auto)'."""
    backend = spec.get("backend", "local")
    if backend == "classifier":
        train = {**DEFAULT_TRAIN, **(spec.get("train") or {})}
        emb = {**DEFAULT_EMBEDDER, **(spec.get("embedder") or {})}
        source = (f"distilled from {describe(train['teacher'])}" if train["source"] == "distill" and train.get("teacher")
                  else f"trained on {train['path']}")
        if emb.get("llm"):
            layer = f"layer {emb['layer']}" if emb.get("layer") is not None else "the middle layer"
            return f"classifier (linear probe on {emb['llm']}'s hidden states, {layer}, {source})"
        return f"classifier (logistic regression on {emb.get('path') or emb['name']} embeddings, {source})"
    text = f"{backend} {spec.get('model', '?')}"
    if spec.get("calibration", "none") != "none":
        text += f", contextual calibration ({spec['calibration']})"
    if spec.get("min_option_mass"):
        text += f", option mass floor {spec['min_option_mass']}"
    return text


def local_model_dir(config: dict[str, Any], spec: dict[str, Any]) -> str:
    name = spec.get("model", "")
    return model_dir(base_model_key(name)) if name in config["models"] else name


def judge_inputs(config: dict[str, Any], name: str, spec: dict[str, Any] | None = None) -> dict[str, str]:
    """What a job running judge ``name`` reads besides the responses: the local model folder,
    the trained classifier, and (calibration auto) the validation metrics holding the choice."""
    spec = with_defaults(spec if spec is not None else panel(config)[name])
    out = {}
    if spec["backend"] == "local":
        out["judge_model"] = local_model_dir(config, spec)
    elif spec["backend"] == "classifier":
        out["judge_model"] = judge_classifier_file(name)
        if spec["embedder"].get("llm"):
            out["embed_model"] = local_model_dir(config, {"model": spec["embedder"]["llm"]})
    if spec["calibration"] == "auto":
        out["calibration"] = judge_validation_metrics(name)
    return out


def judge_kwargs(spec: dict[str, Any], inputs) -> dict[str, Any]:
    """Backend constructor arguments of a judge spec; ``inputs`` (a rule's input, or a dict) holds
    ``judge_model`` (its model folder or classifier file) and ``embed_model`` (an LLM embedder's folder)."""
    from .pipeline import judge_kwargs as llm_judge_kwargs

    spec = with_defaults(spec)
    if spec["backend"] == "classifier":
        return {"classifier": inputs.get("judge_model"), "embed_model": inputs.get("embed_model"),
                "device": spec["embedder"].get("device", "cpu")}
    return llm_judge_kwargs(spec, inputs.get("judge_model"))


def use_calibration(spec: dict[str, Any], metrics_file: str | None) -> bool:
    """Whether the judge's stances are calibrated: contextual always, auto as validation decided."""
    import json
    from pathlib import Path

    calibration = spec.get("calibration", "none")
    if calibration == "auto":
        if not metrics_file:
            raise ValueError("judge calibration 'auto' needs its validation metrics (the judge_validation rule)")
        return bool(json.loads(Path(metrics_file).read_text())["calibration_used"])
    return calibration == "contextual"


def check_config(config: dict[str, Any], need_file, problems: list[str]) -> None:
    """Cross-checks of the judges (called by valuedrift.config.validate)."""
    judges = config.get("judges") or {}
    if PRIMARY_JUDGE in judges:
        problems.append(f"config key 'judges.{PRIMARY_JUDGE}': the name is reserved for the primary judge (`judge`)")
    for key, spec in [("judge", config["judge"]), *((f"judges.{n}", s) for n, s in judges.items())]:
        backend = spec.get("backend", "local")
        if backend in ("local",) and not spec.get("model") and key != "judge":
            problems.append(f"config key '{key}.model' is required (a key of 'models' or a model folder)")
        if backend == "openai" and not spec.get("base_url") and key != "judge":
            problems.append(f"config key '{key}.base_url' is required for the openai judge")
        if backend == "classifier":
            if spec.get("calibration", "none") != "none":
                problems.append(f"config key '{key}.calibration': only LLM judges (local, openai) are calibrated")
            train = {**DEFAULT_TRAIN, **(spec.get("train") or {})}
            if train["source"] == "authored":
                need_file(f"{key}.train.path", train["path"])
            elif not isinstance(train.get("teacher"), dict):
                problems.append(f"config key '{key}.train.teacher' is required for source 'distill' (a judge spec)")
            elif train["teacher"].get("backend", "local") == "classifier":
                problems.append(f"config key '{key}.train.teacher': the teacher must be an LLM judge")
            elif train["teacher"].get("calibration", "none") == "auto":
                problems.append(f"config key '{key}.train.teacher.calibration': a teacher is calibrated "
                                f"'contextual' or 'none' (auto needs a validation run of its own)")
    stance = config.get("dataset_stance") or {}
    if stance.get("datasets") and config["judge"].get("backend", "local") not in LLM_BACKENDS:
        problems.append(f"config key 'judge.backend': {config['judge']['backend']!r} cannot judge the 'dataset_stance' "
                        f"datapoints (they are asked the Figure 18 prompt, which only an LLM judge reads; the "
                        f"stage has no judge of its own): make `judge` a local, vllm or openai judge (a classifier "
                        f"can stay as a panel judge under `judges`), or drop the 'dataset_stance' block")
    validation = validation_settings(config)
    if validation["enabled"]:
        need_file("judge_validation.path", validation["path"])
    accept = validation["accept_below_floor"]
    names = [PRIMARY_JUDGE, *judges]
    if isinstance(accept, list):
        for n in accept:
            if n not in names:
                problems.append(f"config key 'judge_validation.accept_below_floor': unknown judge {n!r}; judges: "
                                f"{', '.join(names)}")
