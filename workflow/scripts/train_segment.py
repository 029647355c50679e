from valuedrift import launch
from valuedrift.study import Study, job_settings

step = int(snakemake.wildcards.step)
algorithm = snakemake.params.algorithm
study = Study(snakemake.config)
run = study.run_for(dict(snakemake.wildcards.items()))
# Read from the config, not params: none is a rerun trigger (raising max_steps must not
# rebuild the old final checkpoint, nor must changing what is kept on disk or the per-device
# batch size).
final = step == run.max_steps
# one process per GPU allocated (accelerate launch) when there are several
launch.run_for_job(snakemake, "train", dict(
    algorithm=algorithm,
    settings=job_settings(snakemake.params.settings, study.training_settings(run), "training"),
    start_model=snakemake.input.start,
    previous=snakemake.input.get("previous"),
    data=snakemake.input.data,
    reward_model=snakemake.input.get("reward_model"),
    output=snakemake.output[0],
    step=step,
    optimizer_state=snakemake.config["training"]["optimizer_state"],
    final=final,
))
