from valuedrift import pipeline

pipeline.configure_logging(snakemake.log[0])
cfg = snakemake.params.drift
pipeline.drift(
    trajectory=snakemake.input.trajectory,
    output=snakemake.output[0],
    start=snakemake.input.start,
    end=snakemake.input.end,
    questions=snakemake.input.questions,
    resamples=cfg["bootstrap_resamples"],
    confidence=cfg["confidence"],
    seed=cfg["seed"],
)
