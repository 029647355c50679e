# One static HTML page for every run of the study (results/report/index.html).

STUDY_BLOCKS = ("models", "datasets", "questions", "training", "runs", "generation", "judge", "drift")


rule report:
    input:
        all_drift_outputs(),
        vd_report.analysis_outputs(RUNS),
        [paths.trajectory_file(r.model_path) for r in RUNS],
        list(dict.fromkeys(paths.judge_accounting_file(r.model_at(s)) for r in RUNS for s in [0, *r.steps])),
        paths.questions_file(),
        vprism.report_inputs(config),
    output:
        paths.report_index(),
    params:
        study={k: config[k] for k in STUDY_BLOCKS if k in config},
        options=config["report"],
    log:
        paths.log_file("report", "report"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/report.py"
