from valuedrift import launch, pipeline

pipeline.configure_logging(snakemake.log[0])
launch.run(
    "train_reward",
    dict(
        settings=snakemake.params.settings,
        start_model=snakemake.input.start,
        data=snakemake.input.data,
        output=snakemake.output[0],
    ),
    # one process per GPU allocated (accelerate launch) when there are several
    resources=snakemake.config.get("resources"),
    gpus=snakemake.resources.get("gpu"),
    threads=snakemake.threads,
    log_path=snakemake.log[0],
)
