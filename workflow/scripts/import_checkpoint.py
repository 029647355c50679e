from valuedrift import pipeline, trajectories

pipeline.configure_logging(snakemake.log[0])
trajectories.import_checkpoint(snakemake.params.spec, snakemake.output[0], base_dir=snakemake.input.get("base"),
                               dtype=snakemake.params.dtype)
