from valuedrift import human_review, pipeline

pipeline.configure_logging(snakemake.log[0])
models = snakemake.params.models
stances = list(snakemake.input.stances)
by_judge = {name: dict(zip(models, stances[i * len(models):(i + 1) * len(models)]))
            for i, name in enumerate(snakemake.params.judges)}
human_review.read_back(filled=snakemake.input.filled, key=snakemake.input.key, stance_files=by_judge,
                       output=snakemake.output[0])
