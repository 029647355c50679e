from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.write_training_log(list(snakemake.input), snakemake.output[0])
