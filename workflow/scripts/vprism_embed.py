from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.start_job(snakemake.log[0], snakemake.threads)
stages.embed(snakemake.params.vp, snakemake.input.rephrased, snakemake.output.embeddings, snakemake.output.stats)
