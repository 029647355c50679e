from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
pipeline.train_reward(
    settings=snakemake.params.settings,
    start_model=snakemake.input.start,
    data=snakemake.input.data,
    output=snakemake.output[0],
)
