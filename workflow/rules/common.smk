# Config validation, the study model and the input functions shared by all rules.
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from valuedrift import cluster as vd_cluster
from valuedrift import config as vd_config
from valuedrift import launch as vd_launch
from valuedrift import models as vd_models
from valuedrift import paths
from valuedrift.study import Study, canonical, result_settings
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
paths.use_results_dir(config["results_dir"])
# Settings that are valid but silently do nothing or mislead (valuedrift.preflight); a dry run
# also prints the study's disk and time estimate (`make plan` prints both without snakemake).
# Only in the process that plans: every job parses this file again (on SLURM in
# `--mode remote`, a local `run:` job in `--mode subprocess`), and must not reread dataset
# sizes and model headers or repeat the warnings into each job log.
if workflow.is_main_process:
    import sys as _sys

    from valuedrift import plan as vd_plan

    # the dry-run executor is chosen after the Snakefile is parsed, hence the command line
    _dryrun = any(a in ("--dry-run", "--dryrun", "--just-print") or (a[:1] == "-" and a[1:2] != "-" and "n" in a)
                  for a in _sys.argv[1:])
    vd_plan.print_at_start(config, workdir=".", dryrun=_dryrun)
STUDY = Study(config)
RUNS = STUDY.runs


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def run_for(wildcards):
    """The configured run a training/drift target belongs to (clear error if none)."""
    try:
        return STUDY.run_for(dict(wildcards.items()))
    except vd_config.ConfigError as err:
        raise WorkflowError(str(err))


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
        inputs["reward_model"] = run.reward_model
    return inputs


def training_settings(run, algorithm=None):
    """A run's trainer settings that change a result (rerun trigger), its overrides included;
    per-device batch size and the like are not."""
    return result_settings(STUDY.training_settings(run, algorithm), "training")


def sweep_lines(wildcards):
    """(value label, run) per line of a sweep's figure."""
    return STUDY.sweep(wildcards.base, wildcards.sft, wildcards.sweep).lines(config["training"])


def stage_settings(stage):
    """A stage's result-changing config keys, canonical: the only params its rule compares."""
    return result_settings(config[stage], stage)


def sampling_settings(sample_key):
    """The generation settings of one model's answers: a seeded run's are sampled with its seed."""
    seed = STUDY.sampling_seed(sample_key)
    if seed is None:  # a series' sampling seeds (EXTERNAL_SAMPLING_SEEDS: workflow/rules/trajectories.smk)
        seed = EXTERNAL_SAMPLING_SEEDS.get(sample_key)
    settings = stage_settings("generation")
    return settings if seed is None else {**settings, "seed": seed}


def chat_template_file(base):
    """models.<base>.chat_template when it is a file rather than a built-in template name."""
    value = config["models"][base].get("chat_template")
    return [] if not value or value in vd_models.BUILTIN_TEMPLATES else [value]


def prompt_format(model_key):
    """Chat template after training; the model's configured format for a base model."""
    model_key = paths.sampled_model(model_key)
    if paths.is_external_model(model_key):  # IMPORTED: workflow/rules/trajectories.smk
        return IMPORTED[paths.external_trajectory_of(model_key)].prompt_format
    if paths.is_base_model(model_key):
        return config["models"][paths.base_of(model_key)]["prompt_format"]
    return "chat"


def judge_model_dir():
    name = config["judge"].get("model", "")
    return paths.model_dir(paths.base_model_key(name)) if name in config["models"] else name


def trajectory_stances(wildcards):
    """Stance tables of every checkpoint of a run, step 0 being its start model."""
    run = run_for(wildcards)
    return {f"step_{s}": paths.stances_file(run.sampled_at(s)) for s in [0, *run.steps]}


def drift_inputs(wildcards):
    """The trajectory, plus the start and end stances the magnitude's paired bootstrap resamples."""
    run = run_for(wildcards)
    return {"trajectory": paths.trajectory_file(run.model_path), "questions": paths.questions_file(),
            "start": paths.stances_file(run.sampled_at(0)), "end": paths.stances_file(run.sampled_at(run.steps[-1]))}


# Cluster execution (profiles/slurm, docs/cluster.md). What a job asks SLURM for comes
# from config `resources` per rule family and base model (valuedrift.launch.request);
# resources are not rerun triggers, so tuning them never rebuilds a result.


onstart:
    # Before the first sbatch: a cluster whose job states the SLURM plugin cannot poll (no
    # accounting, sacct failing) stops here, naming the flag/profile key to set. Hooks run
    # only in the planning process (jobs get --no-hooks) and never in a dry run.
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        try:
            vd_cluster.check_status_polling(workflow.executor_settings)
        except vd_cluster.ClusterError as err:
            raise WorkflowError(str(err))


def job_resources(family, model):
    """The `resources:` a `family` (train or infer) asks for; `model`: base model name or fn(wildcards)."""
    return vd_launch.rule_resources(config["resources"], family, model)


def model_base(wildcards):
    """The base model of a model key ({base}/base, {base}/sft-.../checkpoint-N)."""
    return paths.base_of(wildcards.model)


def conda_env(name):
    """envs/<name>.yaml (for --sdm conda): this workflow's, else that of the checkout valuedrift
    is imported from (a copied workflow, as in the tests), else none."""
    for root in (Path(workflow.basedir), Path(vd_launch.__file__).resolve().parents[2]):
        if (root / "envs" / f"{name}.yaml").is_file():
            return str(root / "envs" / f"{name}.yaml")
    return None


def training_group(wildcards):
    """All segments of a run in one cluster job (resources.group_segments), else one job each."""
    if not config["resources"]["group_segments"]:
        return None
    run_name = "_".join(Path(run_for(wildcards).model_path).parts)
    return f"train_{run_name}"


VPRISM_LLM_STAGES = ("rephrase", "name", "filter", "select")


def vprism_llm_is_api(stage):
    """Whether a V-PRISM stage calls an API, or no LLM at all (select by embedding
    centroids): either way a local rule."""
    from valuedrift.vprism import workflow as vprism_workflow

    return not vprism_workflow.uses_local_model(config, stage)


def vprism_llm_resources(stage):
    """`resources:` of a V-PRISM LLM stage: a GPU (infer) job for a local model; an API stage is local."""
    from valuedrift.vprism import workflow as vprism_workflow

    if vprism_llm_is_api(stage):
        return {}
    model = vprism_workflow.llm_settings(config, stage, resolve_models=False).get("model")
    return job_resources("infer", model if model in config["models"] else None)


# Light rules run where snakemake runs (the login node), never as batch jobs: tables,
# plots, the report, and the rules that download from the hub (compute nodes are often
# offline: the V-PRISM prompts and embedder too). API calls (judge backend openai, V-PRISM
# stages on an API) need the network, not a GPU.
workflow.localrules(
    "import_base_model", "prepare_dataset", "trajectory", "drift_table", "trajectory_plot", "report",
    "training_log", "study_drift_table", "paper_tables", "sft_comparison_plot", "po_comparison_plot",
    "drift_heatmap", "training_plot", "sweep_plot",
    *(["questions"] if config["questions"]["source"] == "file" else
      ["vprism_load", "vprism_embed", "vprism_reduce", "vprism_cluster", "vprism_sample", "vprism_report",
       *[f"vprism_{stage}" for stage in VPRISM_LLM_STAGES if vprism_llm_is_api(stage)]]),
    *(["judge"] if config["judge"]["backend"] == "openai" else []),
)
