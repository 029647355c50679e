from valuedrift import judge_eval, pipeline

pipeline.configure_logging(snakemake.log[0])
judge_eval.check_floor(name=snakemake.wildcards.judge, metrics=snakemake.input.metrics, output=snakemake.output[0],
                       min_macro_f1=snakemake.params.min_macro_f1,
                       accept_below_floor=snakemake.params.accept_below_floor)
