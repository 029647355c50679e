from valuedrift import pipeline
from valuedrift.vprism import stages
from valuedrift.vprism import workflow as vprism_workflow

pipeline.start_job(snakemake.log[0], snakemake.threads)
stages.rephrase(vprism_workflow.job_settings(snakemake.params.vp, snakemake.config, "rephrase"), snakemake.input.prompts, snakemake.output.rephrased, snakemake.output.stats)
