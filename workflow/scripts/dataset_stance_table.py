from valuedrift import dataset_stance, pipeline

pipeline.configure_logging(snakemake.log[0])
dataset_stance.write_distribution(
    dict(zip(snakemake.params.datasets, snakemake.input)),
    table=snakemake.output.table,
    html=snakemake.output.html,
    png=snakemake.output.png,
)
