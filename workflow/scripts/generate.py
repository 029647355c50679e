from valuedrift import pipeline
from valuedrift.study import job_settings

pipeline.start_job(snakemake.log[0], snakemake.threads)
pipeline.generate(model_dir=snakemake.input.model, questions=snakemake.input.questions, output=snakemake.output[0],
                  settings=job_settings(snakemake.params.generation, snakemake.config["generation"], "generation"),
                  prompt_format=snakemake.params.prompt_format)
