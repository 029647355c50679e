from valuedrift import pipeline, sample_tables

pipeline.configure_logging(snakemake.log[0])
models = {m: {"generations": g, "stances": s} for m, g, s in
          zip(snakemake.params.models, snakemake.input.generations, snakemake.input.stances, strict=True)}
sample_tables.write_tables(questions=snakemake.input.questions, models=models, labels=snakemake.params.labels,
                           block=snakemake.params.samples, outputs=snakemake.params.outputs,
                           decimals=snakemake.params.decimals)
