from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
stages.cluster(snakemake.params.vp, snakemake.input.rephrased, snakemake.input.reduced, snakemake.input.coords,
               snakemake.output.clusters, snakemake.output.stats)
