# Stance distribution of every response (the paper's judge prompt, Figure 8).
# Every judge call goes through the content-addressed cache in config judge.cache_dir
# (default results/cache/llm; shared by all rules that call an LLM and safe for concurrent
# jobs), which is deliberately not an output: a killed or rerun job pays only for what is
# missing. The accounting JSON holds calls, cache hits, tokens, failures and cost.

from valuedrift import judge_specs


rule judge:
    input:
        generations=paths.generations_file("{model}"),
        questions=paths.questions_file(),
        # the local model folder or trained classifier; with calibration auto, the validation
        # metrics that decide it (valuedrift.judge_specs, workflow/rules/judge_eval.smk)
        **judge_specs.judge_inputs(config, paths.PRIMARY_JUDGE),
    output:
        stances=paths.stances_file("{model}"),
        accounting=paths.judge_accounting_file("{model}"),
    params:
        judge=judge_specs.result_settings(config["judge"]),
    log:
        paths.log_file("judge", "{model}"),
    threads: workflow.cores
    resources:
        **(job_resources("infer", judge_specs.resource_model(config)) if judge_specs.runs_locally(config) else {}),
    conda:
        conda_env("infer")
    script:
        "../scripts/judge.py"
