# One static HTML page for every run of the study (<results_dir>/report/index.html).
from valuedrift.vprism import workflow as vprism_workflow

# The study as the report shows it; a changed block rewrites only the report.
STUDY_BLOCKS = ("models", "datasets", "questions", "training", "runs", "generation", "judge", "drift")


rule report:
    input:
        **STUDY.report_inputs({"vprism": vprism_workflow.report_inputs(config), "evals": EVALS_OUTPUTS,
                               "samples": SAMPLE_TABLE_OUTPUTS}),
    output:
        paths.report_index(),
    params:
        study=canonical({k: config[k] for k in STUDY_BLOCKS if k in config}),
        options=canonical(config["report"]),
    log:
        paths.log_file("report", "report"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/report.py"
