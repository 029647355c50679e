from valuedrift import classifier_judge, judge_specs, pipeline

pipeline.configure_logging(snakemake.log[0])
pipeline.set_threads(snakemake.threads)
spec = judge_specs.job_spec(snakemake.config, snakemake.wildcards.judge, snakemake.params.spec)
train = spec["train"]
if train["source"] == "authored":
    classifier_judge.train_authored(train=snakemake.input.train, embedder=spec["embedder"], settings=train,
                                    output=snakemake.output.classifier, report=snakemake.output.report,
                                    embed_model=snakemake.input.get("embed_model"))
else:
    classifier_judge.train_distilled(
        generations=dict(zip(snakemake.params.models, snakemake.input.generations)),
        questions=snakemake.input.questions,
        teacher=judge_specs.with_defaults(train["teacher"]),
        teacher_kwargs=judge_specs.judge_kwargs(train["teacher"], snakemake.input),
        embedder=spec["embedder"], settings=train,
        output=snakemake.output.classifier, report=snakemake.output.report,
        embed_model=snakemake.input.get("embed_model"))
