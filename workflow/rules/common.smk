# Config validation, wildcard constraints and the input functions shared by all rules.
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from valuedrift import config as vd_config
from valuedrift import paths
from valuedrift.training import registry

# Our own check first: it names the offending key and checks files and cross-references
# before any job is scheduled; snakemake's validate then fills the schema defaults.
try:
    vd_config.validate(config, workdir=".")
except vd_config.ConfigError as err:
    raise WorkflowError(f"invalid config:\n{err}")
# workflow/schemas links to the package copy; read it from the installed package so the
# workflow also runs from a copied folder.
validate(config, schema=str(vd_config.schema_path()))

RUNS = vd_config.runs(config)
RUNS_BY_PATH = {run.model_path: run for run in RUNS}


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


wildcard_constraints:
    base=_alternatives(config["models"]),
    sft=_alternatives(config["datasets"]),
    preference=_alternatives(config["datasets"]),
    dataset=_alternatives(config["datasets"]),
    algorithm=_alternatives(registry.ALGORITHMS),
    step=r"\d+",
    run=_alternatives(RUNS_BY_PATH) or "^$",
    model=r"[^/]+/(base|sft-[^/]+(/[^/]+)?/checkpoint-\d+)",


def run_for(wildcards):
    """The configured run a training/drift target belongs to (clear error if none)."""
    if hasattr(wildcards, "run"):
        key = wildcards.run
    elif hasattr(wildcards, "preference") and not hasattr(wildcards, "algorithm"):
        # the reward model of (base, sft, preference) belongs to the SFT run it starts from
        key = f"{wildcards.base}/sft-{wildcards.sft}"
    elif hasattr(wildcards, "algorithm"):
        key = f"{wildcards.base}/sft-{wildcards.sft}/{wildcards.algorithm}-{wildcards.preference}"
    else:
        key = f"{wildcards.base}/sft-{wildcards.sft}"
    if key not in RUNS_BY_PATH:
        raise WorkflowError(f"{key} is not a run of this config; runs: {', '.join(RUNS_BY_PATH)}")
    return RUNS_BY_PATH[key]


def segment_inputs(wildcards):
    """A segment resumes the previous checkpoint of its run, or starts from the run's start model."""
    run = run_for(wildcards)
    step = int(wildcards.step)
    previous = run.previous_step(step)
    inputs = {
        "start": paths.model_dir(run.start_model),
        "data": paths.dataset_file(run.preference or run.sft),
    }
    if previous:
        inputs["previous"] = paths.model_dir(run.model_at(previous))
    if not run.is_sft and registry.get(run.algorithm).needs_reward_model:
        inputs["reward_model"] = paths.reward_model_dir(run.base, run.sft, run.preference)
    return inputs


def training_settings(algorithm):
    return dict(config["training"].get(algorithm, {}))


def prompt_format(model_key):
    """Chat template after training; the model's configured format for a base model."""
    if model_key.endswith("/base"):
        return config["models"][model_key.split("/")[0]]["prompt_format"]
    return "chat"


def judge_model_dir():
    name = config["judge"].get("model", "")
    return paths.model_dir(paths.base_model_key(name)) if name in config["models"] else name


def all_drift_outputs():
    out = []
    for run in RUNS:
        out += [paths.drift_table(run.model_path), paths.trajectory_plot(run.model_path, "png"),
                paths.trajectory_plot(run.model_path, "html")]
    return out
