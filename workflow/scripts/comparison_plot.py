from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.comparison_figure(list(snakemake.input), snakemake.params.labels, html=snakemake.output.html,
                         png=snakemake.output.png, title=snakemake.params.title,
                         column_title=snakemake.params.column_title, options=snakemake.params.figures)
