# Sampled responses of any model (base or checkpoint) to every question. A seeded run's
# answers are sampled with its seed; its start model's answers get their own key
# (<model key>/seed-N, valuedrift.study.Run.sampled_at), sampled from that model's folder.


rule generate:
    input:
        model=lambda wc: paths.model_dir(paths.sampled_model(wc.model)),
        questions=paths.questions_file(),
    output:
        paths.generations_file("{model}"),
    params:
        generation=lambda wc: sampling_settings(wc.model),
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
