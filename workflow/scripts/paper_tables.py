from valuedrift import paper_tables, pipeline

pipeline.configure_logging(snakemake.log[0])
paper_tables.write_tables(study=snakemake.input[0], outputs=snakemake.params.outputs,
                          decimals=snakemake.params.tables["decimals"])
