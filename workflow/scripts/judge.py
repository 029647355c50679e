from valuedrift import judge_specs, paths, pipeline

pipeline.start_job(snakemake.log[0], snakemake.threads)
cfg = judge_specs.job_spec(snakemake.config, paths.PRIMARY_JUDGE, snakemake.params.judge)
pipeline.judge(generations=snakemake.input.generations, questions=snakemake.input.questions,
               output=snakemake.output.stances, accounting=snakemake.output.accounting, backend=cfg["backend"],
               judge_kwargs=judge_specs.judge_kwargs(cfg, snakemake.input),
               max_unscorable_fraction=cfg["max_unscorable_fraction"],
               calibration=judge_specs.use_calibration(cfg, snakemake.input.get("calibration")),
               min_option_mass=cfg.get("min_option_mass", 0.0))
