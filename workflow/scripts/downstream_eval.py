from valuedrift import evals, pipeline

pipeline.start_job(snakemake.log[0], snakemake.threads)
inputs = dict(snakemake.input.items())
evals.run_eval(model_dir=snakemake.input.model, output=snakemake.output[0], cache=snakemake.params.cache,
               settings={**snakemake.params.evals, **evals.execution_settings(snakemake.config["evals"])},
               task_file=inputs.get("task_file"), model_key=snakemake.wildcards.model)
