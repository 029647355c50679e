from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.sweep_figure(list(snakemake.input), snakemake.params.sweep_values, snakemake.params.key, html=snakemake.output.html,
                    png=snakemake.output.png, title=snakemake.params.title, options=snakemake.params.figures)
