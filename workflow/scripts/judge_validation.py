from valuedrift import judge_eval, judge_specs, pipeline

pipeline.start_job(snakemake.log[0], snakemake.threads)
spec = judge_specs.job_spec(snakemake.config, snakemake.wildcards.judge, snakemake.params.spec)
judge_eval.score_validation(
    name=snakemake.wildcards.judge,
    spec=spec,
    judge_kwargs=judge_specs.judge_kwargs(spec, snakemake.input),
    validation=snakemake.input.validation,
    items_out=snakemake.output.scored,
    metrics_out=snakemake.output.metrics,
    per_topic_out=snakemake.output.per_topic,
)
