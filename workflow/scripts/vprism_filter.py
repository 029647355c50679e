from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
stages.value_filter(snakemake.params.vp, snakemake.input.selected, snakemake.output.filtered, snakemake.output.stats)
