# The controlled experiment (paper Section 6, Appendices E and K; docs/controlled.md):
#   synthetic_retrieve -> synthetic_generate -> synthetic_dataset: value-aligned preference
#     data whose support- and oppose-aligned datasets (datasets.<name>.source: synthetic)
#     are results/data/<name>.parquet, read by the training rules like any other dataset;
#   dataset_retrieve -> dataset_stance -> dataset_stance_table: stance distribution of the
#     training data (Figure 19); value_gap -> value_gap_table: chosen-vs-rejected stance
#     distance of the preference data (Figure 20).
#   alignment_plot: a support- and an oppose-aligned run side by side (Figures 7, 11-14) and
#     their drift contrast; aligned_tables: the synthetic runs of each SFT model (Tables 13-16).
# Every LLM call (generation, judging) goes through the shared content-addressed cache.
# `snakemake controlled` builds the data analyses; training runs on synthetic data, their
# figures and tables come with `all` (the report's controlled section reads them).
from valuedrift import controlled

SYNTHETIC = controlled.synthetic_datasets(config)
STANCE_DATASETS = controlled.stance_datasets(config)
GAP_DATASETS = controlled.gap_datasets(config)


rule controlled:
    input:
        controlled.targets(config),


if config.get("synthetic") is not None:
    SYNTHETIC_RETRIEVAL = controlled.retrieval_params(config)
    SYNTHETIC_GENERATION = controlled.generation_params(config)

    rule synthetic_retrieve:
        input:
            questions=paths.questions_file(),
            sources=list(controlled.source_files(config).values()),
        output:
            prompts=paths.synthetic_prompts_file(),
            stats=paths.synthetic_stats_file("retrieval"),
        params:
            sources=config["synthetic"]["sources"],
            settings=SYNTHETIC_RETRIEVAL,
        log:
            paths.log_file("synthetic", "retrieve"),
        threads: workflow.cores
        resources:
            **(job_resources("infer", None) if controlled.embeds_on_gpu(SYNTHETIC_RETRIEVAL) else {}),
        conda:
            conda_env("infer")
        script:
            "../scripts/synthetic_retrieve.py"

    rule synthetic_generate:
        input:
            prompts=paths.synthetic_prompts_file(),
            model=controlled.generation_model_input(config),
        output:
            responses=paths.synthetic_responses_file(),
            pairs=paths.synthetic_pairs_file(),
            stats=paths.synthetic_stats_file("generation"),
        params:
            settings=SYNTHETIC_GENERATION,
        log:
            paths.log_file("synthetic", "generate"),
        threads: workflow.cores
        resources:
            **({} if controlled.llm_is_api(SYNTHETIC_GENERATION["llm"]) else job_resources("infer", None)),
        conda:
            conda_env("infer")
        script:
            "../scripts/synthetic_generate.py"

    if controlled.llm_is_api(SYNTHETIC_GENERATION["llm"]):

        localrules:
            synthetic_generate,


if SYNTHETIC:

    rule synthetic_dataset:
        input:
            paths.synthetic_pairs_file(),
        output:
            paths.dataset_file("{dataset}"),
        wildcard_constraints:
            dataset=_alternatives(SYNTHETIC),
        params:
            aligned=lambda wc: SYNTHETIC[wc.dataset],
        log:
            paths.log_file("synthetic_dataset", "{dataset}"),
        conda:
            conda_env("train")
        script:
            "../scripts/synthetic_dataset.py"

    # a synthetic dataset's file is this rule's, not prepare_dataset's (which loads files and the hub)
    ruleorder: synthetic_dataset > prepare_dataset

    localrules:
        synthetic_dataset,


