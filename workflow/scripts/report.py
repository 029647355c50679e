from valuedrift import paths, pipeline, report
from valuedrift.study import STUDY_BLOCKS

pipeline.configure_logging(snakemake.log[0])
paths.use_results_dir(snakemake.config.get("results_dir"))  # the page links artifacts by their paths
report.write_report(study={k: snakemake.config[k] for k in STUDY_BLOCKS if k in snakemake.config},
                    inputs=dict(snakemake.input.items()), output=snakemake.output[0], options=snakemake.params.options)
