from valuedrift import pipeline, synthetic

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
synthetic.retrieve_prompts(
    questions=snakemake.input.questions,
    sources=dict(zip(snakemake.params.sources, snakemake.input.sources)),
    output=snakemake.output.prompts,
    stats=snakemake.output.stats,
    settings=snakemake.params.settings,
)
