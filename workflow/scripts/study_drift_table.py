from valuedrift import paper_tables, pipeline
from valuedrift.study import Study

pipeline.configure_logging(snakemake.log[0])
study = Study(snakemake.config)
paper_tables.write_study_drift(list(snakemake.input), [study.run(p) for p in snakemake.params.runs],
                               snakemake.output[0])
