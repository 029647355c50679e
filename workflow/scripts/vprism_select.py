from valuedrift import pipeline
from valuedrift.vprism import stages
from valuedrift.vprism import workflow as vprism_workflow

pipeline.start_job(snakemake.log[0], snakemake.threads)
stages.select(vprism_workflow.job_settings(snakemake.params.vp, snakemake.config, "select"), snakemake.input.clusters, snakemake.input.names, snakemake.output.mapping,
              snakemake.output.selected, snakemake.output.stats, embeddings=snakemake.input.embeddings)
