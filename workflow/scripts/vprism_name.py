from valuedrift import pipeline
from valuedrift.vprism import stages
from valuedrift.vprism import workflow as vprism_workflow

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
stages.name(vprism_workflow.job_settings(snakemake.params.vp, snakemake.config, "name"), snakemake.input.clusters, snakemake.output.names, snakemake.output.stats)
