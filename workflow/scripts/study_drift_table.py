from valuedrift import config, paper_tables, pipeline

pipeline.configure_logging(snakemake.log[0])
runs = {r.model_path: r for r in config.runs(snakemake.config)}
paper_tables.write_study_drift([runs[p] for p in snakemake.params.runs], snakemake.output[0])
