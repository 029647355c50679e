# Cross-run analysis: the study's long drift table, the paper's tables, cross-run
# figures and training curves. Plot/table options (config `report`) reach only these
# rules and the report, as params: changing them reruns no model job.
from valuedrift import paper_tables
from valuedrift import report as vd_report

TABLE_SPECS = paper_tables.table_specs(RUNS)
SFT_GROUPS = vd_report.sft_groups(RUNS)  # base -> its SFT runs
PO_GROUPS = vd_report.po_groups(RUNS)  # (base, sft) -> its PO runs


rule training_log:
    input:
        lambda wc: [paths.model_dir(run_for(wc).model_at(s)) for s in run_for(wc).steps],
    output:
        paths.training_log("{run}"),
    params:
        model_keys=lambda wc: [run_for(wc).model_at(s) for s in run_for(wc).steps],
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
        [paper_tables.table_paths(spec, ext) for spec in TABLE_SPECS for ext in ("csv", "md", "tex")],
    params:
        specs=TABLE_SPECS,
        tables=config["report"]["tables"],
    log:
        paths.log_file("paper_tables", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/paper_tables.py"


rule sft_comparison_plot:
    input:
        lambda wc: [paths.trajectory_file(r.model_path) for r in SFT_GROUPS[wc.base]],
    output:
        html=paths.sft_comparison_plot("{base}", "html"),
        png=paths.sft_comparison_plot("{base}", "png"),
    params:
        labels=lambda wc: [r.sft for r in SFT_GROUPS[wc.base]],
        title=lambda wc: f"SFT of {wc.base}: datasets side by side",
        column_title="SFT data",
        figures=config["report"]["figures"],
    log:
        paths.log_file("sft_comparison_plot", "{base}"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/comparison_plot.py"


rule po_comparison_plot:
    input:
        lambda wc: [paths.trajectory_file(r.model_path) for r in PO_GROUPS[(wc.base, wc.sft)]],
    output:
        html=paths.po_comparison_plot("{base}", "{sft}", "html"),
        png=paths.po_comparison_plot("{base}", "{sft}", "png"),
    params:
        labels=lambda wc: [paper_tables.run_label(r) for r in PO_GROUPS[(wc.base, wc.sft)]],
        title=lambda wc: f"Preference optimization of {wc.base} SFT on {wc.sft}: algorithms side by side",
        column_title="algorithm (preference data)",
        figures=config["report"]["figures"],
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
        labels={r.model_path: vd_report.study_label(r) for r in RUNS},
        figures=config["report"]["figures"],
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
        labels=[vd_report.study_label(r) for r in RUNS],
        figures=config["report"]["figures"],
    log:
        paths.log_file("training_plot", "study"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/training_plot.py"
