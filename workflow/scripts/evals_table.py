from valuedrift import evals, pipeline

pipeline.configure_logging(snakemake.log[0])
evals.write_table(results=snakemake.params.results, labels=snakemake.params.labels, block=snakemake.params.evals,
                  outputs=snakemake.params.outputs)
