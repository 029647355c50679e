from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
stages.name(snakemake.params.vp, snakemake.input.clusters, snakemake.output.names, snakemake.output.stats)
