from valuedrift import pipeline
from valuedrift.study import job_settings

pipeline.start_job(snakemake.log[0], snakemake.threads)
judge = job_settings(snakemake.params.judge, snakemake.config["judge"], "judge")
pipeline.judge(generations=snakemake.input.generations, questions=snakemake.input.questions,
               output=snakemake.output.stances, accounting=snakemake.output.accounting, backend=judge["backend"],
               judge_kwargs=pipeline.judge_kwargs(judge, snakemake.input.get("judge_model")),
               max_unscorable_fraction=judge["max_unscorable_fraction"])
