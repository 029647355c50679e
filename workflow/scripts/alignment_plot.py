from valuedrift import controlled, pipeline

pipeline.configure_logging(snakemake.log[0])
controlled.write_alignment(trajectories=list(snakemake.input.trajectories), drift_tables=list(snakemake.input.drift),
                           title=snakemake.params.title, html=snakemake.output.html, png=snakemake.output.png,
                           table=snakemake.output.table, options=snakemake.params.figures)
