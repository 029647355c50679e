from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
stages.embed(snakemake.params.vp, snakemake.input.rephrased, snakemake.output.embeddings, snakemake.output.stats)
