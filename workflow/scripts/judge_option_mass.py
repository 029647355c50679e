from valuedrift import judge_panel, pipeline

pipeline.configure_logging(snakemake.log[0])
judge_panel.option_mass_table(dict(zip(snakemake.params.models, snakemake.input)), snakemake.output[0],
                              floor=snakemake.params.floor)
