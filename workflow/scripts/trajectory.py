from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
cfg = snakemake.params.drift
pipeline.trajectory(
    stances={int(k.removeprefix("step_")): v for k, v in snakemake.input.items() if k.startswith("step_")},
    questions=snakemake.input.questions,
    output=snakemake.output[0],
    resamples=cfg["bootstrap_resamples"],
    confidence=cfg["confidence"],
    seed=cfg["seed"],
)
