# Sampled responses of any model (base or checkpoint) to every question.


rule generate:
    input:
        model=paths.model_dir("{model}"),
        questions=paths.questions_file(),
    output:
        paths.generations_file("{model}"),
    params:
        generation=stage_settings("generation"),
        prompt_format=lambda wc: prompt_format(wc.model),
    log:
        paths.log_file("generate", "{model}"),
    threads: workflow.cores
    resources:
        **job_resources("infer", model_base),
    conda:
        conda_env("infer")
    script:
        "../scripts/generate.py"
