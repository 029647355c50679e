# Constants and input functions of workflow/rules/judge_eval.smk.
from valuedrift import judge_specs

JUDGES = judge_specs.panel(config)
PANEL_JUDGES = [name for name in JUDGES if name != paths.PRIMARY_JUDGE]
CLASSIFIER_JUDGES = [name for name, spec in JUDGES.items() if spec["backend"] == "classifier"]
JUDGE_VALIDATION = judge_specs.validation_settings(config)
NO_NAME = "(?!)"  # a wildcard constraint nothing matches


def study_model_keys():
    """Every model whose responses the study judges: each run's start model and checkpoints."""
    return sorted({run.sampled_at(step) for run in RUNS for step in [0, *run.steps]})


def judge_stance_files(name):
    return [paths.judge_stances_file(name, key) for key in study_model_keys()]


def classifier_inputs(wildcards):
    spec = JUDGES[wildcards.judge]
    train = spec["train"]
    embed = {k: v for k, v in judge_specs.judge_inputs(config, wildcards.judge).items() if k == "embed_model"}
    if train["source"] == "authored":
        return {"train": train["path"], **embed}
    teacher = judge_specs.with_defaults(train["teacher"])
    return {**embed, "generations": [paths.generations_file(k) for k in study_model_keys()],
            "questions": paths.questions_file(),
            **{k: v for k, v in judge_specs.judge_inputs(config, wildcards.judge, teacher).items() if k == "judge_model"}}


NO_MODEL_MEM_MB = 4000  # a judge job that loads no model (profiles/slurm's default-resources mem_mb)


def judge_resources(names):
    """The `infer` resources of the jobs of judges `names` (a rule's {judge}) for the model each loads,
    as the judge rule's (judge_specs.resource_model); none if no judge of them loads one. A job of
    one that does not (an API judge, a sentence embedder) asks no GPU, partition or CPUs per GPU, and
    NO_MODEL_MEM_MB (Snakemake takes no None for a sized resource)."""
    if not any(judge_specs.loads_model(JUDGES[n]) for n in names):
        return {}
    loads = lambda wc: judge_specs.loads_model(JUDGES[wc.judge])
    asks = job_resources("infer", lambda wc: judge_specs.resource_model(config, JUDGES[wc.judge]))

    def only_loading(key, ask):
        if key == "mem_mb":
            return lambda wildcards: ask(wildcards) if loads(wildcards) else NO_MODEL_MEM_MB
        if key == "disk_mb":
            return ask
        if key == "runtime":
            return lambda wildcards, attempt: ask(wildcards, attempt) if loads(wildcards) else None
        return lambda wildcards: ask(wildcards) if loads(wildcards) else None

    return {key: only_loading(key, ask) for key, ask in asks.items()}


def panel_judge_inputs(wildcards):
    return {"generations": paths.generations_file(wildcards.model), "questions": paths.questions_file(),
            **judge_specs.judge_inputs(config, wildcards.judge)}


def validation_inputs(wildcards):
    """The judge's model or classifier; not the calibration choice, which validation makes."""
    inputs = judge_specs.judge_inputs(config, wildcards.judge)
    return {"validation": JUDGE_VALIDATION["path"], **{k: v for k, v in inputs.items() if k != "calibration"}}
