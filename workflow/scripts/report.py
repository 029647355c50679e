from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.write_report(study=snakemake.params.study, inputs=dict(snakemake.input.items()),
                    output=snakemake.output[0], options=snakemake.params.options)
