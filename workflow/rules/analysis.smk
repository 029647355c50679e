# Cross-run analysis: the study's long drift table, the paper's tables, cross-run
# figures and training curves. Plot/table options (config `report`) reach only these
# rules and the report, as params: changing them reruns no model job.


rule training_log:
    input:
        lambda wc: [paths.model_dir(m) for m in run_for(wc).evaluated_models[1:]],
    output:
        paths.training_log("{run}"),
    log:
        paths.log_file("training_log", "{run}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/training_log.py"


rule study_drift_table:
    input:
        [paths.drift_table(r.model_path) for r in RUNS],
    output:
        paths.study_drift_table(),
    params:
        runs=[r.model_path for r in RUNS],
    log:
        paths.log_file("study_drift_table", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/study_drift_table.py"


rule paper_tables:
    input:
        paths.study_drift_table(),
    output:
        STUDY.table_files(),
    params:
        outputs=[{"spec": spec, "files": {ext: paths.paper_table(spec, ext) for ext in paths.TABLE_FORMATS}}
                 for spec in STUDY.table_specs],
        tables=canonical(config["report"]["tables"]),
    log:
        paths.log_file("paper_tables", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/paper_tables.py"


rule sft_comparison_plot:
    input:
        lambda wc: [paths.trajectory_file(r.model_path) for r in STUDY.sft_groups[wc.base]],
    output:
        html=paths.sft_comparison_plot("{base}", "html"),
        png=paths.sft_comparison_plot("{base}", "png"),
    params:
        labels=lambda wc: [r.label for r in STUDY.sft_groups[wc.base]],  # the SFT data (and seed)
        title=lambda wc: f"SFT of {wc.base}: datasets side by side",
        column_title="SFT data",
        figures=canonical(config["report"]["figures"]),
    log:
        paths.log_file("sft_comparison_plot", "{base}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/comparison_plot.py"


rule po_comparison_plot:
    input:
        lambda wc: [paths.trajectory_file(r.model_path) for r in STUDY.po_groups[(wc.base, wc.sft)]],
    output:
        html=paths.po_comparison_plot("{base}", "{sft}", "html"),
        png=paths.po_comparison_plot("{base}", "{sft}", "png"),
    params:
        labels=lambda wc: [r.label for r in STUDY.po_groups[(wc.base, wc.sft)]],
        title=lambda wc: f"Preference optimization of {wc.base} SFT on {wc.sft}: algorithms side by side",
        column_title="algorithm (preference data)",
        figures=canonical(config["report"]["figures"]),
    log:
        paths.log_file("po_comparison_plot", "{base}/sft-{sft}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/comparison_plot.py"


rule drift_heatmap:
    input:
        paths.study_drift_table(),
    output:
        html=paths.drift_heatmap("html"),
        png=paths.drift_heatmap("png"),
    params:
        labels=STUDY.labels,
        figures=canonical(config["report"]["figures"]),
    log:
        paths.log_file("drift_heatmap", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/drift_heatmap.py"


rule training_plot:
    input:
        [paths.training_log(r.model_path) for r in RUNS],
    output:
        html=paths.training_plot("html"),
        png=paths.training_plot("png"),
    params:
        labels=[r.study_label for r in RUNS],
        figures=canonical(config["report"]["figures"]),
    log:
        paths.log_file("training_plot", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/training_plot.py"


rule sweep_plot:
    input:
        lambda wc: [paths.trajectory_file(r.model_path) for _, r in sweep_lines(wc)],
    output:
        html=paths.sweep_plot("{base}", "{sft}", "{sweep}", "html"),
        png=paths.sweep_plot("{base}", "{sft}", "{sweep}", "png"),
    params:
        sweep_values=lambda wc: [label for label, _ in sweep_lines(wc)],
        key=lambda wc: STUDY.sweep(wc.base, wc.sft, wc.sweep).key,
        title=lambda wc: f"{STUDY.sweep(wc.base, wc.sft, wc.sweep).of.study_label}: support over training",
        figures=canonical(config["report"]["figures"]),
    log:
        paths.log_file("sweep_plot", "{base}/sft-{sft}/{sweep}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/sweep_plot.py"
