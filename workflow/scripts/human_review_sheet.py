from valuedrift import human_review, pipeline

pipeline.configure_logging(snakemake.log[0])
human_review.export_sheet(generations=dict(zip(snakemake.params.models, snakemake.input.generations)),
                          questions=snakemake.input.questions, n=snakemake.params.n_items, seed=snakemake.params.seed,
                          sheet=snakemake.output.sheet, form=snakemake.output.form, key=snakemake.output.key)
