from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
stages.rephrase(snakemake.params.vp, snakemake.input.prompts, snakemake.output.rephrased, snakemake.output.stats)
