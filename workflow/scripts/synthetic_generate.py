from valuedrift import pipeline, synthetic

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
synthetic.generate_responses(
    prompts=snakemake.input.prompts,
    responses=snakemake.output.responses,
    pairs=snakemake.output.pairs,
    stats=snakemake.output.stats,
    settings=snakemake.params.settings,
)
