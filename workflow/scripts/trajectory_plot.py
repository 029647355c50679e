from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.trajectory_figure(snakemake.input[0], html=snakemake.output.html, png=snakemake.output.png,
                         title=snakemake.params.get("title") or snakemake.wildcards.run,
                         options=snakemake.params.get("figures"))
