from valuedrift import dataset_stance, judge_specs, paths, pipeline

pipeline.start_job(snakemake.log[0], snakemake.threads)
cfg = judge_specs.job_spec(snakemake.config, paths.PRIMARY_JUDGE, snakemake.params.judge)
dataset_stance.classify(
    dataset=snakemake.input.dataset,
    retrieved=snakemake.input.retrieved,
    output=snakemake.output.stances,
    accounting=snakemake.output.accounting,
    backend=cfg["backend"],
    judge_kwargs=pipeline.judge_kwargs(cfg, snakemake.input.get("judge_model")),
    max_chars=snakemake.params.max_chars,
)
