from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
stages.reduce(snakemake.params.vp, snakemake.input.embeddings, snakemake.output.reduced, snakemake.output.coords)
