from valuedrift import launch
from valuedrift.study import job_settings

launch.run_for_job(snakemake, "train_reward", dict(
    settings=job_settings(snakemake.params.settings, snakemake.config["training"].get("reward"), "training"),
    start_model=snakemake.input.start,
    data=snakemake.input.data,
    output=snakemake.output[0],
    optimizer_state=snakemake.config["training"]["optimizer_state"],
))
