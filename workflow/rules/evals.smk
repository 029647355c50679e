# Downstream capability evals through lm-evaluation-harness (paper Appendix I, Table 17) and
# the sample tables (Tables 5-8). Evals are optional (config evals.enabled; needs
# valuedrift[evals]): one job per checkpoint and task; every model call goes through lm_eval's
# sqlite cache under <results_dir>/cache/lm_eval, deliberately not an output (like the judge's
# cache), so a rerun of a deleted result makes no model call.
from valuedrift import evals as vd_evals
from valuedrift import sample_tables as vd_samples

try:
    vd_evals.check_config(config, workdir=".")
    vd_samples.check_config(config)
except (vd_evals.EvalsError, vd_config.ConfigError) as err:
    raise WorkflowError(f"invalid config:\n{err}")

EVALS = config["evals"]
EVAL_MODELS = vd_evals.evaluated_models(STUDY, EVALS) if EVALS["enabled"] else []
EVAL_TASKS = [e["task"] for e in vd_evals.task_entries(EVALS)] if EVALS["enabled"] else []
SAMPLES = config["report"]["samples"]
SAMPLE_MODELS = vd_samples.chosen_models(STUDY, SAMPLES) if SAMPLES["enabled"] else {}


EVAL_RESULTS = vd_evals.result_files(EVAL_MODELS, EVAL_TASKS)  # model key -> task -> results file
# what the study adds when evals / sample tables are on (targets of `all`)
EVALS_OUTPUTS = [paths.evals_table(ext) for ext in paths.TABLE_FORMATS] if EVAL_MODELS else []
SAMPLE_TABLE_OUTPUTS = [paths.sample_table(ext) for ext in paths.TABLE_FORMATS] if SAMPLE_MODELS else []


rule downstream_eval:
    input:
        unpack(lambda wc: vd_evals.rule_inputs(EVALS, wc.model, wc.task)),
    output:
        paths.eval_result("{model}", "{task}"),
    params:
        evals=lambda wc: vd_evals.result_settings(EVALS, wc.task),
        cache=lambda wc: paths.eval_cache(wc.model, wc.task),
    log:
        paths.eval_log("{model}", "{task}"),
    wildcard_constraints:
        task="|".join(re.escape(t) for t in EVAL_TASKS) or "^$",
    threads: workflow.cores
    resources:
        **job_resources("infer", model_base),
    conda:
        conda_env("infer")
    script:
        "../scripts/downstream_eval.py"


rule evals_table:
    input:
        [f for tasks in EVAL_RESULTS.values() for f in tasks.values()],
    output:
        [paths.evals_table(ext) for ext in paths.TABLE_FORMATS],
    params:
        results=EVAL_RESULTS,
        labels=vd_evals.model_labels(STUDY, EVAL_MODELS),
        evals=canonical({k: v for k, v in EVALS.items() if k not in vd_evals.EXECUTION_KEYS}),
        outputs={ext: paths.evals_table(ext) for ext in paths.TABLE_FORMATS},
    log:
        paths.log_file("evals_table", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/evals_table.py"


rule sample_tables:
    input:
        questions=paths.questions_file(),
        generations=[paths.generations_file(m) for m in SAMPLE_MODELS],
        stances=[paths.stances_file(m) for m in SAMPLE_MODELS],
    output:
        [paths.sample_table(ext) for ext in paths.TABLE_FORMATS],
    params:
        models=list(SAMPLE_MODELS),
        labels=SAMPLE_MODELS,
        samples=canonical(SAMPLES),
        decimals=config["report"]["tables"]["decimals"],
        outputs={ext: paths.sample_table(ext) for ext in paths.TABLE_FORMATS},
    log:
        paths.log_file("sample_tables", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/sample_tables.py"


workflow.localrules("evals_table", "sample_tables")
