from valuedrift import launch, pipeline

pipeline.configure_logging(snakemake.log[0])
launch.run(
    "train",
    dict(
        algorithm=snakemake.params.algorithm,
        settings=snakemake.params.settings,
        start_model=snakemake.input.start,
        previous=snakemake.input.get("previous"),
        data=snakemake.input.data,
        reward_model=snakemake.input.get("reward_model"),
        output=snakemake.output[0],
        step=int(snakemake.wildcards.step),
    ),
    # one process per GPU allocated (accelerate launch) when there are several
    resources=snakemake.config.get("resources"),
    gpus=snakemake.resources.get("gpu"),
    threads=snakemake.threads,
    log_path=snakemake.log[0],
)
