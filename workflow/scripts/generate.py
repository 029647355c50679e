from valuedrift import pipeline
from valuedrift.study import job_settings

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
gen = job_settings(snakemake.params.generation, snakemake.config["generation"], "generation")
pipeline.generate(
    model_dir=snakemake.input.model,
    questions=snakemake.input.questions,
    output=snakemake.output[0],
    backend=gen["backend"],
    prompt_format=snakemake.params.prompt_format,
    base_prompt_template=gen["base_prompt_template"],
    sampling={k: gen[k] for k in ("samples", "temperature", "top_p", "max_new_tokens", "seed")},
    batch_size=gen["batch_size"],
    dtype=gen["dtype"],
)
