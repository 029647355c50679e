from valuedrift import pipeline, synthetic

pipeline.configure_logging(snakemake.log[0])
synthetic.aligned_dataset(pairs=snakemake.input[0], output=snakemake.output[0], aligned=snakemake.params.aligned)
