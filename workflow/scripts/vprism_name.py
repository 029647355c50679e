from valuedrift import pipeline
from valuedrift.vprism import stages
from valuedrift.vprism import workflow as vprism_workflow

pipeline.start_job(snakemake.log[0], snakemake.threads)
stages.name(vprism_workflow.job_settings(snakemake.params.vp, snakemake.config, "name"), snakemake.input.clusters, snakemake.output.names, snakemake.output.stats)
