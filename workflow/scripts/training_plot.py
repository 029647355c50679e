from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.training_figure(list(snakemake.input), snakemake.params.labels, html=snakemake.output.html,
                       png=snakemake.output.png, options=snakemake.params.figures)
