from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.write_training_log(snakemake.params.model_keys, snakemake.output[0])
