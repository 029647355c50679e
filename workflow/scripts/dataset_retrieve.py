from valuedrift import dataset_stance, pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
dataset_stance.retrieve(
    dataset=snakemake.input.dataset,
    questions=snakemake.input.questions,
    output=snakemake.output.retrieved,
    stats=snakemake.output.stats,
    settings=snakemake.params.settings,
)
