from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
stages.sample(snakemake.params.vp, snakemake.input.filtered, snakemake.output.questions, snakemake.output.stats)
