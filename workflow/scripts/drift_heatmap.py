from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.heatmap_figure(snakemake.input[0], snakemake.params.labels, html=snakemake.output.html,
                      png=snakemake.output.png, options=snakemake.params.figures)