if STANCE_DATASETS:
    STANCE = controlled.stance_settings(config)

    rule dataset_retrieve:
        input:
            dataset=paths.dataset_file("{dataset}"),
            questions=paths.questions_file(),
        output:
            retrieved=paths.dataset_retrieved_file("{dataset}"),
            stats=paths.dataset_retrieval_stats("{dataset}"),
        params:
            settings={k: STANCE[k] for k in ("embedder", "min_similarity")},
        log:
            paths.log_file("dataset_retrieve", "{dataset}"),
        threads: workflow.cores
        resources:
            **(job_resources("infer", None) if controlled.embeds_on_gpu(STANCE) else {}),
        conda:
            conda_env("infer")
        script:
            "../scripts/dataset_retrieve.py"

    rule dataset_stance:
        input:
            dataset=paths.dataset_file("{dataset}"),
            retrieved=paths.dataset_retrieved_file("{dataset}"),
            judge_model=judge_model_dir() if config["judge"]["backend"] == "local" else [],
        output:
            stances=paths.dataset_stances_file("{dataset}"),
            accounting=paths.dataset_stance_accounting("{dataset}"),
        params:
            # the primary judge's result settings and the Figure 18 prompt's digest (the job adds
            # the execution settings back from the config: judge_specs.job_spec)
            judge=judge_specs.result_settings(config["judge"], prompt="dataset_stance"),
            max_chars=STANCE["max_chars"],
        log:
            paths.log_file("dataset_stance", "{dataset}"),
        threads: workflow.cores
        resources:
            **(job_resources("infer", judge_specs.resource_model(config)) if judge_specs.runs_locally(config) else {}),
        conda:
            conda_env("infer")
        script:
            "../scripts/dataset_stance.py"

    rule dataset_stance_table:
        input:
            [paths.dataset_stances_file(n) for n in STANCE_DATASETS],
        output:
            table=paths.dataset_stance_table(),
            html=paths.dataset_stance_plot("html"),
            png=paths.dataset_stance_plot("png"),
        params:
            datasets=STANCE_DATASETS,
        log:
            paths.log_file("dataset_stance_table", "study"),
        conda:
            conda_env("analysis")
        script:
            "../scripts/dataset_stance_table.py"

    localrules:
        dataset_stance_table,

    if config["judge"]["backend"] == "openai":

        localrules:
            dataset_stance,


if GAP_DATASETS:

    rule value_gap:
        input:
            paths.dataset_stances_file("{dataset}"),
        output:
            paths.value_gap_file("{dataset}"),
        log:
            paths.log_file("value_gap", "{dataset}"),
        conda:
            conda_env("analysis")
        script:
            "../scripts/value_gap.py"

    rule value_gap_table:
        input:
            [paths.value_gap_file(n) for n in GAP_DATASETS],
        output:
            table=paths.value_gap_table(),
            html=paths.value_gap_plot("html"),
            png=paths.value_gap_plot("png"),
        params:
            datasets=GAP_DATASETS,
        log:
            paths.log_file("value_gap_table", "study"),
        conda:
            conda_env("analysis")
        script:
            "../scripts/value_gap_table.py"

    localrules:
        value_gap,
        value_gap_table,


# Section 6's comparison (Figures 7, 11-14; Tables 13-16): the runs on the synthetic data
ALIGNMENT_GROUPS = controlled.alignment_groups(config)
ALIGNED_TABLES = controlled.aligned_table_specs(config)

if ALIGNMENT_GROUPS:

    rule alignment_plot:
        input:
            trajectories=lambda wc: [paths.trajectory_file(r) for r in controlled.alignment_pair(config, wc)],
            drift=lambda wc: [paths.drift_table(r) for r in controlled.alignment_pair(config, wc)],
        output:
            html=paths.alignment_plot("{base}", "{sft}", "{alignment}", "html"),
            png=paths.alignment_plot("{base}", "{sft}", "{alignment}", "png"),
            table=paths.alignment_contrast_table("{base}", "{sft}", "{alignment}"),
        wildcard_constraints:
            base=_alternatives({g["base"] for g in ALIGNMENT_GROUPS}),
            sft=_alternatives({g["sft"] for g in ALIGNMENT_GROUPS}),
            alignment=_alternatives({g["name"] for g in ALIGNMENT_GROUPS}),
        params:
            title=lambda wc: f"{controlled.alignment_label(controlled.alignment_group(config, wc))} on synthetic "
                             "data: support- vs oppose-aligned",
            figures=canonical(config["report"]["figures"]),
        log:
            paths.log_file("alignment_plot", "{base}/sft-{sft}/{alignment}"),
        conda:
            conda_env("analysis")
        script:
            "../scripts/alignment_plot.py"

    localrules:
        alignment_plot,


if ALIGNED_TABLES:

    rule aligned_tables:
        input:
            paths.study_drift_table(),
        output:
            [f for spec in ALIGNED_TABLES for f in controlled.aligned_table_files(spec).values()],
        params:
            outputs=[{"spec": spec, "files": controlled.aligned_table_files(spec)} for spec in ALIGNED_TABLES],
            tables=canonical(config["report"]["tables"]),
        log:
            paths.log_file("aligned_tables", "study"),
        conda:
            conda_env("analysis")
        script:
            "../scripts/paper_tables.py"

    localrules:
        aligned_tables,
