from valuedrift import pipeline
from valuedrift.study import job_settings

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
cfg = job_settings(snakemake.params.judge, snakemake.config["judge"], "judge")
pipeline.judge(
    generations=snakemake.input.generations,
    questions=snakemake.input.questions,
    output=snakemake.output.stances,
    accounting=snakemake.output.accounting,
    backend=cfg["backend"],
    judge_kwargs=pipeline.judge_kwargs(cfg, snakemake.input.get("judge_model")),
    max_unscorable_fraction=cfg["max_unscorable_fraction"],
)
