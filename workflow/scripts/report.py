from valuedrift import pipeline, report

pipeline.configure_logging(snakemake.log[0])
report.write_report(
    runs=snakemake.params.runs,
    output=snakemake.output[0],
    settings=snakemake.params.report,
    config_summary=snakemake.params.config_summary,
)
