from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
stages.load(snakemake.params.vp, snakemake.output.prompts, snakemake.output.stats)
