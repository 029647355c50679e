from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
pipeline.train(
    algorithm=snakemake.params.algorithm,
    settings=snakemake.params.settings,
    start_model=snakemake.input.start,
    previous=snakemake.input.get("previous"),
    data=snakemake.input.data,
    reward_model=snakemake.input.get("reward_model"),
    output=snakemake.output[0],
    step=int(snakemake.wildcards.step),
)
