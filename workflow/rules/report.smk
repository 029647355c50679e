# One static HTML page for every run of the study (<results_dir>/report/index.html).
from valuedrift import controlled, judge_specs
from valuedrift.report import series_view as vd_series_view
from valuedrift.study import report_trigger
from valuedrift.vprism import workflow as vprism_workflow



rule report:
    input:
        **STUDY.report_inputs({"vprism": vprism_workflow.report_inputs(config), "evals": EVALS_OUTPUTS,
                               "samples": SAMPLE_TABLE_OUTPUTS, "controlled": controlled.report_inputs(config),
                               # checkpoint series and seed groups (trajectories.smk, seeds.smk: included later)
                               "series": lambda wc: vd_series_view.report_inputs(
                                   TRAJECTORIES.values(), SEED_GROUPS, STUDY.seed_groups),
                               "judges": judge_specs.report_files(config)}),
    output:
        paths.report_index(),
    params:
        study=report_trigger(config),  # the study without execution settings: the page reads it from the config
        options=canonical(config["report"]),
    log:
        paths.log_file("report", "report"),
    conda:
        conda_env("analysis")
    script:
        "../scripts/report.py"
