from valuedrift import pipeline, seeds

pipeline.configure_logging(snakemake.log[0])
seeds.seed_bands_figure(snakemake.input[0], html=snakemake.output.html, png=snakemake.output.png,
                        title=snakemake.params.title, options=snakemake.params.get("figures"))
