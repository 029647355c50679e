# Base models, training data and training segments: one checkpoint = one target.


rule import_base_model:
    input:
        # a chat template file (not a built-in name): editing it re-imports the model
        lambda wc: chat_template_file(wc.base),
    output:
        directory(paths.model_dir("{base}/base")),
    params:
        spec=lambda wc: canonical(config["models"][wc.base]),
    log:
        paths.log_file("import_base_model", "{base}"),
    resources:
        mem_mb=8000,
    conda:
        conda_env("infer")
    script:
        "../scripts/import_model.py"


rule prepare_dataset:
    input:
        lambda wc: config["datasets"][wc.dataset].get("path", []),
    output:
        paths.dataset_file("{dataset}"),
    params:
        spec=lambda wc: canonical(config["datasets"][wc.dataset]),
    log:
        paths.log_file("prepare_dataset", "{dataset}"),
    conda:
        conda_env("train")
    script:
        "../scripts/prepare_dataset.py"


# Training is a study's critical path (each evaluation waits for its checkpoint), so
# the scheduler starts training jobs first when both are ready (priority).
rule sft_segment:
    input:
        unpack(segment_inputs),
    output:
        directory(paths.segment_dir("{base}/sft-{sft}", "{step}")),
    params:
        algorithm="sft",
        settings=lambda wc: training_settings(run_for(wc)),
    log:
        paths.segment_log("{base}/sft-{sft}", "{step}"),
    priority: 10
    threads: workflow.cores
    resources:
        **job_resources("train", lambda wc: wc.base),
    group:
        training_group
    conda:
        conda_env("train")
    script:
        "../scripts/train_segment.py"


rule po_segment:
    input:
        unpack(segment_inputs),
    output:
        directory(paths.segment_dir("{base}/sft-{sft}/{algorithm}-{preference}", "{step}")),
    params:
        algorithm=lambda wc: run_for(wc).algorithm,
        settings=lambda wc: training_settings(run_for(wc)),
    log:
        paths.segment_log("{base}/sft-{sft}/{algorithm}-{preference}", "{step}"),
    priority: 10
    threads: workflow.cores
    resources:
        **job_resources("train", lambda wc: wc.base),
    group:
        training_group
    conda:
        conda_env("train")
    script:
        "../scripts/train_segment.py"


rule reward_model:
    input:
        start=lambda wc: paths.model_dir(run_for(wc).sft_final_model),
        data=paths.dataset_file("{preference}"),
    output:
        directory(paths.reward_model_dir("{base}", "{sft}", "{preference}")),
    params:
        settings=lambda wc: training_settings(run_for(wc), "reward"),
    log:
        paths.reward_model_log("{base}", "{sft}", "{preference}"),
    priority: 10
    threads: workflow.cores
    resources:
        **job_resources("train", lambda wc: wc.base),
    conda:
        conda_env("train")
    script:
        "../scripts/train_reward.py"
