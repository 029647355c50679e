from valuedrift import config, pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.import_model(snakemake.params.spec, snakemake.output[0], name=snakemake.wildcards.base,
                      needs_chat_template=snakemake.wildcards.base in config.chat_format_uses(snakemake.config))
