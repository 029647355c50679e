from pathlib import Path

from valuedrift import pipeline
from valuedrift.vprism import stages

pipeline.configure_logging(snakemake.log[0])
stats = {Path(p).stem: p for p in snakemake.input.stats}
stages.report(snakemake.input.clusters, snakemake.input.names, snakemake.input.mapping, snakemake.input.filtered,
              snakemake.input.questions, stats, snakemake.output.report, snakemake.output.html, snakemake.output.png)
