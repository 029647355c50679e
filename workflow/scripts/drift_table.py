from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.drift(trajectory=snakemake.input[0], output=snakemake.output[0])
