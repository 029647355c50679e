from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.prepare_dataset(snakemake.params.spec, snakemake.output[0])
