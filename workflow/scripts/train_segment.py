from valuedrift import config as vd_config
from valuedrift import launch

step = int(snakemake.wildcards.step)
# Read from the config, not params: neither is a rerun trigger (raising max_steps must not
# rebuild the old final checkpoint, nor must changing what is kept on disk).
final = step == vd_config.run_for(snakemake.config, dict(snakemake.wildcards.items())).max_steps
# one process per GPU allocated (accelerate launch) when there are several
launch.run_for_job(snakemake, "train", dict(
    algorithm=snakemake.params.algorithm,
    settings=snakemake.params.settings,
    start_model=snakemake.input.start,
    previous=snakemake.input.get("previous"),
    data=snakemake.input.data,
    reward_model=snakemake.input.get("reward_model"),
    output=snakemake.output[0],
    step=step,
    optimizer_state=snakemake.config["training"]["optimizer_state"],
    final=final,
))
