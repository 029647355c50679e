from valuedrift import pipeline, value_gap

pipeline.configure_logging(snakemake.log[0])
value_gap.write_gaps(snakemake.input[0], snakemake.output[0])
