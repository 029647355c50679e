from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
stages.select(snakemake.params.vp, snakemake.input.clusters, snakemake.input.names, snakemake.output.mapping,
              snakemake.output.selected, snakemake.output.stats, embeddings=snakemake.input.embeddings)
