from valuedrift import pipeline, value_gap

pipeline.configure_logging(snakemake.log[0])
value_gap.write_summary(
    dict(zip(snakemake.params.datasets, snakemake.input)),
    table=snakemake.output.table,
    html=snakemake.output.html,
    png=snakemake.output.png,
)
