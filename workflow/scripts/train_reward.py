from valuedrift import launch

launch.run_for_job(snakemake, "train_reward", dict(
    settings=snakemake.params.settings,
    start_model=snakemake.input.start,
    data=snakemake.input.data,
    output=snakemake.output[0],
    optimizer_state=snakemake.config["training"]["optimizer_state"],
))
