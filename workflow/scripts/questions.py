from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.build_questions(snakemake.params.spec, snakemake.output[0])
