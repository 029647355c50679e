from valuedrift import judge_specs, pipeline

pipeline.start_job(snakemake.log[0], snakemake.threads)
spec = judge_specs.job_spec(snakemake.config, snakemake.wildcards.judge, snakemake.params.spec)
pipeline.judge(
    generations=snakemake.input.generations,
    questions=snakemake.input.questions,
    output=snakemake.output.stances,
    accounting=snakemake.output.accounting,
    backend=spec["backend"],
    judge_kwargs=judge_specs.judge_kwargs(spec, snakemake.input),
    max_unscorable_fraction=spec["max_unscorable_fraction"],
    calibration=judge_specs.use_calibration(spec, snakemake.input.get("calibration")),
    min_option_mass=spec["min_option_mass"],
)
