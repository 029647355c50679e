from valuedrift import drilldown, pipeline

pipeline.configure_logging(snakemake.log[0])
steps = sorted(int(k.removeprefix("gen_")) for k in snakemake.input.keys() if k.startswith("gen_"))
drilldown.write_drilldown(
    questions=snakemake.input.questions,
    generations={s: snakemake.input[f"gen_{s}"] for s in steps},
    stances={snakemake.params.judge: {s: snakemake.input[f"stances_{s}"] for s in steps}},
    page=snakemake.output.page,
    data=snakemake.output.data,
    title=snakemake.params.title,
)
