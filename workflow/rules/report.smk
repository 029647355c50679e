# One static HTML page for every run of the study.


rule report:
    input:
        all_drift_outputs(),
        trajectories=[paths.trajectory_file(r.model_path) for r in RUNS],
    output:
        paths.report_index(),
    params:
        runs=[r.model_path for r in RUNS],
        report=config["report"],
        config_summary={k: config[k] for k in ("models", "runs", "generation", "judge", "drift")},
    log:
        paths.log_file("report", "report"),
    script:
        "../scripts/report.py"
