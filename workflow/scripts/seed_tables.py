from valuedrift import pipeline, seeds

pipeline.configure_logging(snakemake.log[0])
seeds.write_seed_tables(
    drift={int(k.removeprefix("drift_")): v for k, v in snakemake.input.items() if k.startswith("drift_")},
    trajectory={int(k.removeprefix("trajectory_")): v for k, v in snakemake.input.items() if k.startswith("trajectory_")},
    drift_output=snakemake.output.drift,
    trajectory_output=snakemake.output.trajectory,
)
