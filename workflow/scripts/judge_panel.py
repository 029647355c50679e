from valuedrift import judge_panel, pipeline

pipeline.configure_logging(snakemake.log[0])
models = snakemake.params.models
stances = list(snakemake.input.stances)
by_judge = {name: dict(zip(models, stances[i * len(models):(i + 1) * len(models)]))
            for i, name in enumerate(snakemake.params.judges)}
judge_panel.agreement(by_judge, snakemake.input.questions, snakemake.output.agreement,
                      snakemake.output.disagreements, dict(zip(models, snakemake.input.generations)))
