from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.import_model(snakemake.params.spec, snakemake.output[0])
